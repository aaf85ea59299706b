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

import errno
import shutil
from typing import Any, Optional

import grain
from absl import logging
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from scsnet_jax import workdir as workdir_lib
from scsnet_jax.errors import UserError, first_line, root_cause
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

  Call on every process. Returns at once; ``finish_saves`` blocks until the
  checkpoint is final. A save that cannot fit the free space of a local
  workdir is refused before it starts, and an earlier save that failed is
  reported (``check_saves``), both as ``CheckpointSaveError``.
  """
  step = int(jax.device_get(state.step))
  items = _state_items(state)
  check_saves(manager)
  _check_free_space(manager, sum(x.nbytes for x in jax.tree.leaves(items)),
                    step)
  args = {name: ocp.args.PyTreeSave(tree) for name, tree in items.items()}
  args['config'] = ocp.args.JsonSave(config.to_dict())
  if isinstance(data_iterator, grain.DatasetIterator):
    args['data_iterator'] = grain.checkpoint.CheckpointSave(data_iterator)
  try:
    return manager.save(step, args=ocp.args.Composite(**args), force=force)
  except Exception as error:  # pylint: disable=broad-except
    raise _save_failed(manager, error) from None


# ---------------------------------------------------------- failed saves ---
class CheckpointSaveError(UserError):
  """A checkpoint could not be written (e.g. the disk is full): training
  stops at once, one line, rather than computing steps it cannot save."""


# How TensorStore and the OS say "disk full" (errno 28, ENOSPC).
_NO_SPACE = ('No space left on device', "os_error_code='28'")


def _workdir(manager: ocp.CheckpointManager) -> str:
  return str(epath.Path(manager.directory).parent)


def _save_failed(manager: ocp.CheckpointManager,
                 error: BaseException) -> CheckpointSaveError:
  """The one line for a save that failed: "no space left on WORKDIR" for
  ENOSPC, else the innermost reason (``errors.root_cause``)."""
  cause = root_cause(error)
  if (isinstance(cause, OSError) and cause.errno == errno.ENOSPC) or any(
      marker in str(cause) for marker in _NO_SPACE):
    return CheckpointSaveError(
        f'checkpoint save failed: no space left on {_workdir(manager)}; free '
        'some space and run the same command to resume from the last '
        'saved step')
  return CheckpointSaveError(f'checkpoint save failed: '
                             f'{type(cause).__name__}: {first_line(cause)}')


def _check_free_space(manager: ocp.CheckpointManager, nbytes: int,
                      step: int) -> None:
  """Refuses (``CheckpointSaveError``) a save of ``nbytes`` that the local
  workdir's free space cannot hold: orbax would start it, fail in its
  threads with one traceback per array, and report it only at the next
  save. Old steps are deleted after a new one is complete, so it needs the
  whole size."""
  directory = str(manager.directory)
  if '://' in directory:
    return
  try:
    free = shutil.disk_usage(directory).free
  except OSError:
    return
  if free < nbytes:
    raise CheckpointSaveError(
        f'checkpoint save failed: no space left on {_workdir(manager)} '
        f'(step {step} needs {nbytes / 2**20:.0f} MiB, {free / 2**20:.0f} '
        'MiB are free); free some space and run the same command to resume '
        'from the last saved step')


def check_saves(manager: ocp.CheckpointManager) -> None:
  """Raises ``CheckpointSaveError`` if an asynchronous save has failed
  since the last call (cheap: call it every step, so training stops at
  the first failed save rather than at the next one)."""
  try:
    manager.check_for_errors()
  except Exception as error:  # pylint: disable=broad-except
    raise _save_failed(manager, error) from None


def finish_saves(manager: ocp.CheckpointManager) -> None:
  """Waits for the saves in flight; a failed one is ``CheckpointSaveError``."""
  try:
    manager.wait_until_finished()
  except Exception as error:  # pylint: disable=broad-except
    raise _save_failed(manager, error) from None


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


DAMAGED_SUFFIX = '.damaged'   # orbax ignores step folders named so
FALL_BACK_FLAG = '--fall_back_to_intact_checkpoint'


def restore_or_create(manager: ocp.CheckpointManager, networks: Networks,
                      config: ml_collections.ConfigDict, mesh: Mesh,
                      data_iterator: Any = None, *,
                      fall_back: bool = False) -> tuple[TrainState, bool]:
  """(latest saved state, True) or (fresh state, False).

  A step orbax cannot read (a truncated OCDBT file: TensorStore's
  OUT_OF_RANGE) is damaged; the earlier steps are tried, newest first.
  Unless ``fall_back``, a damaged step is then a one-line ``UserError``
  naming it, the intact step and both ways on (move the damaged step aside,
  or ``FALL_BACK_FLAG``); with ``fall_back`` the damaged steps are renamed
  ``<step>.damaged`` (kept for inspection, ignored by orbax) and the intact
  step is returned, so the steps after it are trained and saved again.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    return create_train_state(networks, config, mesh), False
  abstract = abstract_train_state(networks, config, mesh)
  checkpoints = str(manager.directory)
  damaged = []
  for step in steps:
    try:
      restored = restore(manager, abstract, data_iterator, step)
    except UserError:
      raise
    except Exception as error:  # pylint: disable=broad-except
      # orbax and TensorStore raise plain Exceptions for unreadable data.
      damaged.append((step, error))
      continue
    if damaged:
      _handle_damaged(manager, checkpoints, damaged, step, fall_back)
    return restored, True
  raise UserError(workdir_lib.damaged_step_message(checkpoints, *damaged[0])
                  + '; no earlier step is intact either: start a new '
                  '--workdir')


def _handle_damaged(manager: ocp.CheckpointManager, checkpoints: str,
                    damaged: list, intact: int, fall_back: bool) -> None:
  """Raises the one-line refusal, or moves the damaged steps aside."""
  newest = damaged[0][0]
  if not fall_back:
    others = (f' (and {", ".join(str(s) for s, _ in damaged[1:])})'
              if len(damaged) > 1 else '')
    raise UserError(
        f'{workdir_lib.damaged_step_message(checkpoints, *damaged[0])}'
        f'{others}; step {intact} is intact. To resume from step {intact}, '
        f'move the damaged step aside (mv {checkpoints}/{newest} '
        f'{checkpoints}/{newest}{DAMAGED_SUFFIX}) or pass {FALL_BACK_FLAG}; '
        'or start a new --workdir')
  for step, error in damaged:
    logging.warning('%s; moved aside, resuming from step %d',
                    workdir_lib.damaged_step_message(checkpoints, step,
                                                     error), intact)
    if jax.process_index() == 0:
      source = epath.Path(checkpoints) / str(step)
      source.rename(epath.Path(checkpoints) / f'{step}{DAMAGED_SUFFIX}')
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('checkpoints moved aside')
  manager.reload()
