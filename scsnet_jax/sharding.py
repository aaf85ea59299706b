"""Meshes and shardings: the one module that knows how arrays are laid out.

Training is data parallel over a 1-D mesh with axis ``'data'``: parameters,
optimizer states and the RNG key are replicated; every batch array is split
along its leading (batch) axis. Each process feeds only its own slice of the
global batch (``global_batch_size // process_count`` examples).

The mesh axis is ``AxisType.Auto``: the compiler propagates the batch
sharding through the model. (``jax.make_mesh`` defaults to ``Explicit``
axes in recent JAX, where every op must agree on a sharding *type*; some
library ops, e.g. ``jax.nn.dot_product_attention`` with a batch of one,
drop the batch sharding and a later ``concatenate`` then refuses to mix
the two.) Any global batch size that the device count divides trains;
others are refused with one line by ``check_batch_size`` and
``global_batch``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from scsnet_jax.errors import UserError

DATA_AXIS = 'data'


def create_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A ('data',) mesh over ``devices`` (default: every device of every host)."""
  if devices is None:
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                         axis_types=(AxisType.Auto,))
  return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of parameters, optimizer states, scalars: a full copy per device."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Sharding of batch arrays: leading axis split over 'data'."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """Per-process batch size; a clear error when the global one does not split."""
  devices = mesh.devices.size
  if global_batch_size < 1 or global_batch_size % devices:
    raise UserError(_indivisible(global_batch_size, devices))
  return global_batch_size // jax.process_count()


def _indivisible(global_batch_size: int, devices: int) -> str:
  below = max(devices, global_batch_size // devices * devices)
  above = max(devices, -(-global_batch_size // devices) * devices)
  choices = f'{below}' if below == above else f'{below} or {above}'
  return (f'global batch size {global_batch_size} is not divisible by the '
          f'{devices} devices of the mesh; use a multiple of {devices} '
          f'(e.g. --config.data.global_batch_size={choices})')


def global_batch(local_batch: Mapping[str, np.ndarray],
                 mesh: Mesh) -> dict[str, jax.Array]:
  """Per-process numpy batch {(b, ...)} -> global arrays {(b * processes, ...)}."""
  sharding = batch_sharded(mesh)
  devices, processes = mesh.devices.size, jax.process_count()
  for value in local_batch.values():
    size = np.shape(value)[0] * processes
    if size % devices:
      raise UserError(_indivisible(size, devices))
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def replicate_tree(tree: Any, mesh: Mesh) -> Any:
  """Host values (identical on every process) -> replicated global arrays."""
  sharding = replicated(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_callback(
          np.shape(x), sharding, lambda idx, x=np.asarray(x): x[idx]), tree)


def to_host(tree: Any) -> Any:
  """Replicated (or fully addressable) arrays -> numpy, on every process."""
  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.sharding.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
  return jax.tree.map(fetch, tree)


def abstract_tree(tree: Any, target: jax.sharding.Sharding) -> Any:
  """Arrays or shape structs -> ``ShapeDtypeStruct``s placed on ``target``:
  the restore target orbax reads each array straight into."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=target), tree)
