"""Shared ConfigDict defaults; ``configs/*.py`` extend ``get_base_config()``.

Sections: ``model`` (generator widths, from ``models.generator``), ``data``
(``input_pipeline``), ``loss`` (``losses``), ``eval`` (``evaluate``, when that
module exists), ``optimizer`` and ``train`` (here). Each section's defaults
live with the module that reads them; this file only assembles them.

``config.dtype`` is the compute dtype of both networks ('float32' or
'bfloat16'); ``config.model.dtype`` is a reference to it, so
``--config.dtype=bfloat16`` switches both. Parameters, optimizer states and
losses stay float32 either way.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
from typing import Any, Iterable, Optional

import ml_collections
from ml_collections import config_dict


def get_base_config() -> ml_collections.ConfigDict:
  from scsnet_jax.train import losses
  from scsnet_jax.data_config import default_data_config
  from scsnet_jax.models.generator import model_config_dict

  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dtype = 'float32'

  config.model = ml_collections.ConfigDict(model_config_dict())
  config.model.referential = True   # training alternates both modes
  config.model.dtype = config.get_ref('dtype')

  config.data = default_data_config()
  config.loss = losses.default_loss_config()
  config.eval = _default_eval_config()

  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, b1=0.9, b2=0.999, weight_decay=1e-4,
      # 'constant' (the paper) or 'cosine': linear warm-up over
      # `warmup_steps`, then cosine decay to `final_lr_fraction` x lr at the
      # last step.
      schedule='constant', warmup_steps=0, final_lr_fraction=0.01,
      grad_clip_norm=0.0,            # > 0: clip G's and D's global norm
  ))

  config.train = ml_collections.ConfigDict(dict(
      # Length: `steps` if > 0, else `num_epochs` passes over
      # `num_train_examples` examples at `data.global_batch_size`.
      steps=-1,
      num_epochs=50,
      num_train_examples=-1,
      # Even steps automatic, odd referential ('alternate'), or one mode.
      mode_schedule='alternate',
      ema_decay=0.999,
      ema_warmup=True,               # decay min(ema_decay, (1+t)/(10+t))
      log_every_steps=100,
      sample_every_steps=1000,
      checkpoint_every_steps=1000,
      max_to_keep=3,
      keep_period=10_000,            # also keep every multiple of this step
      profile=False,                 # clu Profile around a few steps
      profile_num_steps=5,
      # Validation on fixed held-out photos (scsnet_jax.evaluation.validation): model
      # and baselines per mode, logged with the losses; 0 = never.
      eval_every_steps=0,
      # > 0: while the GAN is inactive, the content loss is computed on this
      # many random HR pixels per crop (the CPM renders only those), not on
      # every pixel (train_step.sample_output_points); 0 = every pixel.
      content_points=0,
  ))
  config.validation = ml_collections.ConfigDict(dict(
      source='demo',                 # 'demo' (skimage photos) or 'folder'
      folder_path=config_dict.FieldReference('', field_type=object),
      num_images=6,                  # the first n photos of the source
      crop_size=256,                 # HR centre crop; LR = crop / scale
      scale=4.0,
      num_sample_images=3,           # photos in the labelled sample grid
  ))
  return config


def _default_eval_config() -> ml_collections.ConfigDict:
  try:
    from scsnet_jax.evaluation import protocol as evaluate
  except ImportError:
    return ml_collections.ConfigDict()
  return evaluate.default_eval_config()


def total_steps(config: ml_collections.ConfigDict) -> int:
  """Number of training steps this config asks for (a clear error if none)."""
  if config.train.steps > 0:
    return int(config.train.steps)
  examples = config.train.num_train_examples
  if examples <= 0:
    raise ValueError('set config.train.steps, or config.train.num_epochs and '
                     'config.train.num_train_examples')
  return int(math.ceil(config.train.num_epochs * examples /
                       config.data.global_batch_size))


def mode_for_step(config: ml_collections.ConfigDict, step: int) -> bool:
  """True for a referential step, False for an automatic one."""
  schedule = config.train.mode_schedule
  if schedule == 'alternate':
    return step % 2 == 1
  if schedule in ('automatic', 'referential'):
    return schedule == 'referential'
  raise ValueError(f'config.train.mode_schedule must be alternate, automatic '
                   f'or referential, got {schedule!r}')


def gan_active(config: ml_collections.ConfigDict, step: int) -> bool:
  """Does ``step`` train with the adversarial and perceptual terms?

  False during the PSNR warm-up (``loss.gan_start_step`` steps of content
  loss alone, as ESRGAN trains) and whenever the adversarial weight is 0:
  then the discriminator is not run at all.
  """
  return (bool(config.loss.adversarial_weight) and
          step >= int(config.loss.get('gan_start_step', 0)))


def load_sibling_config(this_file: str, name: str) -> ml_collections.ConfigDict:
  """``get_config()`` of ``configs/<name>.py`` next to ``this_file``.

  Lets one config extend another without ``configs`` being importable
  (config files are loaded by path, from any working directory).
  """
  import importlib.util
  import os
  path = os.path.join(os.path.dirname(os.path.abspath(this_file)),
                      f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'_scsnet_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# Unit tests of the training machinery (not of the model) compile the step
# many times; these keep the spec's widths but one block per stack, which
# roughly halves CPU compile time. Never used by configs/*.py.
SHALLOW_MODEL_OVERRIDES = {
    'texture_res_blocks': 1,
    'source_res_blocks': 1,
    'reference_res_blocks': 1,
    'pyramid_levels': 1,
}


def shallow_model_flags() -> list[str]:
  """``SHALLOW_MODEL_OVERRIDES`` as ``--config.model.<key>=<value>`` flags."""
  return [f'--config.model.{k}={v}' for k, v in SHALLOW_MODEL_OVERRIDES.items()]


def with_shallow_model(config: ml_collections.ConfigDict
                       ) -> ml_collections.ConfigDict:
  """A copy of ``config`` with ``SHALLOW_MODEL_OVERRIDES`` applied.

  A deep copy keeps the field references (``model.dtype`` follows
  ``dtype``); rebuilding from ``to_dict()`` would drop them.
  """
  config = copy.deepcopy(config)
  config.model.update(SHALLOW_MODEL_OVERRIDES)
  return config



# --------------------------------------------------------------- validation ---
# Fields whose values are a closed set. Flags give strings, so a choice that
# is also a Python value (True, None) has a spelled-out string instead.
CHOICES = {
    'dtype': ('float32', 'bfloat16'),
    'model.dtype': ('float32', 'bfloat16'),
    'loss.vgg_dtype': ('float32', 'bfloat16'),
    'model.cpm_project_first': ('auto', 'always', 'never'),
    'model.attention_impl': (None, 'xla', 'cudnn'),
    'train.mode_schedule': ('alternate', 'automatic', 'referential'),
    'optimizer.schedule': ('constant', 'cosine'),
    'data.source': ('tfds', 'folder', 'demo'),
    'validation.source': ('demo', 'folder'),
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


def _get(config, dotted: str, default: Any = KeyError) -> Any:
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
  """Raises ValueError (one line) for a choice or type a flag got wrong.

  Checks every field of ``CHOICES`` and that each field of the base config
  still has its default's type (ints are fine where floats are expected).
  """
  errors = []
  for dotted, choices in CHOICES.items():
    value = _get(config, dotted, _MISSING)
    if value is _MISSING:
      continue
    if dotted in ALSO_BOOL and isinstance(value, bool):
      continue
    if any(value is c or (isinstance(value, str) and value == c)
           for c in choices):
      continue
    shown = ', '.join(repr(c) for c in choices)
    also = ' (or a bool, from Python)' if dotted in ALSO_BOOL else ''
    hint = _HINTS.get((dotted, str(value).lower()))
    errors.append(f'config.{dotted} must be one of {shown}{also}, got '
                  f'{value!r}' + (f' (did you mean {hint}?)' if hint else ''))
  base = _base_types()
  for dotted, want in base.items():
    value = _get(config, dotted, _MISSING)
    if value is _MISSING or dotted in CHOICES or value is None:
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
    raise ValueError('; '.join(errors))


def _base_types() -> dict[str, type]:
  config = get_base_config()
  types = {}
  for dotted in leaf_paths(config):
    value = _get(config, dotted)
    if value is not None:
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


WORKDIR_CONFIG = 'config.json'


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """``WORKDIR/config.json`` (written by training) as a ConfigDict."""
  path = os.path.join(workdir, WORKDIR_CONFIG)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'{path} does not exist: --workdir is not a training workdir; give '
        '--config=configs/<name>.py')
  with open(path) as f:
    try:
      values = json.load(f)
    except json.JSONDecodeError as error:
      raise ValueError(f'{path} is not valid JSON: {error}') from None
  return config_from_dict(values)


def parse_value(text: str, current: Any) -> Any:
  """A command-line string -> the type of the field's current value."""
  if isinstance(current, bool):
    lowered = text.lower()
    if lowered in ('true', '1', 'yes'):
      return True
    if lowered in ('false', '0', 'no'):
      return False
    raise ValueError(f'expected true or false, got {text!r}')
  if isinstance(current, int):
    try:
      return int(text)
    except ValueError:
      raise ValueError(f'expected an integer, got {text!r}') from None
  if isinstance(current, float):
    try:
      return float(text)
    except ValueError:
      raise ValueError(f'expected a number, got {text!r}') from None
  if isinstance(current, (list, tuple)):
    import ast
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      raise ValueError(f'expected a list such as [1, 2], got {text!r}'
                       ) from None
    return list(value) if isinstance(value, (list, tuple)) else [value]
  return text


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Iterable[tuple[str, Optional[str]]]) -> None:
  """``[('eval.batch_size', '2'), ...]`` (dotted key, text) into ``config``.

  For configs that do not come from ``--config=FILE`` (the workdir's
  ``config.json``); one-line ValueErrors for unknown keys and bad values.
  A key without a value (``--config.eval.y_channel``) sets a bool to True.
  """
  for dotted, text in overrides:
    message = unknown_key(config, dotted)
    if message:
      raise ValueError(message)
    parent, _, leaf = dotted.rpartition('.')
    node = _get(config, parent) if parent else config
    current = node[leaf]
    if text is None:
      if not isinstance(current, bool):
        raise ValueError(f'--config.{dotted} needs a value')
      value = True
    else:
      try:
        value = parse_value(text, current)
      except ValueError as error:
        raise ValueError(f'--config.{dotted}: {error}') from None
    with node.ignore_type():
      node[leaf] = value
