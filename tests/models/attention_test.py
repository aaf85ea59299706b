"""SelfAttention, VCAttn and PVCAttn against naive numpy re-derivations."""

import jax
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


def lrelu(x):
  return np.where(x > 0, x, 0.2 * x)


def numpy_valve(module, s, r):
  """VCAttn of the spec in numpy: s (B,h,w,C), r (B,hr,wr,C) -> (B,h,w,C)."""
  batch, channels = s.shape[0], s.shape[-1]
  s_flat = s.reshape(batch, -1, channels)
  r_flat = r.reshape(batch, -1, channels)
  borrowed = naive_attention(conv1x1(module.query, s_flat),
                             conv1x1(module.key, r_flat),
                             conv1x1(module.value, r_flat))
  hidden = lrelu(conv1x1(module.valve_hidden,
                         np.concatenate([s_flat, borrowed], axis=-1)))
  gate = sigmoid(conv1x1(module.valve_gate, hidden))
  out = gate[..., :channels] * s_flat + gate[..., channels:] * borrowed
  return out.reshape(s.shape)


def test_valve_cross_attention_matches_numpy():
  rng = np.random.default_rng(2)
  module = ValveCrossAttention(8, 4, rngs=nnx.Rngs(3))
  s = rng.normal(size=(2, 3, 4, 8)).astype(np.float32)
  r = rng.normal(size=(2, 5, 2, 8)).astype(np.float32)  # other size than s
  got = module(jnp.asarray(s), jnp.asarray(r))
  np.testing.assert_allclose(np.asarray(got), numpy_valve(module, s, r),
                             atol=1e-5)


def numpy_avg_pool_ceil(x, factor):
  """Windows of factor x factor pixels from the top left; an edge window
  averages the pixels it covers."""
  batch, h, w, c = x.shape
  out = np.zeros((batch, -(-h // factor), -(-w // factor), c), x.dtype)
  for i in range(out.shape[1]):
    for j in range(out.shape[2]):
      window = x[:, i * factor:(i + 1) * factor, j * factor:(j + 1) * factor]
      out[:, i, j] = window.mean(axis=(1, 2))
  return out


def numpy_bilinear_resize(x, height, width):
  """Bilinear, half-pixel centres, no antialias, clamped at the edges
  (PyTorch's align_corners=False): output pixel i samples the input at
  (i + 0.5) * in / out - 0.5."""
  def along(x, axis, size):
    n = x.shape[axis]
    position = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, n - 1)
    shape = [1] * x.ndim
    shape[axis] = size
    weight = (position - low).reshape(shape)
    return (np.take(x, low, axis=axis) * (1 - weight) +
            np.take(x, high, axis=axis) * weight)
  return along(along(x, 1, height), 2, width)


def numpy_conv3x3(conv, x):
  """3x3 SAME (zero-padded) convolution with a Flax Conv's weights."""
  kernel = np.asarray(conv.kernel[...])
  h, w = x.shape[1], x.shape[2]
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.asarray(conv.bias[...]) + np.zeros(x.shape[:3] + kernel.shape[-1:])
  for dy in range(3):
    for dx in range(3):
      out += padded[:, dy:dy + h, dx:dx + w] @ kernel[dy, dx]
  return out


def numpy_pyramid(module, f_s, f_r):
  """PVCAttn of the spec in numpy, with ``module``'s weights."""
  height, width = f_s.shape[1], f_s.shape[2]
  levels = []
  for index, level in enumerate(module.levels):
    s = lrelu(conv1x1(level.source_proj, numpy_avg_pool_ceil(f_s, 2**index)))
    r = lrelu(conv1x1(level.reference_proj,
                      numpy_avg_pool_ceil(f_r, 2**index)))
    levels.append(numpy_bilinear_resize(numpy_valve(level.valve, s, r),
                                        height, width))
  hidden = lrelu(conv1x1(module.fuse_hidden, np.concatenate(levels, -1)))
  return numpy_conv3x3(module.fuse_out, hidden)


def test_pyramid_matches_numpy_on_odd_sizes():
  """Source 5x7 pools to 3x4 and 2x2, reference 6x3 to 3x2 and 2x1: ceil
  pooling with partial edge windows, then resizes by non-integer factors."""
  rng = np.random.default_rng(4)
  module = PyramidValveCrossAttention(8, 4, rngs=nnx.Rngs(5))
  f_s = rng.normal(size=(2, 5, 7, 8)).astype(np.float32)
  f_r = rng.normal(size=(2, 6, 3, 8)).astype(np.float32)
  got = np.asarray(nnx.jit(lambda m, s, r: m(s, r))(module, f_s, f_r))
  assert got.shape == f_s.shape
  np.testing.assert_allclose(got, numpy_pyramid(module, f_s, f_r), atol=1e-5)


def test_logit_scale_multiplies_the_logits():
  """VCAttn with logit_scale c equals the spec's attention on c-scaled
  queries, re-derived with a numpy softmax; c = 1 is the spec path."""
  from scsnet_jax.models.attention import ValveCrossAttention
  rng = np.random.default_rng(0)
  s = jnp.asarray(rng.normal(0, 1, (1, 3, 3, 8)), jnp.float32)
  r = jnp.asarray(rng.normal(0, 1, (1, 2, 4, 8)), jnp.float32)
  scaled = ValveCrossAttention(8, 4, logit_scale=7.0, rngs=nnx.Rngs(0))
  q = np.asarray(scaled.query(s)).reshape(1, 9, 4) * 7.0
  k = np.asarray(scaled.key(r)).reshape(1, 8, 4)
  v = np.asarray(scaled.value(r)).reshape(1, 8, 8)
  logits = q @ k.transpose(0, 2, 1) / 2.0
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(scaled.weights(s, r)), p, atol=1e-5)
  borrowed = (p @ v).reshape(1, 3, 3, 8)
  gate = jax.nn.sigmoid(scaled.valve_gate(jax.nn.leaky_relu(
      scaled.valve_hidden(jnp.concatenate([s, borrowed], -1)), 0.2)))
  expected = gate[..., :8] * s + gate[..., 8:] * borrowed
  np.testing.assert_allclose(np.asarray(scaled(s, r)), np.asarray(expected),
                             atol=1e-5)
