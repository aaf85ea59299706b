"""Command line: ``python -m scsnet_jax.main --config=configs/x4.py --workdir=DIR``.

``--config.train.steps=100`` overrides a field; ``--mode=eval`` without
``--config`` reads ``configs/workdir.py:DIR`` (the run's config.json). User
mistakes: one line on stderr, exit 1; SIGTERM: saved, exit 75. A damaged
latest checkpoint: ``--fall_back_to_intact_checkpoint``. docs/training.md.
"""

import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from scsnet_jax import command_line, config_lib, errors
from scsnet_jax import workdir as workdir_lib
from scsnet_jax.train import preemption, resume

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Configuration file (configs/*.py); --mode=eval defaults '
    'to the workdir\'s config.json.', lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory for checkpoints, logs and samples.',
    required=True)
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'What to run.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for multi-process '
    'runs on a cluster JAX does not detect (or JAX_COORDINATOR_ADDRESS).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of '
                                      'processes (with --coordinator_address).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Index of this process '
                                   '(with --coordinator_address).')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_string(
    'allow_config_change', '', 'Resuming: config keys (or sections) that may '
    'differ from the checkpoint\'s, e.g. optimizer.learning_rate,data.')

_FALL_BACK = flags.DEFINE_bool(
    'fall_back_to_intact_checkpoint', False, 'Resuming: if the latest '
    'checkpoint is damaged (e.g. a file cut short), move it aside to '
    'checkpoints/STEP.damaged and resume from the newest intact one.')

def initialize_distributed():
  """Joins the processes of a multi-process run (the cluster is detected;
  the flags fill in what is not); TF must not grab JAX's GPU memory."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], 'GPU')
  except Exception:  # tensorflow (an extra) not installed, or initialised
    pass
  try:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value)
  except ValueError as error:  # no cluster and no flags: one process
    if (_COORDINATOR.value is None and
        'coordinator_address should be defined' in str(error)):
      return
    raise errors.UserError(f'multi-process set-up: {error} (give '
                    '--coordinator_address, --num_processes and --process_id '
                    'together, or run under SLURM or Cloud TPU)') from None
  try:  # CPU multi-process runs need cross-process collectives
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  except (AttributeError, KeyError, ValueError):  # gone in other versions
    pass
  logging.info('process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def run(config, workdir: str, mode: str, allow_config_change=(),
        fall_back_to_intact: bool = False):
  """Checks ``config``, joins the processes, then trains or evaluates."""
  if config is None:
    raise errors.UserError('--config=configs/<name>.py is required for training '
                    '(only --mode=eval can use the workdir\'s config.json)')
  config_lib.validate_config(config)
  initialize_distributed()
  # The training stack imports TF, which reads its log level on import.
  from scsnet_jax.evaluation import protocol  # pylint: disable=g-import-not-at-top
  from scsnet_jax.train import loop  # pylint: disable=g-import-not-at-top
  if mode == 'eval':
    return protocol.evaluate(config, workdir)
  try:
    return loop.train_and_evaluate(config, workdir,
                                   allow_config_change=allow_config_change,
                                   fall_back_to_intact=fall_back_to_intact)
  except preemption.StoppedEarly as stopped:
    # Saved, not finished: a distinct status so the scheduler requeues.
    logging.warning('%s; exit status %d (requeue to continue)', stopped,
                    errors.EXIT_STOPPED_EARLY)
    sys.exit(errors.EXIT_STOPPED_EARLY)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  command_line.quiet_python_logs()
  workdir, mode, config = _WORKDIR.value, _MODE.value, _CONFIG.value
  before = workdir_lib.existing_dirs(workdir)   # removed again if left empty
  try:
    run(config, workdir, mode, resume.parse_allowed(_ALLOW_CONFIG_CHANGE.value),
        _FALL_BACK.value)
  except Exception as error:  # pylint: disable=broad-except
    workdir_lib.remove_new_empty_dirs(workdir, before)
    if os.environ.get('SCSNET_DEBUG') or not (
        errors.is_user_error(error) or errors.is_out_of_memory(error)):
      raise
    print(f'error: {errors.one_line(error, mode, config)} '
          f'{command_line.DEBUG_HINT}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  command_line.quiet_native_logs(sys.argv)
  command_line.run(main, command_line.with_workdir_config(sys.argv))
