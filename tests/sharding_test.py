"""sharding.py on the 8 fake CPU devices from conftest."""

import jax
import numpy as np
import pytest

from scsnet_jax import sharding


def test_mesh_spans_all_devices_or_a_subset():
  assert jax.device_count() == 8
  mesh = sharding.create_mesh()
  assert mesh.axis_names == ('data',) and mesh.shape['data'] == 8
  small = sharding.create_mesh(jax.devices()[:2])
  assert small.shape['data'] == 2


def test_global_batch_puts_row_i_on_device_i():
  mesh = sharding.create_mesh()
  local = {'gray': np.arange(8 * 4 * 4, dtype=np.float32).reshape(8, 4, 4, 1)}
  batch = sharding.global_batch(local, mesh)
  array = batch['gray']
  assert array.shape == (8, 4, 4, 1)
  assert array.sharding.spec == jax.sharding.PartitionSpec('data')
  for shard in array.addressable_shards:
    row = mesh.devices.tolist().index(shard.device)
    np.testing.assert_array_equal(np.asarray(shard.data), local['gray'][row:row + 1])
  np.testing.assert_array_equal(sharding.to_host(batch)['gray'], local['gray'])


def test_replicate_tree_copies_values_to_every_device():
  mesh = sharding.create_mesh()
  tree = {'w': np.arange(6, dtype=np.float32).reshape(2, 3), 'b': np.float32(2.5)}
  out = sharding.replicate_tree(tree, mesh)
  assert out['w'].sharding.is_fully_replicated
  assert len(out['w'].addressable_shards) == 8
  for shard in out['w'].addressable_shards:
    np.testing.assert_array_equal(np.asarray(shard.data), tree['w'])
  assert float(sharding.to_host(out)['b']) == 2.5


def test_batch_size_must_split_over_devices():
  mesh = sharding.create_mesh()
  assert sharding.check_batch_size(16, mesh) == 16   # one process
  with pytest.raises(ValueError, match='not divisible by the 8 devices'):
    sharding.check_batch_size(12, mesh)
