"""Orbax checkpoints of a training run: train state + data iterator + config.

Layout: ``WORKDIR/checkpoints/<step>/`` with one orbax item per part, so a
reader restores only what it needs (inference reads ``generator_ema`` and
``config``, never the optimizer states):

  generator, generator_ema, discriminator   pure-dict fp32 parameters
  optimizer_states                          {'generator', 'discriminator'}
  progress                                  {'step', 'rng'}
  config                                    the run's ConfigDict as JSON
  data_iterator                             one JSON file per process (optional)

Saves are asynchronous and atomic (orbax writes to a temporary directory and
renames it when complete), so a killed run never leaves a half checkpoint
that a restart would pick up.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, NamedTuple, Optional

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import Mesh

from scsnet_jax import sharding
from scsnet_jax.train.state import TrainState, abstract_train_state

CHECKPOINT_SUBDIR = 'checkpoints'

_whole_array_writes_registered = False


def _write_replicated_arrays_whole() -> None:
  """Let replica 0 write each replicated array whole (once per process).

  Orbax's default "replica parallel" write slices every array into one piece
  per replica with an eager op each (thousands of dispatches per save: ~35 s
  on 8 CPU devices). Done when a writing manager is made, not at import, so
  read-only users (predict, export) keep orbax's defaults and logs quiet.
  """
  global _whole_array_writes_registered
  if not _whole_array_writes_registered:
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False),
        override=True)
    _whole_array_writes_registered = True

_STATE_ITEMS = ('generator', 'generator_ema', 'discriminator',
                'optimizer_states', 'progress')


# ---------------------------------------------------------------- iterator ---
class DataIteratorHandler(ocp.CheckpointHandler):
  """Any iterator with ``get_state()``/``set_state()`` (grain's included).

  Each process writes ``process_<i>-of-<n>.json``: its own position in its
  own shard of the data. Needs no grain import, so it also works with the
  plain-Python fallback iterators.
  """

  def save(self, directory: epath.Path, args: 'DataIteratorSave'):
    state = args.item.get_state()
    text = state.decode() if isinstance(state, bytes) else json.dumps(state)
    (directory / _iterator_filename()).write_text(text)

  def restore(self, directory: epath.Path,
              args: 'DataIteratorRestore' = None):
    iterator = args.item
    path = directory / _iterator_filename()
    if not path.exists():
      raise ValueError(f'no data iterator state for this process at {path} '
                       '(was the run saved with a different process count?)')
    text = path.read_text()
    try:
      iterator.set_state(json.loads(text))
    except (TypeError, AttributeError, KeyError, ValueError):
      iterator.set_state(text.encode())   # grain DataLoader iterators: bytes
    if hasattr(iterator, 'start_prefetch'):
      iterator.start_prefetch()
    return iterator

  def structure(self, directory):
    return None

  def metadata(self, directory):
    return None

  def finalize(self, directory):
    pass

  def close(self):
    pass


def _iterator_filename() -> str:
  return f'process_{jax.process_index()}-of-{jax.process_count()}.json'


@ocp.args.register_with_handler(DataIteratorHandler, for_save=True)
@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
  item: Any


@ocp.args.register_with_handler(DataIteratorHandler, for_restore=True)
@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
  item: Any


# ----------------------------------------------------------------- manager ---
def resolve_workdir(workdir) -> str:
  """Absolute local path, or a URL (gs://...) unchanged."""
  workdir = os.fspath(workdir)
  return workdir if '://' in workdir else os.path.abspath(workdir)


def checkpoint_dir(workdir) -> str:
  return str(epath.Path(resolve_workdir(workdir)) / CHECKPOINT_SUBDIR)


def create_manager(workdir: str, *, max_to_keep: int = 3,
                   keep_period: Optional[int] = None,
                   enable_async: bool = True) -> ocp.CheckpointManager:
  """CheckpointManager at ``WORKDIR/checkpoints``: last ``max_to_keep`` saves,
  plus every step that is a multiple of ``keep_period`` (if set)."""
  _write_replicated_arrays_whole()
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep,
      keep_period=keep_period or None,
      enable_async_checkpointing=enable_async,
      create=True,
      cleanup_tmp_directories=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


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
  items = {name: ocp.args.StandardSave(tree)
           for name, tree in _state_items(state).items()}
  items['config'] = ocp.args.JsonSave(config.to_dict())
  if hasattr(data_iterator, 'get_state'):
    items['data_iterator'] = DataIteratorSave(data_iterator)
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
  items = {name: ocp.args.StandardRestore(tree)
           for name, tree in _state_items(abstract_state).items()}
  saved_items = _saved_item_names(manager, step)
  if (hasattr(data_iterator, 'set_state') and
      'data_iterator' in saved_items):
    items['data_iterator'] = DataIteratorRestore(data_iterator)
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  return abstract_state.replace(
      step=restored['progress']['step'],
      rng=restored['progress']['rng'],
      generator_params=restored['generator'],
      generator_ema=restored['generator_ema'],
      discriminator_params=restored['discriminator'],
      generator_opt_state=restored['optimizer_states']['generator'],
      discriminator_opt_state=restored['optimizer_states']['discriminator'])


def _saved_item_names(manager: ocp.CheckpointManager, step: int) -> set[str]:
  step_dir = epath.Path(manager.directory) / str(step)
  return {p.name for p in step_dir.iterdir()} if step_dir.exists() else set()


def save_train_state(workdir: str, state: TrainState,
                     config: ml_collections.ConfigDict,
                     data_iterator: Any = None) -> str:
  """Synchronous one-shot save (tests, tools); returns the step directory.

  Makes a self-describing workdir that ``load_generator`` can read::

    state = train_state.create_train_state(config, sharding.create_mesh())
    checkpointing.save_train_state(workdir, state, config)
  """
  manager = create_manager(workdir, enable_async=False)
  save(manager, state, config, data_iterator, force=True)
  manager.wait_until_finished()
  manager.close()
  return str(epath.Path(checkpoint_dir(workdir)) /
             str(int(jax.device_get(state.step))))


# ----------------------------------------------------------------- readers ---
class GeneratorBundle(NamedTuple):
  """What inference and evaluation need from a run."""
  graphdef: Any          # nnx.GraphDef of the Generator (static)
  params: Any            # pure dict of fp32 arrays
  config: ml_collections.ConfigDict   # the run's full config
  step: int


_EXPECTED = ('a training workdir, its checkpoints/ folder, one '
             'checkpoints/STEP folder, or a folder written by '
             'scsnet_jax.export')


def _is_step_dir(path: epath.Path) -> bool:
  """A finished step folder: numeric name, orbax items inside."""
  return (path.name.isdigit() and path.is_dir() and
          ocp.path.step.is_path_finalized(path))


def resolve_checkpoint(path, step: Optional[int] = None
                       ) -> tuple[str, Optional[int]]:
  """``WORKDIR``, ``WORKDIR/checkpoints`` or ``WORKDIR/checkpoints/STEP`` ->
  (the checkpoints folder, the step: the one in the path, else ``step``).

  Raises FileNotFoundError (one line naming what was expected) for anything
  else, and ValueError if the path's step and ``step`` disagree.
  """
  given = os.fspath(path)
  root = epath.Path(resolve_workdir(given))
  if not root.exists():
    raise FileNotFoundError(f'{given}: no such folder; no checkpoints under '
                            f'it (expected {_EXPECTED})')
  if (root / CHECKPOINT_SUBDIR).is_dir():
    return str(root / CHECKPOINT_SUBDIR), step
  if _is_step_dir(root):
    if step is not None and step != int(root.name):
      raise ValueError(f'{given} is step {int(root.name)} but step {step} '
                       'was asked for; give one of them')
    return str(root.parent), int(root.name)
  if root.is_dir() and ocp.path.step.checkpoint_steps(root):
    return str(root), step
  raise FileNotFoundError(f'{given}: no checkpoints under it (expected '
                          f'{_EXPECTED})')


def _resolve_step(directory: str, given: str, step: Optional[int]) -> int:
  steps = ocp.path.step.checkpoint_steps(directory)
  if not steps:
    raise FileNotFoundError(f'{given}: no finished checkpoint under it '
                            f'(expected {_EXPECTED})')
  if step is None:
    return max(steps)
  if step not in steps:
    raise FileNotFoundError(f'no checkpoint for step {step} under {given}; '
                            f'available: {sorted(steps)}')
  return step


def _read_items(workdir, step: Optional[int], **items) -> tuple[dict, int]:
  """Restores the named items of one finished step, read only.

  Reads the step folder with a plain ``Checkpointer`` rather than a
  ``CheckpointManager``: nothing is created, cleaned up or written, and no
  "read only" warning is logged.
  """
  directory, step = resolve_checkpoint(workdir, step)
  step = _resolve_step(directory, os.fspath(workdir), step)
  checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
  try:
    restored = checkpointer.restore(epath.Path(directory) / str(step),
                                    args=ocp.args.Composite(**items))
  finally:
    checkpointer.close()
  return restored, step


def load_config(workdir: str,
                step: Optional[int] = None) -> ml_collections.ConfigDict:
  """The ConfigDict a checkpoint was saved with (latest step by default).

  ``workdir`` may also be ``WORKDIR/checkpoints`` or one step folder.
  """
  restored, _ = _read_items(workdir, step, config=ocp.args.JsonRestore())
  return ml_collections.ConfigDict(restored['config'])


def load_generator(workdir: str, step: Optional[int] = None,
                   use_ema: bool = True, mesh: Optional[Mesh] = None):
  """Generator weights of a run -> ``GeneratorBundle(graphdef, params, config,
  step)``.

  ``params`` is a pure dict of fp32 arrays (EMA weights unless
  ``use_ema=False``), replicated over ``mesh`` (default: on the first local
  device); use it with ``models.generator.apply_generator(graphdef, params,
  ...)`` or ``nnx.merge(graphdef, params)``. Reads only the generator item.
  ``workdir`` may also be ``WORKDIR/checkpoints`` or one step folder
  (``WORKDIR/checkpoints/STEP``).
  """
  from flax import nnx
  from scsnet_jax.models.generator import build_generator
  restored, step = _read_items(workdir, step, config=ocp.args.JsonRestore())
  config = ml_collections.ConfigDict(restored['config'])
  abstract_model = nnx.eval_shape(
      lambda: build_generator(config.model, nnx.Rngs(0)))
  graphdef, abstract_params = nnx.split(abstract_model)
  target_sharding = (sharding.replicated(mesh) if mesh is not None else
                     jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                     sharding=target_sharding),
      abstract_params.to_pure_dict())
  item = 'generator_ema' if use_ema else 'generator'
  params = _read_items(workdir, step, **{
      item: ocp.args.StandardRestore(target)})[0][item]
  return GeneratorBundle(graphdef=graphdef, params=params, config=config,
                         step=step)


def restore_or_create(manager: ocp.CheckpointManager,
                      config: ml_collections.ConfigDict, mesh: Mesh,
                      data_iterator: Any = None) -> tuple[TrainState, bool]:
  """(latest saved state, True) or (fresh state, False)."""
  from scsnet_jax.train.state import create_train_state
  if manager.latest_step() is not None:
    restored = restore(manager, abstract_train_state(config, mesh),
                       data_iterator)
    return restored, True
  return create_train_state(config, mesh), False
