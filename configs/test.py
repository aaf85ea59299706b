"""Tiny images for tests: the spec's full model on 32 px crops (x4: 8 -> 32).

Global batch 8 = one example per fake CPU device in the test suite. Random
VGG16 (no weights file, the same wherever the tests run), data from the bundled demo photos, no grain
worker processes. Usage in tests::

  config = configs.test.get_config()   # or config_flags: configs/test.py
"""

from scsnet_jax import config_lib


def get_config():
  config = config_lib.get_base_config()
  config.data.source = 'demo'
  config.data.crop_size = 32
  config.data.global_batch_size = 8
  config.data.num_workers = 0
  config.data.read_threads = 1
  config.data.read_buffer_size = 2
  config.loss.vgg_weights = 'random'   # whatever is installed
  config.train.steps = 4
  config.train.log_every_steps = 1
  config.train.sample_every_steps = 2
  config.train.checkpoint_every_steps = 2
  config.train.max_to_keep = 2
  config.train.keep_period = 0
  config.validation.num_images = 2
  config.validation.crop_size = 32
  config.validation.num_sample_images = 2
  return config
