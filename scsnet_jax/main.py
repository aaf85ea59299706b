"""Command line: ``python -m scsnet_jax.main --config=configs/x4.py --workdir=DIR``.

Any config field can be overridden (``--config.train.steps=100``);
``--mode=eval`` runs ``scsnet_jax.evaluate.evaluate(config, workdir)``.
Several processes join through ``jax.distributed.initialize()``: detected
under SLURM and on multi-host Cloud TPU, or given explicitly with
``--coordinator_address/--num_processes/--process_id`` (or the env vars
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID). Mistakes in
the command or config end with a one-line error and exit status 1 (set
SCSNET_DEBUG=1 for the traceback). See docs/training.md.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Configuration file (configs/*.py).', lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory for checkpoints, logs and samples.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'What to run.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for multi-process '
    'runs outside SLURM/Cloud TPU (env: JAX_COORDINATOR_ADDRESS).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Number of processes (env: JAX_NUM_PROCESSES).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'Index of this process (env: JAX_PROCESS_ID).')


def _env_int(name: str):
  value = os.environ.get(name, '')
  return int(value) if value else None


def _hide_gpus_from_tensorflow():
  """TF (tfds, clu) must not grab GPU memory that JAX needs."""
  try:
    import tensorflow as tf
    tf.config.set_visible_devices([], 'GPU')
  except Exception:  # not installed, or already initialised
    pass


def _initialize_distributed():
  """jax.distributed.initialize() when this is one of several processes."""
  import jax
  address = _COORDINATOR.value or os.environ.get('JAX_COORDINATOR_ADDRESS')
  num = _NUM_PROCESSES.value or _env_int('JAX_NUM_PROCESSES')
  index = _PROCESS_ID.value
  if index is None:
    index = _env_int('JAX_PROCESS_ID')
  slurm = (_env_int('SLURM_NTASKS') or 1) > 1
  tpu_pod = ',' in os.environ.get('TPU_WORKER_HOSTNAMES', '')
  if not (address or slurm or tpu_pod):
    return
  # CPU-only multi-process runs need cross-process collectives (the option
  # may be gone, or gloo the default, in other JAX versions).
  try:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  except (AttributeError, KeyError, ValueError):
    pass
  if address:
    if num is None or index is None:
      raise ValueError('--coordinator_address needs --num_processes and '
                       '--process_id (or JAX_NUM_PROCESSES / JAX_PROCESS_ID)')
    jax.distributed.initialize(address, num_processes=num, process_id=index)
  else:
    jax.distributed.initialize()   # SLURM / Cloud TPU auto-detection
  logging.info('process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def _run(config, workdir: str, mode: str):
  _hide_gpus_from_tensorflow()
  _initialize_distributed()
  if mode == 'eval':
    from scsnet_jax import evaluate
    return evaluate.evaluate(config, workdir)
  from scsnet_jax import trainer
  return trainer.train_and_evaluate(config, workdir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    config = _CONFIG.value   # raises here if the config file did not load
    if config is None:
      raise app.UsageError('--config=configs/<name>.py is required')
    _run(config, _WORKDIR.value, _MODE.value)
  except (ValueError, OSError, RuntimeError) as error:
    if os.environ.get('SCSNET_DEBUG'):
      raise
    message = ' '.join(str(error).split())
    logging.error('%s: %s', type(error).__name__, message)
    print(f'error: {message} (SCSNET_DEBUG=1 shows the traceback)',
          file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main)
