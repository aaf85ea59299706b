"""Command-line overrides of a config, their checks, and a workdir's config.

``--config.a.b=VALUE`` flags are parsed by ml_collections for ``--config=FILE``
runs; for runs configured by ``WORKDIR/config.json`` (eval, predict) they are
parsed here. Every check raises a one-line ``UserError`` that names the key,
and ``explain_flag_error`` turns a flag that ml_collections refused into such
a line.
"""

from __future__ import annotations

import difflib
import json
import os
from typing import Any, Iterable, Optional, Sequence

import ml_collections

from scsnet_jax.errors import UserError
from scsnet_jax import config_lib
from scsnet_jax.config_lib import get_base_config
from scsnet_jax import workdir as workdir_lib


# --------------------------------------------------------------- validation ---
def choices() -> dict[str, tuple]:
  """Fields whose values are a closed set -> the set, read from the module
  that owns it (so that each set is written once). Flags give strings, so a
  choice that is also a Python value (True, None) has a spelled-out string.
  """
  from scsnet_jax import config_lib
  from scsnet_jax.evaluation import validation
  from scsnet_jax.models import cpm, generator
  from scsnet_jax.train import losses
  from scsnet_jax.train import state as train_state
  dtypes = tuple(generator.DTYPES)
  return {
      'dtype': dtypes,
      'model.dtype': dtypes,
      'loss.vgg_dtype': dtypes,
      'model.cpm_project_first': generator.PROJECT_FIRST,
      'model.attention_impl': generator.ATTENTION_IMPLS,
      'model.cpm_sampling': cpm.SAMPLINGS,
      'train.mode_schedule': config_lib.MODE_SCHEDULES,
      'optimizer.schedule': train_state.LR_SCHEDULES,
      'optimizer.weight_decay_mode': train_state.WEIGHT_DECAY_MODES,
      'loss.luminance_loss': losses.LUMINANCE_LOSSES,
      # data/sources.make_source branches on these.
      'data.source': ('tfds', 'folder', 'demo'),
      'validation.source': validation.SOURCES,
  }


# Fields that also take a Python bool (GeneratorConfig, ignore_type()).
ALSO_BOOL = ('model.cpm_project_first',)
_HINTS = {
    ('model.cpm_project_first', 'true'): "'always'",
    ('model.cpm_project_first', 'false'): "'never'",
}


def leaf_paths(config, prefix: str = '') -> list[str]:
  """Dotted paths of every non-section field: ['data.crop_size', ...]."""
  paths = []
  for key in config.keys():
    value = config[key]
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      paths += leaf_paths(value, f'{prefix}{key}.')
    else:
      paths.append(f'{prefix}{key}')
  return paths


def closest_keys(config, dotted: str, n: int = 3) -> list[str]:
  """Valid dotted keys closest to a misspelt ``dotted`` (best first)."""
  paths = leaf_paths(config)
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
  parts = dotted.split('.')
  for index, part in enumerate(parts):
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


def get(config, dotted: str, default: Any = KeyError) -> Any:
  """``config['a']['b']`` for ``'a.b'``; ``default`` (else KeyError) when a
  part is missing."""
  node = config
  for part in dotted.split('.'):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or (
        part not in node):
      if default is KeyError:
        raise KeyError(dotted)
      return default
    node = node[part]
  return node


_MISSING = object()


def validate_config(config) -> None:
  """Raises UserError (one line) for a choice or type a flag got wrong.

  Run where every config is built (``main.resolve_config``, for
  ``--config=FILE`` and workdir configs alike). Checks every field of
  ``choices()`` and that each field of the base config
  still has its default's type (ints are fine where floats are expected).
  """
  errors = []
  closed_sets = choices()
  for dotted, allowed in closed_sets.items():
    value = get(config, dotted, _MISSING)
    if value is _MISSING:
      continue
    if dotted in ALSO_BOOL and isinstance(value, bool):
      continue
    if any(value is c or (isinstance(value, str) and value == c)
           for c in allowed):
      continue
    shown = ', '.join(repr(c) for c in allowed)
    also = ' (or a bool, from Python)' if dotted in ALSO_BOOL else ''
    hint = _HINTS.get((dotted, str(value).lower()))
    errors.append(f'config.{dotted} must be one of {shown}{also}, got '
                  f'{value!r}' + (f' (did you mean {hint}?)' if hint else ''))
  base = _base_types()
  for dotted, want in base.items():
    value = get(config, dotted, _MISSING)
    if value is _MISSING or dotted in closed_sets or value is None:
      continue
    if want is float and isinstance(value, int) and not isinstance(value,
                                                                   bool):
      continue
    if want in (list, tuple) and isinstance(value, (list, tuple)):
      continue
    if not isinstance(value, want) or (want is int and
                                       isinstance(value, bool)):
      errors.append(f'config.{dotted} must be {want.__name__}, got '
                    f'{value!r} ({type(value).__name__})')
  if errors:
    raise UserError('; '.join(errors))


def _base_types() -> dict[str, type]:
  """Dotted key -> the type of its default; fields declared with
  ``field_type=object`` (``data.scale``: a number or [min, max]) take any."""
  config = get_base_config()
  types = {}
  for dotted in leaf_paths(config):
    parent, _, leaf = dotted.rpartition('.')
    node = get(config, parent) if parent else config
    value = node[leaf]
    if value is not None and node.get_ref(leaf).get_type() is not object:
      types[dotted] = type(value)
  return types


# ------------------------------------------------- the workdir's own config ---
def config_from_dict(values: dict) -> ml_collections.ConfigDict:
  """A saved config (``config.json``) on top of ``get_base_config()``.

  Field references (``model.dtype`` -> ``dtype``) are kept; fields the
  saved config does not know keep their defaults, and fields the base
  config does not know (an older or newer version) are kept as saved.
  """
  config = get_base_config()

  def merge(node, saved):
    for key, value in saved.items():
      if (key in node and isinstance(node[key], ml_collections.ConfigDict)
          and isinstance(value, dict)):
        merge(node[key], value)
      else:
        try:
          node[key] = value
        except TypeError:   # a typed reference gets another type: replace
          with node.ignore_type():
            node[key] = value
  merge(config, saved=values)
  return config


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """``WORKDIR/config.json`` (written by training) as a ConfigDict."""
  path = workdir_lib.config_path(workdir)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'{path} does not exist: --workdir is not a training workdir; give '
        '--config=configs/<name>.py')
  with open(path) as f:
    try:
      values = json.load(f)
    except json.JSONDecodeError as error:
      raise UserError(f'{path} is not valid JSON: {error}') from None
  return config_from_dict(values)


def parse_value(text: str, current: Any) -> Any:
  """A command-line string -> the type of the field's current value."""
  if isinstance(current, bool):
    lowered = text.lower()
    if lowered in ('true', '1', 'yes'):
      return True
    if lowered in ('false', '0', 'no'):
      return False
    raise UserError(f'expected true or false, got {text!r}')
  if isinstance(current, int):
    try:
      return int(text)
    except ValueError:
      raise UserError(f'expected an integer, got {text!r}') from None
  if isinstance(current, float):
    try:
      return float(text)
    except ValueError:
      raise UserError(f'expected a number, got {text!r}') from None
  if isinstance(current, (list, tuple)):
    import ast
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      raise UserError(f'expected a list such as [1, 2], got {text!r}'
                       ) from None
    return list(value) if isinstance(value, (list, tuple)) else [value]
  return text


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Iterable[tuple[str, Optional[str]]]) -> None:
  """``[('eval.batch_size', '2'), ...]`` (dotted key, text) into ``config``.

  For configs that do not come from ``--config=FILE`` (the workdir's
  ``config.json``); one-line UserErrors for unknown keys and bad values.
  A key without a value (``--config.eval.y_channel``) sets a bool to True.
  """
  for dotted, text in overrides:
    message = unknown_key(config, dotted)
    if message:
      raise UserError(message)
    parent, _, leaf = dotted.rpartition('.')
    node = get(config, parent) if parent else config
    current = node[leaf]
    if text is None:
      if not isinstance(current, bool):
        raise UserError(f'--config.{dotted} needs a value')
      value = True
    else:
      try:
        value = parse_value(text, current)
      except ValueError as error:
        raise UserError(f'--config.{dotted}: {error}') from None
    with node.ignore_type():
      node[leaf] = value


# ------------------------------------------------- --config flags on argv ---
def config_file_from_argv(argv: Sequence[str]) -> Optional[str]:
  """The ``--config=FILE`` (or ``--config FILE``) of a command line."""
  for index, arg in enumerate(argv[1:], start=1):
    if arg.startswith('--config='):
      return arg[len('--config='):]
    if arg == '--config' and index + 1 < len(argv):
      return argv[index + 1]
  return None


def take_workdir_overrides(argv: Sequence[str]
                           ) -> tuple[list[str], list[tuple[str, Optional[str]]]]:
  """Without ``--config=FILE``, ``--config.KEY=VALUE`` flags are meant for the
  workdir's config.json: -> (argv without them, [(KEY, VALUE or None)]), to
  apply (``apply_overrides``) once it is loaded. With a file: (argv, [])."""
  argv = list(argv)
  if any(a == '--config' or a.startswith('--config=') for a in argv[1:]):
    return argv, []
  kept, overrides = argv[:1], []
  for arg in argv[1:]:
    if arg.startswith('--config.'):
      key, eq, value = arg[len('--config.'):].partition('=')
      overrides.append((key, value if eq else None))
    else:
      kept.append(arg)
  return kept, overrides


def explain_flag_error(argv: Sequence[str], error: Exception) -> str:
  """One line for a command line whose ``--config`` flags absl refused.

  Each ``--config.KEY[=VALUE]`` is held against the config file itself:
  an unknown key (with the closest valid ones), a value of the wrong type,
  a list field (flags cannot set those). When none of them is the cause
  (a missing flag, a broken file), absl's own message, on one line.
  """
  path = config_file_from_argv(argv)
  try:
    config = config_lib.load_config_file(path) if path else None
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
    current = get(config, dotted)
    if isinstance(current, list):
      return (f'config.{dotted} cannot be set from the command line (a list '
              'field); set it in a config file (configs/*.py)')
    if eq and current is not None:
      try:
        parse_value(text, current)
      except ValueError as bad:
        return (f'--config.{dotted}={text}: {bad} (the config file has '
                f'{current!r})')
  return ' '.join(str(error).replace('\\n', ' ').split()).strip('"\'')
