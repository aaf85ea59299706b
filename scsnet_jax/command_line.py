"""What the absl command lines (``main``, ``benchmark``) share: library
chatter hidden, one-line flag errors, and help that exits 0.

``run(main)`` is ``absl.app.run(main)`` with these; ``raw_flag`` reads a flag
from the command line before absl parses it (what must be decided before:
native log levels, the workdir's config file).
"""

from __future__ import annotations

import difflib
import logging as std_logging
import os
import sys
from typing import Callable, Optional, Sequence

from absl import app, flags, logging
import ml_collections

from scsnet_jax import config_lib
from scsnet_jax.errors import UserError

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# configs/workdir.py:DIR reads a run's config.json as a config file.
WORKDIR_CONFIG = os.path.join(_PACKAGE_DIR, os.pardir, 'configs',
                              'workdir.py')
_HELP_FLAGS = ('-h', '-?', '--help', '--helpshort', '--helpfull', '--helpxml')
DEBUG_HINT = '(SCSNET_DEBUG=1 shows the traceback)'


def raw_flag(argv: Sequence[str], *names: str) -> Optional[str]:
  """The value of ``--name=VALUE`` or ``--name VALUE`` (the first of
  ``names`` given) on a raw command line; None if absent."""
  for index, arg in enumerate(argv[1:], start=1):
    for name in names:
      if arg.startswith(name + '='):
        return arg[len(name) + 1:]
      if arg == name and index + 1 < len(argv):
        return argv[index + 1]
  return None


def with_workdir_config(argv: list[str]) -> list[str]:
  """``--mode=eval`` without ``--config``: the workdir's own config file
  (``WORKDIR_CONFIG``), put on the command line before absl parses it, so
  ``--config.KEY=VALUE`` overrides apply to it too."""
  workdir = raw_flag(argv, '--workdir')
  if (raw_flag(argv, '--mode') != 'eval' or not workdir
      or any(a == '--config' or a.startswith('--config=') for a in argv)):
    return argv
  return [argv[0], f'--config={WORKDIR_CONFIG}:{workdir}'] + argv[1:]


# ------------------------------------------------------------------ noise ---
def _argv_verbosity(argv) -> int:
  """--verbosity / -v from the raw command line (before absl parses it)."""
  value = raw_flag(argv, '--verbosity', '-v')
  try:
    return int(value) if value is not None else 0
  except ValueError:
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


class OwnInfoOnly(std_logging.Filter):
  """Keeps warnings and errors, and INFO lines of this package only."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING:
      return True
    return os.path.abspath(record.pathname).startswith(_PACKAGE_DIR)


def quiet_python_logs() -> None:
  """Library INFO lines (orbax, TensorFlow) hidden below ``--verbosity=1``."""
  if flags.FLAGS.verbosity >= 1:
    return
  own = OwnInfoOnly()
  logging.get_absl_handler().addFilter(own)
  for handler in std_logging.getLogger().handlers:
    handler.addFilter(own)
  for name in ('tensorflow', 'absl.tensorflow', 'jax._src.xla_bridge'):
    std_logging.getLogger(name).setLevel(std_logging.WARNING)


# ------------------------------------------------------------ flag errors ---
def closest_keys(config, dotted: str, n: int = 3) -> list[str]:
  """Valid dotted keys closest to a misspelt ``dotted`` (best first)."""
  paths = list(config_lib.flatten(config))
  parent, _, leaf = dotted.rpartition('.')
  siblings = [p.rpartition('.')[2] for p in paths
              if p.rpartition('.')[0] == parent]
  matches = [f'{parent}.{m}' if parent else m
             for m in difflib.get_close_matches(leaf, siblings, n=n)]
  if not matches:  # a misspelt section ('trainz.steps'), or a far-off key
    sections = sorted({p.rsplit('.', 1)[0] for p in paths if '.' in p})
    matches = difflib.get_close_matches(dotted, paths + sections, n=n,
                                        cutoff=0.6)
  return matches


def unknown_key(config, dotted: str) -> Optional[str]:
  """None if ``dotted`` names a field of ``config``, else a one-line error."""
  node = config
  for part in dotted.split('.'):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or (
        part not in node):
      break
    node = node[part]
  else:
    return None
  closest = closest_keys(config, dotted)
  hint = (f'; closest valid keys: {", ".join(closest)}' if closest else
          f'; valid sections: {", ".join(sorted(config.keys()))}')
  return f'unknown config key {dotted!r}{hint}'


def explain_flag_error(argv: Sequence[str], error: Exception) -> str:
  """One line for a command line whose ``--config`` flags absl refused.

  Each ``--config.KEY[=VALUE]`` is held against the config file itself:
  an unknown key (with the closest valid ones), a value of the wrong type,
  a list field (flags cannot set those). A config file that raises a
  ``UserError`` or ``OSError`` (a workdir without ``config.json``) is that
  line. Otherwise absl's own message, on one line.
  """
  path = raw_flag(argv, '--config')
  try:
    config = config_lib.load_config_file(path) if path else None
  except (UserError, OSError) as file_error:
    if not os.path.isfile(path.partition(':')[0]):
      config = None  # no such config file: absl said so
    else:            # the file refused its argument (a workdir's config)
      return f'{" ".join(str(file_error).split())} {DEBUG_HINT}'
  except Exception:  # pylint: disable=broad-except
    config = None    # the file itself is broken: absl said what
  for arg in argv[1:] if config is not None else ():
    if not arg.startswith(('--config.', '--noconfig.')):
      continue
    name, eq, text = arg.partition('=')
    dotted = name.split('config.', 1)[1]
    message = unknown_key(config, dotted)
    if message:
      return message
    current = config_lib.get(config, dotted)
    if isinstance(current, list):
      return (f'config.{dotted} cannot be set from the command line (a list '
              'field); set it in a config file (configs/*.py)')
    if eq and current is not None:
      try:
        _parse_value(text, current)
      except ValueError as bad:
        return (f'--config.{dotted}={text}: {bad} (the config file has '
                f'{current!r})')
  return ' '.join(str(error).replace('\\n', ' ').split()).strip('"\'')


def _parse_value(text: str, current):
  """A command-line string -> the type of the field's current value (what
  ml_collections does; here only to say why it refused)."""
  if isinstance(current, bool):
    if text.lower() in ('true', '1', 'yes', 'false', '0', 'no'):
      return text.lower() in ('true', '1', 'yes')
    raise ValueError(f'expected true or false, got {text!r}')
  for kind, what in ((int, 'an integer'), (float, 'a number')):
    if isinstance(current, kind):
      try:
        return kind(text)
      except ValueError:
        raise ValueError(f'expected {what}, got {text!r}') from None
  return text


def parse_flags(argv):
  """absl's parser, with one-line errors for config typos and bad values."""
  try:
    return flags.FLAGS(argv)
  # A bad value, unknown flag or missing flag; an unknown config key.
  except (flags.Error, AttributeError, KeyError) as error:
    message = explain_flag_error(argv, error)
  except (ValueError, TypeError, OSError, SyntaxError, ImportError) as error:
    # The config file raised while loading: a mistake in the file.
    message = f'{type(error).__name__}: {" ".join(str(error).split())}'
    if os.environ.get('SCSNET_DEBUG'):
      raise
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


# -------------------------------------------------------------------- run ---
def run(main: Callable, argv: Optional[Sequence[str]] = None,
        flags_parser: Callable = parse_flags) -> None:
  """``app.run(main)``, except that asking for help exits 0 (absl exits 1,
  which scripts and CI read as a failure)."""
  argv = list(sys.argv if argv is None else argv)
  options = argv[1:argv.index('--')] if '--' in argv else argv[1:]
  try:
    app.run(main, argv=argv, flags_parser=flags_parser)
  except SystemExit as exit_:
    if exit_.code == 1 and set(options) & set(_HELP_FLAGS):
      sys.exit(0)
    raise
