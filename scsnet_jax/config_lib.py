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

import math

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  from scsnet_jax import losses
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
      learning_rate=1e-4, b1=0.9, b2=0.999, weight_decay=1e-4))

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
      num_sample_images=4,
      checkpoint_every_steps=1000,
      max_to_keep=3,
      keep_period=10_000,            # also keep every multiple of this step
      profile=False,                 # clu Profile around a few steps
      profile_num_steps=5,
  ))
  return config


def _default_eval_config() -> ml_collections.ConfigDict:
  try:
    from scsnet_jax import evaluate
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
  """A copy of ``config`` with ``SHALLOW_MODEL_OVERRIDES`` applied."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.update(SHALLOW_MODEL_OVERRIDES)
  return config
