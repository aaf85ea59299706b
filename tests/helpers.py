"""Helpers that only tests (and CI) use, kept out of the library."""

import copy

import ml_collections

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

