"""Reading a trained generator out of a training run's checkpoints.

Below everything that needs one (``inference.runner``, ``evaluation``,
``export``'s command line). Inference and evaluation need the EMA generator and the run's config, never
the optimizer states: ``load_generator`` restores just those two orbax items
of one step folder (the layout ``train.checkpointing`` writes, at ``workdir.checkpoint_dir``:
``WORKDIR/checkpoints/<step>/{generator_ema, config, ...}``), read only.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Optional

from flax import nnx
import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import Mesh

from scsnet_jax.errors import UserError
from scsnet_jax import sharding
from scsnet_jax import workdir as workdir_lib
from scsnet_jax.models.generator import abstract_generator


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
  else, and UserError if the path's step and ``step`` disagree.
  """
  given = os.fspath(path)
  root = epath.Path(workdir_lib.resolve(given))
  if not root.exists():
    raise FileNotFoundError(f'{given}: no such folder; no checkpoints under '
                            f'it (expected {_EXPECTED})')
  checkpoints = workdir_lib.checkpoint_dir(str(root))
  if epath.Path(checkpoints).is_dir():
    return checkpoints, step
  if _is_step_dir(root):
    if step is not None and step != int(root.name):
      raise UserError(f'{given} is step {int(root.name)} but step {step} '
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
  except Exception as error:  # pylint: disable=broad-except
    # orbax and TensorStore raise plain Exceptions for unreadable data.
    raise UserError(_damaged(directory, step, error)) from None
  finally:
    checkpointer.close()
  return restored, step


def _damaged(directory: str, step: int, error: BaseException) -> str:
  """One line: the damaged step, its reason, and the step to use instead."""
  earlier = sorted((s for s in ocp.path.step.checkpoint_steps(directory)
                    if s < step), reverse=True)
  advice = (f'use an earlier step: --checkpoint {directory}/{earlier[0]}'
            if earlier else 'no earlier step to use instead')
  return f'{workdir_lib.damaged_step_message(directory, step, error)}; {advice}'



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
  restored, step = _read_items(workdir, step, config=ocp.args.JsonRestore())
  config = ml_collections.ConfigDict(restored['config'])
  graphdef, abstract_params = nnx.split(abstract_generator(config.model))
  target = sharding.abstract_tree(
      abstract_params.to_pure_dict(),
      sharding.replicated(mesh) if mesh is not None else
      jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
  item = 'generator_ema' if use_ema else 'generator'
  params = _read_items(workdir, step, **{
      item: ocp.args.StandardRestore(target)})[0][item]
  return GeneratorBundle(graphdef=graphdef, params=params, config=config,
                         step=step)
