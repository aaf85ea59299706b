"""Command line: ``python -m scsnet_jax.main --config=configs/x4.py --workdir=DIR``.

Any config field can be overridden (``--config.train.steps=100``);
``--mode=eval`` runs ``scsnet_jax.evaluation.protocol.evaluate(config, workdir)`` and
needs no ``--config``: the workdir's ``config.json`` (written by training)
is the default, overrides included (``--config.eval.batch_size=2``).
Several processes join through ``jax.distributed.initialize()``, which finds
the cluster itself (SLURM, Cloud TPU, Open MPI, Kubernetes, or the env var
JAX_COORDINATOR_ADDRESS); ``--coordinator_address/--num_processes/
--process_id`` give what it cannot detect.

Errors: mistakes in the command or config, missing files and out-of-memory
end with one line on stderr and exit status 1 (``SCSNET_DEBUG=1`` shows the
traceback); anything else is a bug and keeps its traceback. Stopped early by
SIGTERM (after saving): exit 75, ``errors.EXIT_STOPPED_EARLY``, to requeue.
A resume's config changes need ``--allow_config_change`` (train.resume), and
a damaged latest checkpoint ``--fall_back_to_intact_checkpoint``. Directories a
failed run created and left empty are removed. Library chatter (orbax's
INFO lines, TensorFlow/oneDNN/libtpu start-up banners) is hidden unless
``--verbosity=1`` or higher. See docs/training.md.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
from typing import Optional

from absl import app, flags, logging
from ml_collections import config_flags

from scsnet_jax import workdir as workdir_lib
from scsnet_jax import errors
from scsnet_jax.errors import EXIT_STOPPED_EARLY, UserError

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Configuration file (configs/*.py). Optional with '
    '--mode=eval: the workdir\'s config.json is the default.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory for checkpoints, logs and samples.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'What to run.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for multi-process '
    'runs on a cluster JAX does not detect (or JAX_COORDINATOR_ADDRESS).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Number of processes (with --coordinator_address).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'Index of this process (with --coordinator_address).')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_string(
    'allow_config_change', '', 'Resuming: config keys (or sections) that may '
    'differ from the checkpoint\'s saved config, comma-separated, e.g. '
    'optimizer.learning_rate,data (train.steps may always change).')

_FALL_BACK = flags.DEFINE_bool(
    'fall_back_to_intact_checkpoint', False, 'Resuming: if the latest '
    'checkpoint is damaged (e.g. a file cut short), move it aside to '
    'checkpoints/STEP.damaged and resume from the newest intact one.')

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# `--config.KEY=VALUE` given without `--config=FILE` (eval on a workdir).
_WORKDIR_OVERRIDES: list[tuple[str, Optional[str]]] = []


# ------------------------------------------------------------------ noise ---
def _argv_verbosity(argv) -> int:
  """--verbosity / -v from the raw command line (before absl parses it)."""
  for index, arg in enumerate(argv[1:], start=1):
    for name in ('--verbosity', '-v'):
      value = None
      if arg.startswith(name + '='):
        value = arg[len(name) + 1:]
      elif arg == name and index + 1 < len(argv):
        value = argv[index + 1]
      if value is not None:
        try:
          return int(value)
        except ValueError:
          return 0
  return 0


def quiet_native_logs(argv) -> None:
  """Hides C++ start-up banners (TensorFlow, oneDNN, libtpu, gRPC).

  Must run before TensorFlow or JAX are imported; only sets variables the
  user has not set, and nothing at ``--verbosity=1`` or higher.
  """
  if _argv_verbosity(argv) >= 1:
    return
  # TF >= 2.16 prints its oneDNN banner whatever TF_CPP_MIN_LOG_LEVEL says;
  # TF only decodes and writes summaries here, so its oneDNN ops are unused.
  for name, value in (('TF_CPP_MIN_LOG_LEVEL', '2'),
                      ('TF_ENABLE_ONEDNN_OPTS', '0'),
                      ('TPU_STDERR_LOG_LEVEL', '2'),
                      ('TPU_MIN_LOG_LEVEL', '2'),
                      ('GRPC_VERBOSITY', 'ERROR')):
    os.environ.setdefault(name, value)


class _OwnInfoOnly(std_logging.Filter):
  """Keeps warnings and errors, and INFO lines of this package only."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING:
      return True
    return os.path.abspath(record.pathname).startswith(_PACKAGE_DIR)


def _quiet_python_logs() -> None:
  if flags.FLAGS.verbosity >= 1:
    return
  own = _OwnInfoOnly()
  logging.get_absl_handler().addFilter(own)
  for handler in std_logging.getLogger().handlers:
    handler.addFilter(own)
  for name in ('tensorflow', 'absl.tensorflow', 'jax._src.xla_bridge'):
    std_logging.getLogger(name).setLevel(std_logging.WARNING)


# ------------------------------------------------------------ flag parsing ---
def parse_flags(argv):
  """absl's parser, with one-line errors for config typos and bad values.

  Without ``--config=FILE`` the ``--config.KEY=VALUE`` flags are kept for
  the workdir's config (``config_overrides.take_workdir_overrides``).
  """
  from scsnet_jax import config_overrides
  argv, overrides = config_overrides.take_workdir_overrides(argv)
  _WORKDIR_OVERRIDES[:] = overrides
  try:
    return flags.FLAGS(argv)
  # A bad value, unknown flag or missing flag; an unknown config key.
  except (flags.Error, AttributeError, KeyError) as error:
    message = config_overrides.explain_flag_error(argv, error)
  except (ValueError, TypeError, OSError, SyntaxError, ImportError) as error:
    # The config file raised while loading: a mistake in the file.
    message = f'{type(error).__name__}: {" ".join(str(error).split())}'
    if os.environ.get('SCSNET_DEBUG'):
      raise
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


# ---------------------------------------------------------------- running ---
def _hide_gpus_from_tensorflow():
  """TF (tfds, clu) must not grab GPU memory that JAX needs."""
  try:
    import tensorflow as tf
    tf.config.set_visible_devices([], 'GPU')
  except Exception:  # not installed, or already initialised
    pass


def _initialize_distributed():
  """Joins the other processes of a multi-process run, if this is one.

  ``jax.distributed.initialize`` detects the cluster (SLURM, Cloud TPU,
  Open MPI, Kubernetes, JAX_COORDINATOR_ADDRESS); the flags fill in what it
  cannot. With no cluster and no flags it finds no coordinator: one process.
  """
  import jax
  try:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value)
  except ValueError as error:
    if (_COORDINATOR.value is None and
        'coordinator_address should be defined' in str(error)):
      return   # not part of a multi-process job
    raise UserError(f'multi-process set-up: {error} (give '
                    '--coordinator_address, --num_processes and --process_id '
                    'together, or run under SLURM or Cloud TPU)') from None
  # CPU-only multi-process runs need cross-process collectives (the option
  # may be gone, or gloo the default, in other JAX versions). The backend is
  # created later, on first use, so the setting still applies.
  try:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  except (AttributeError, KeyError, ValueError):
    pass
  logging.info('process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def resolve_config(config, workdir: str, mode: str,
                   overrides=()):
  """The config to run: ``--config``, or the workdir's own for eval."""
  from scsnet_jax import config_overrides
  if config is None:
    if mode != 'eval':
      raise UserError('--config=configs/<name>.py is required for training '
                      '(only --mode=eval can use the workdir\'s config.json)')
    config = config_overrides.load_workdir_config(workdir)
    config_overrides.apply_overrides(config, overrides)
  config_overrides.validate_config(config)
  return config


def _run(config, workdir: str, mode: str, allow_config_change=(),
         fall_back_to_intact: bool = False):
  _hide_gpus_from_tensorflow()
  _initialize_distributed()
  if mode == 'eval':
    from scsnet_jax.evaluation import protocol as evaluate
    return evaluate.evaluate(config, workdir)
  from scsnet_jax.train import loop as trainer
  try:
    return trainer.train_and_evaluate(
        config, workdir, allow_config_change=allow_config_change,
        fall_back_to_intact=fall_back_to_intact)
  except trainer.StoppedEarly as stopped:
    # Saved, not finished: a distinct status so the scheduler requeues.
    logging.warning('%s; exit status %d (requeue to continue)', stopped,
                    EXIT_STOPPED_EARLY)
    sys.exit(EXIT_STOPPED_EARLY)


# ------------------------------------------------------------------- main ---
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  _quiet_python_logs()
  workdir, mode = _WORKDIR.value, _MODE.value
  before = workdir_lib.existing_dirs(workdir)
  config = _CONFIG.value
  try:
    config = resolve_config(config, workdir, mode, _WORKDIR_OVERRIDES)
    from scsnet_jax.train import resume
    _run(config, workdir, mode,
         resume.parse_allowed(_ALLOW_CONFIG_CHANGE.value), _FALL_BACK.value)
  except Exception as error:  # pylint: disable=broad-except
    workdir_lib.remove_new_empty_dirs(workdir, before)
    if os.environ.get('SCSNET_DEBUG') or not (
        errors.is_user_error(error) or errors.is_out_of_memory(error)):
      raise
    print(f'error: {errors.one_line(error, mode, config)} '
          '(SCSNET_DEBUG=1 shows the traceback)', file=sys.stderr)
    sys.exit(1)


_HELP_FLAGS = ('-h', '-?', '--help', '--helpshort', '--helpfull', '--helpxml')


def run() -> None:
  """``app.run(main)``, except that asking for help exits 0 (absl exits 1,
  which scripts and CI read as a failure)."""
  quiet_native_logs(sys.argv)
  flags.mark_flags_as_required(['workdir'])
  options = sys.argv[1:sys.argv.index('--') if '--' in sys.argv else None]
  try:
    app.run(main, flags_parser=parse_flags)
  except SystemExit as exit_:
    if exit_.code == 1 and set(options) & set(_HELP_FLAGS):
      sys.exit(0)
    raise


if __name__ == '__main__':
  run()
