"""Layers: attention vs naive numpy softmax, pooling and upsampling."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scsnet_jax.models import layers
from scsnet_jax.models.attention import avg_pool_ceil


def naive_attention(q, k, v):
  logits = np.einsum('bqc,bkc->bqk', q, k) / np.sqrt(q.shape[-1])
  logits -= logits.max(-1, keepdims=True)
  w = np.exp(logits)
  w /= w.sum(-1, keepdims=True)
  return np.einsum('bqk,bkc->bqc', w, v)


@pytest.mark.parametrize('cq,cv,limit', [(4, 16, None), (8, 8, None),
                                          (4, 12, 50)])
def test_attend_matches_naive_softmax(cq, cv, limit):
  rng = np.random.default_rng(0)
  q = rng.normal(size=(2, 13, cq)).astype(np.float32)
  k = rng.normal(size=(2, 7, cq)).astype(np.float32)
  v = rng.normal(size=(2, 7, cv)).astype(np.float32)
  kwargs = {} if limit is None else {'matrix_limit': limit}  # chunked path
  got = layers.attend(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), **kwargs)
  np.testing.assert_allclose(np.asarray(got), naive_attention(q, k, v),
                             atol=1e-5)


def test_attend_rejects_incompatible_widths():
  with pytest.raises(ValueError, match='multiple'):
    layers.attend(jnp.zeros((1, 2, 4)), jnp.zeros((1, 2, 4)),
                  jnp.zeros((1, 2, 6)))


@pytest.mark.parametrize('h,w,f', [(8, 8, 2), (5, 7, 2), (9, 6, 4), (3, 3, 1)])
def test_avg_pool_ceil_mode_averages_covered_pixels(h, w, f):
  x = np.random.default_rng(1).normal(size=(1, h, w, 2)).astype(np.float32)
  oh, ow = -(-h // f), -(-w // f)
  expected = np.zeros((1, oh, ow, 2), np.float32)
  for i in range(oh):
    for j in range(ow):
      expected[0, i, j] = x[0, i * f:(i + 1) * f, j * f:(j + 1) * f].mean((0, 1))
  np.testing.assert_allclose(np.asarray(avg_pool_ceil(jnp.asarray(x), f)),
                             expected, atol=1e-6)


def test_up_is_nearest_then_conv_and_down_halves():
  rngs = nnx.Rngs(0)
  x = np.random.default_rng(2).normal(size=(1, 3, 5, 4)).astype(np.float32)
  up = layers.Up(4, 6, rngs=rngs)
  nearest = np.kron(x[0], np.ones((2, 2, 1)))[None]
  expected = np.asarray(layers.lrelu(up.conv(jnp.asarray(nearest))))
  np.testing.assert_allclose(np.asarray(up(jnp.asarray(x))), expected,
                             atol=1e-6)
  down = layers.Down(4, 6, rngs=rngs)
  assert down(jnp.zeros((2, 8, 12, 4))).shape == (2, 4, 6, 6)


def test_resblock_is_residual_with_leaky_relu():
  block = layers.ResBlock(3, rngs=nnx.Rngs(0))
  x = jnp.asarray(np.random.default_rng(3).normal(size=(1, 4, 4, 3)),
                  jnp.float32)
  inner = np.asarray(block.conv1(x))
  leaky = np.where(inner > 0, inner, 0.2 * inner)
  expected = np.asarray(x) + np.asarray(block.conv2(jnp.asarray(leaky)))
  np.testing.assert_allclose(np.asarray(block(x)), expected, atol=1e-5)
