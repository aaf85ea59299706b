"""Orbax checkpoints of a training run: train state + data iterator + config.

Layout (``workdir.checkpoint_dir``): ``WORKDIR/checkpoints/<step>/`` with one orbax item per part, so a
reader restores only what it needs (inference reads ``generator_ema`` and
``config``, never the optimizer states):

  generator, generator_ema, discriminator   pure-dict fp32 parameters
  optimizer_states                          {'generator', 'discriminator'}
  progress                                  {'step', 'rng'}
  config                                    the run's ConfigDict as JSON
  data_iterator                             grain's iterator checkpoint: one
                                            JSON file per process (optional)

Saves are asynchronous and atomic (orbax writes to a temporary directory and
renames it when complete), so a killed run never leaves a half checkpoint
that a restart would pick up.
"""

from __future__ import annotations

from typing import Any, Optional

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import Mesh

from scsnet_jax import workdir as workdir_lib
from scsnet_jax.train import resume
from scsnet_jax.train.state import (Networks, TrainState,
                                    abstract_train_state, create_train_state)

def _state_item_handler() -> ocp.PyTreeCheckpointHandler:
  """The handler of the state's items: replica 0 writes each array whole.

  Orbax's default "replica parallel" write slices every replicated array
  into one piece per replica with an eager op each (thousands of dispatches
  per save: ~35 s on 8 CPU devices). The choice lives in this handler's own
  type registry, so orbax's process-wide defaults stay as they are.
  """
  handlers = ocp.type_handlers
  registry = handlers.create_type_handler_registry(
      (int, handlers.ScalarHandler()), (float, handlers.ScalarHandler()),
      (np.number, handlers.ScalarHandler()),
      (np.ndarray, handlers.NumpyHandler()),
      (jax.Array, handlers.ArrayHandler(use_replica_parallel=False)))
  return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


_STATE_ITEMS = ('generator', 'generator_ema', 'discriminator',
                'optimizer_states', 'progress')


# ----------------------------------------------------------------- manager ---
def create_manager(workdir: str, *, max_to_keep: int = 3,
                   keep_period: Optional[int] = None,
                   enable_async: bool = True) -> ocp.CheckpointManager:
  """CheckpointManager at ``WORKDIR/checkpoints``: last ``max_to_keep`` saves,
  plus every step that is a multiple of ``keep_period`` (if set)."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep,
      keep_period=keep_period or None,
      enable_async_checkpointing=enable_async,
      create=True,
      cleanup_tmp_directories=True)
  return ocp.CheckpointManager(
      workdir_lib.checkpoint_dir(workdir), options=options,
      item_handlers={**{name: _state_item_handler() for name in _STATE_ITEMS},
                     'config': ocp.JsonCheckpointHandler(),
                     'data_iterator': grain.checkpoint.CheckpointHandler()})


def _state_items(state: TrainState) -> dict[str, Any]:
  return {
      'generator': state.generator_params,
      'generator_ema': state.generator_ema,
      'discriminator': state.discriminator_params,
      'optimizer_states': {'generator': state.generator_opt_state,
                           'discriminator': state.discriminator_opt_state},
      'progress': {'step': state.step, 'rng': state.rng},
  }


def save(manager: ocp.CheckpointManager, state: TrainState,
         config: ml_collections.ConfigDict, data_iterator: Any = None, *,
         force: bool = False) -> bool:
  """Starts an (async) save of ``state`` at its own step; True if saved.

  Call on every process. Returns at once; ``manager.wait_until_finished()``
  blocks until the checkpoint is final.
  """
  step = int(jax.device_get(state.step))
  items = {name: ocp.args.PyTreeSave(tree)
           for name, tree in _state_items(state).items()}
  items['config'] = ocp.args.JsonSave(config.to_dict())
  if isinstance(data_iterator, grain.DatasetIterator):
    items['data_iterator'] = grain.checkpoint.CheckpointSave(data_iterator)
  return manager.save(step, args=ocp.args.Composite(**items), force=force)


def restore(manager: ocp.CheckpointManager, abstract_state: TrainState,
            data_iterator: Any = None,
            step: Optional[int] = None) -> Optional[TrainState]:
  """The state at ``step`` (default: latest) or None if there is none.

  ``abstract_state`` (``train_state.abstract_train_state``) gives shapes and
  target shardings; arrays are read straight into them. If ``data_iterator``
  is given and the checkpoint holds an iterator state, the iterator is moved
  to the saved position in place.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    return None
  items = {name: ocp.args.PyTreeRestore(
      tree, restore_args=ocp.checkpoint_utils.construct_restore_args(tree))
           for name, tree in _state_items(abstract_state).items()}
  saved_items = _saved_item_names(manager, step)
  if (isinstance(data_iterator, grain.DatasetIterator) and
      'data_iterator' in saved_items):
    # Before grain fails deep inside on another process count.
    resume.check_process_count(str(epath.Path(manager.directory) / str(step)),
                               jax.process_count())
    items['data_iterator'] = grain.checkpoint.CheckpointRestore(data_iterator)
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  return abstract_state.replace(
      step=restored['progress']['step'],
      rng=restored['progress']['rng'],
      generator_params=restored['generator'],
      generator_ema=restored['generator_ema'],
      discriminator_params=restored['discriminator'],
      generator_opt_state=restored['optimizer_states']['generator'],
      discriminator_opt_state=restored['optimizer_states']['discriminator'])


def saved_config(manager: ocp.CheckpointManager, step: int) -> dict:
  """The config a checkpoint was written with (its ``config`` item)."""
  restored = manager.restore(step, args=ocp.args.Composite(
      config=ocp.args.JsonRestore()))
  return restored['config']


def _saved_item_names(manager: ocp.CheckpointManager, step: int) -> set[str]:
  step_dir = epath.Path(manager.directory) / str(step)
  return {p.name for p in step_dir.iterdir()} if step_dir.exists() else set()


def restore_or_create(manager: ocp.CheckpointManager, networks: Networks,
                      config: ml_collections.ConfigDict, mesh: Mesh,
                      data_iterator: Any = None) -> tuple[TrainState, bool]:
  """(latest saved state, True) or (fresh state, False)."""
  if manager.latest_step() is not None:
    restored = restore(
        manager, abstract_train_state(networks, config, mesh), data_iterator)
    return restored, True
  return create_train_state(networks, config, mesh), False
