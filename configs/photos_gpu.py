"""The photos recipe at one GPU's scale: the same corpus, model and
validation as configs/photos_cpu.py, with what an accelerator makes cheap.

  python -m scsnet_jax.main --config=configs/photos_gpu.py --workdir=W \
      --config.data.folder_path='corpus/*.jpg'

Differences from photos_cpu.py: batch 32 of 192 px crops (48 px gray
inputs) with the loss on every HR pixel, bfloat16 compute (float32
parameters), grain workers, and a warm-up then a constant learning rate, so
a run stopped at any time (SIGTERM saves a checkpoint; the device lease is
counted in minutes) ends at its full rate with the EMA doing the averaging.
``data.folder_path`` defaults to the Debian corpus of photos_cpu.py; a copy
of its training share (``launch/photos_gpu.sh`` writes one) is what a GPU
machine without those packages trains on, with ``data.eval_fraction=0``.
"""

from scsnet_jax import config_lib


def get_config():
  config = config_lib.load_sibling_config(__file__, 'photos_cpu')
  config.data.crop_size = 192
  config.data.global_batch_size = 32
  config.data.num_workers = 12
  config.data.read_threads = 2
  config.data.worker_buffer_size = 4
  config.dtype = 'bfloat16'

  config.train.content_points = 0
  config.train.render_window = 0
  config.optimizer.schedule = 'warmup_constant'
  config.optimizer.learning_rate = 2e-4
  config.optimizer.warmup_steps = 200
  config.train.steps = 100_000            # stopped by time (SIGTERM)
  config.train.ema_decay = 0.999
  config.train.log_every_steps = 50
  config.train.eval_every_steps = 500
  config.train.sample_every_steps = 1000
  config.train.checkpoint_every_steps = 1000
  return config
