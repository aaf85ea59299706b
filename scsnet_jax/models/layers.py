"""Building blocks of the spec: conv helper, ResBlock, Down, Up, attention.

All modules are NHWC Flax NNX modules. ``dtype`` is the compute dtype
(float32 or bfloat16); parameters are always float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

LEAKY_SLOPE = 0.2
lrelu = functools.partial(jax.nn.leaky_relu, negative_slope=LEAKY_SLOPE)

# Above this many attention-matrix entries per example the queries are
# processed in chunks, so a 1024x1024 input does not build a 65k x 65k matrix
# when no fused kernel is used (CPU, or the XLA implementation).
ATTENTION_MATRIX_LIMIT = 1 << 26


def conv(k: int, cin: int, cout: int, *, stride: int = 1, dtype=jnp.float32,
         rngs: nnx.Rngs) -> nnx.Conv:
  """The spec's ``conv(k, cin, cout, stride)``: k x k, SAME padding, bias."""
  return nnx.Conv(cin, cout, kernel_size=(k, k), strides=(stride, stride),
                  padding='SAME', use_bias=True, dtype=dtype,
                  param_dtype=jnp.float32, rngs=rngs)


class ResBlock(nnx.Module):
  """``x + conv(lrelu(conv(x)))`` at constant width."""

  def __init__(self, channels: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv1 = conv(3, channels, channels, dtype=dtype, rngs=rngs)
    self.conv2 = conv(3, channels, channels, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return x + self.conv2(lrelu(self.conv1(x)))


class Down(nnx.Module):
  """Stride-2 conv + leaky ReLU: halves H and W."""

  def __init__(self, cin: int, cout: int, *, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.conv = conv(3, cin, cout, stride=2, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return lrelu(self.conv(x))


def upsample_nearest_2x(x):
  """(B, H, W, C) -> (B, 2H, 2W, C) by repeating pixels."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Up(nnx.Module):
  """Nearest-neighbour x2 upsampling, then conv + leaky ReLU."""

  def __init__(self, cin: int, cout: int, *, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.conv = conv(3, cin, cout, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return lrelu(self.conv(upsample_nearest_2x(x)))


def res_stack(n: int, channels: int, *, dtype, rngs) -> nnx.List:
  return nnx.List([ResBlock(channels, dtype=dtype, rngs=rngs)
                   for _ in range(n)])


def run_stack(blocks, x):
  for block in blocks:
    x = block(x)
  return x


def _attend_once(q, k, v, implementation):
  """One-head attention via ``jax.nn.dot_product_attention``.

  The fused function wants equal key and value head sizes, so v (Cv) is
  split into Cv/Cq heads that all share q and k; concatenating the heads
  gives exactly the one-head result.
  """
  batch, nq, cq = q.shape
  nk, cv = v.shape[1], v.shape[2]
  if cv % cq:
    raise ValueError(f'value width {cv} is not a multiple of key width {cq}')
  heads = cv // cq
  query = jnp.broadcast_to(q[:, :, None, :], (batch, nq, heads, cq))
  key = jnp.broadcast_to(k[:, :, None, :], (batch, nk, heads, cq))
  value = v.reshape(batch, nk, heads, cq)
  out = jax.nn.dot_product_attention(query, key, value,
                                     implementation=implementation)
  return out.reshape(batch, nq, cv)


def attend(q, k, v, *, implementation=None, matrix_limit=ATTENTION_MATRIX_LIMIT):
  """``softmax(q k^T / sqrt(Cq)) v``: q (B,Nq,Cq), k (B,Nk,Cq), v (B,Nk,Cv).

  Without a fused kernel the Nq x Nk matrix is materialised, so large
  query sets are split into chunks processed one after another.
  """
  nq, nk = q.shape[1], k.shape[1]
  heads = v.shape[2] // q.shape[2]
  concrete = isinstance(nq, int) and isinstance(nk, int)
  if (implementation == 'cudnn' or not concrete
      or nq * nk * heads <= matrix_limit):
    return _attend_once(q, k, v, implementation)
  # Query rows one chunk at a time (each chunk vmapped); (Nq, B, Cv) out.
  out = jax.lax.map(
      lambda row: _attend_once(row[:, None], k, v, implementation)[:, 0],
      q.swapaxes(0, 1), batch_size=max(1, matrix_limit // (nk * heads)))
  return out.swapaxes(0, 1)


def flatten_hw(x):
  """(B, H, W, C) -> (B, H*W, C)."""
  return x.reshape(x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
