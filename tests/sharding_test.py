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


def test_meshes_let_the_compiler_propagate_the_batch_sharding():
  # Explicit axes (jax.make_mesh's default in recent JAX) made a batch of
  # one crash in PVCAttn: dot_product_attention drops the batch sharding
  # and the concatenate after it refuses to mix the two.
  auto = jax.sharding.AxisType.Auto
  assert sharding.create_mesh().axis_types == (auto,)
  assert sharding.create_mesh(jax.devices()[:1]).axis_types == (auto,)


@pytest.mark.parametrize('batch_size', [1, 2, 12])
def test_batches_the_8_devices_do_not_divide_get_one_line(batch_size):
  mesh = sharding.create_mesh()
  want = f'global batch size {batch_size} is not divisible by the 8 devices'
  with pytest.raises(ValueError, match=want) as error:
    sharding.check_batch_size(batch_size, mesh)
  assert '\n' not in str(error.value)
  assert '--config.data.global_batch_size=8' in str(error.value)
  local = {'gray': np.zeros((batch_size, 4, 4, 1), np.float32)}
  with pytest.raises(ValueError, match=want):
    sharding.global_batch(local, mesh)


_ONE_DEVICE_SCRIPT = r'''
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from scsnet_jax import sharding
from scsnet_jax.models import generator as gen_lib
assert jax.device_count() == 1
cfg = gen_lib.GeneratorConfig(
    referential=True, init_width=8, encoder_widths=(8, 16),
    source_res_blocks=1, reference_res_blocks=1, cross_attention_qk=8,
    self_attention_qk=8, decoder_res_blocks=(1, 1, 1), texture_res_blocks=1,
    fusion_width=16, cpm_hidden=(16,), pyramid_levels=3)
graphdef, params = nnx.split(gen_lib.Generator(cfg, rngs=nnx.Rngs(0)))
mesh = sharding.create_mesh()
def loss(params, batch):
  out = gen_lib.apply_generator(graphdef, params, batch['gray'],
                                batch['reference'], out_size=(32, 32))
  return jnp.mean(jnp.abs(out - batch['target']))
step = jax.jit(jax.value_and_grad(loss),
               in_shardings=(sharding.replicated(mesh),
                             sharding.batch_sharded(mesh)))
rng = np.random.default_rng(0)
for b in (1, 2, 8):
  local = {'gray': rng.uniform(-1, 1, (b, 8, 8, 1)).astype(np.float32),
           'reference': rng.uniform(-1, 1, (b, 8, 8, 3)).astype(np.float32),
           'target': rng.uniform(-1, 1, (b, 32, 32, 3)).astype(np.float32)}
  sharding.check_batch_size(b, mesh)
  value, grads = step(params, sharding.global_batch(local, mesh))
  assert np.isfinite(float(value)), b
  print('ok', b)
'''


def test_batches_1_2_8_train_on_one_device():
  """Referential forward + backward, batch sharded over a 1-device mesh."""
  import os
  import subprocess
  import sys
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run([sys.executable, '-c', _ONE_DEVICE_SCRIPT], env=env,
                          cwd=root, capture_output=True, text=True,
                          timeout=1500)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ['ok', '1', 'ok', '2', 'ok', '8']
