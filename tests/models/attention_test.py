"""SelfAttention and VCAttn against naive numpy re-derivations."""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from scsnet_jax.models.attention import (PyramidValveCrossAttention,
                                         SelfAttention, ValveCrossAttention)
from tests.models.layers_test import naive_attention


def conv1x1(conv, x):
  """numpy 1x1 convolution with a Flax Conv's weights."""
  kernel = np.asarray(conv.kernel[...])[0, 0]
  return x @ kernel + np.asarray(conv.bias[...])


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def test_self_attention_matches_numpy():
  rng = np.random.default_rng(0)
  module = SelfAttention(16, 4, rngs=nnx.Rngs(1))
  module.gamma[...] = jnp.asarray(0.7)
  x = rng.normal(size=(2, 3, 5, 16)).astype(np.float32)
  flat = x.reshape(2, 15, 16)
  attended = naive_attention(conv1x1(module.query, flat),
                             conv1x1(module.key, flat),
                             conv1x1(module.value, flat))
  expected = x + 0.7 * attended.reshape(x.shape)
  np.testing.assert_allclose(np.asarray(module(jnp.asarray(x))), expected,
                             atol=1e-5)


def test_self_attention_starts_as_identity():
  module = SelfAttention(8, 2, rngs=nnx.Rngs(0))
  x = jnp.ones((1, 2, 2, 8))
  np.testing.assert_array_equal(np.asarray(module(x)), np.asarray(x))


def test_valve_cross_attention_matches_numpy():
  rng = np.random.default_rng(2)
  module = ValveCrossAttention(8, 4, rngs=nnx.Rngs(3))
  s = rng.normal(size=(2, 3, 4, 8)).astype(np.float32)
  r = rng.normal(size=(2, 5, 2, 8)).astype(np.float32)  # other size than s
  s_flat, r_flat = s.reshape(2, 12, 8), r.reshape(2, 10, 8)
  borrowed = naive_attention(conv1x1(module.query, s_flat),
                             conv1x1(module.key, r_flat),
                             conv1x1(module.value, r_flat))
  hidden = conv1x1(module.valve_hidden,
                   np.concatenate([s_flat, borrowed], axis=-1))
  hidden = np.where(hidden > 0, hidden, 0.2 * hidden)
  gate = sigmoid(conv1x1(module.valve_gate, hidden))
  expected = gate[..., :8] * s_flat + gate[..., 8:] * borrowed
  got = module(jnp.asarray(s), jnp.asarray(r))
  np.testing.assert_allclose(np.asarray(got).reshape(2, 12, 8), expected,
                             atol=1e-5)


def test_pyramid_handles_odd_sizes_and_returns_source_shape():
  module = PyramidValveCrossAttention(8, 4, rngs=nnx.Rngs(0))
  out = module(jnp.ones((1, 5, 3, 8)), jnp.ones((1, 7, 6, 8)))
  assert out.shape == (1, 5, 3, 8)
  assert bool(jnp.all(jnp.isfinite(out)))
