"""Discriminator: parameter count, patch-map shapes, instance norm vs numpy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scsnet_jax.models.discriminator import Discriminator


def _abstract(dtype=jnp.float32):
  return nnx.eval_shape(lambda: Discriminator(dtype=dtype, rngs=nnx.Rngs(0)))


def _random_state(seed=0):
  """Random float32 params from numpy (flax's initialisers are slow on CPU)."""
  rng = np.random.default_rng(seed)
  _, abstract_state = nnx.split(_abstract())
  return jax.tree.map(
      lambda a: jnp.asarray(rng.normal(0.0, 0.05, a.shape), a.dtype),
      abstract_state)


@pytest.fixture(scope='module')
def discriminator():
  graphdef, _ = nnx.split(_abstract())
  return nnx.merge(graphdef, _random_state())


@pytest.fixture(scope='module')
def jitted_discriminator(discriminator):
  """The functional form the trainer uses: split, then merge under jit."""
  return _jit_apply(discriminator)


def _jit_apply(model):
  graphdef, state = nnx.split(model)
  apply = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
  return lambda x: apply(state, x)


def test_parameter_count_matches_the_spec():
  def conv(k, cin, cout):
    return k * k * cin * cout + cout
  expected = (conv(4, 3, 64) + conv(4, 64, 128) + conv(4, 128, 256) +
              conv(4, 256, 512) + conv(4, 512, 1) +
              2 * (128 + 256 + 512))  # Instance-norm scale and bias.
  model = _abstract()
  params = nnx.state(model, nnx.Param)
  assert sum(x.size for x in jax.tree.leaves(params)) == expected == 2766529
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype('float32')}
  # Nothing but parameters: instance norm keeps no running statistics.
  everything = nnx.state(model)
  assert len(jax.tree.leaves(everything)) == len(jax.tree.leaves(params))


@pytest.mark.parametrize('h,w', [(16, 16), (20, 28), (33, 17), (8, 40)])
def test_patch_map_shape_for_any_size(h, w):
  graphdef, state = nnx.split(_abstract())
  logits = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state,
                          jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32))
  # Three stride-2 SAME convs: ceil(ceil(ceil(h/2)/2)/2) = ceil(h/8).
  assert logits.shape == (1, math.ceil(h / 8), math.ceil(w / 8), 1)
  assert logits.dtype == jnp.float32


def test_instance_norm_matches_numpy(discriminator):
  norm = discriminator.layers[2].norm
  rng = np.random.default_rng(1)
  scale = rng.uniform(0.5, 2.0, 256).astype(np.float32)
  bias = rng.normal(size=256).astype(np.float32)
  norm.scale[...] = jnp.asarray(scale)
  norm.bias[...] = jnp.asarray(bias)
  x = rng.normal(3.0, 2.0, size=(2, 5, 6, 256)).astype(np.float32)
  got = np.asarray(norm(jnp.asarray(x)))
  # Per image and channel over H, W; biased variance; eps 1e-5 (PyTorch's).
  mean = x.mean(axis=(1, 2), keepdims=True)
  var = ((x - mean)**2).mean(axis=(1, 2), keepdims=True)
  expected = (x - mean) / np.sqrt(var + 1e-5) * scale + bias
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
  # bf16 input: statistics still in float32, result back in bf16.
  got_bf16 = norm(jnp.asarray(x, jnp.bfloat16))
  assert got_bf16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(got_bf16, np.float32), expected,
                             rtol=0.05, atol=0.05)


def test_each_image_is_judged_independently_of_the_batch(
    jitted_discriminator):
  x = jax.random.normal(jax.random.key(2), (3, 16, 24, 3))
  apply = jitted_discriminator
  together = apply(x)
  alone = apply(x[1:2])
  np.testing.assert_allclose(np.asarray(together[1:2]), np.asarray(alone),
                             rtol=1e-5, atol=1e-5)
  assert not np.allclose(np.asarray(together[0]), np.asarray(together[1]))


def test_first_layer_is_a_stride2_same_conv_with_leaky_relu(discriminator):
  """Layer 1 vs a direct numpy sum (XLA SAME for k=4, s=2: pad 1 before)."""
  layer = discriminator.layers[0]
  rng = np.random.default_rng(3)
  x = rng.normal(size=(1, 6, 6, 3)).astype(np.float32)
  kernel = np.asarray(layer.conv.kernel[...])
  bias = np.asarray(layer.conv.bias[...])
  # out = ceil(6/2) = 3; total padding = (3-1)*2 + 4 - 6 = 2 -> 1 each side.
  padded = np.pad(x[0], ((1, 1), (1, 1), (0, 0)))
  expected = np.zeros((3, 3, 64), np.float32)
  for i in range(3):
    for j in range(3):
      patch = padded[2 * i:2 * i + 4, 2 * j:2 * j + 4]
      expected[i, j] = np.einsum('hwc,hwco->o', patch, kernel) + bias
  expected = np.where(expected > 0, expected, 0.2 * expected)
  np.testing.assert_allclose(np.asarray(layer(jnp.asarray(x)))[0], expected,
                             rtol=1e-4, atol=1e-4)


def test_bfloat16_compute_keeps_float32_params_and_logits(
    discriminator, jitted_discriminator):
  abstract = _abstract(jnp.bfloat16)
  params = nnx.state(abstract, nnx.Param)
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype('float32')}
  low_graphdef, _ = nnx.split(abstract)
  model = nnx.merge(low_graphdef, nnx.state(discriminator))
  x = jax.random.normal(jax.random.key(4), (1, 16, 24, 3))
  low, high = _jit_apply(model)(x), jitted_discriminator(x)
  assert low.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(low), np.asarray(high), atol=0.1,
                             rtol=0.1)
