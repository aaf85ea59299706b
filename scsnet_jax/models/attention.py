"""The generator's attention modules: SAGAN self-attention and PVCAttn.

PVCAttn (pyramid valve cross attention) lets the source features borrow the
reference's colour features at three scales; each valve is a learned sigmoid
gate deciding, per channel and pixel, how much of the source and of the
borrowed reference to keep.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scsnet_jax.models.layers import attend, conv, flatten_hw, lrelu


class ProjectedAttention(nnx.Module):
  """1x1-conv query (from one map), key and value (from another), attended."""

  def __init__(self, channels: int, qk_channels: int, *, dtype=jnp.float32,
               attention_impl=None, rngs: nnx.Rngs):
    self.query = conv(1, channels, qk_channels, dtype=dtype, rngs=rngs)
    self.key = conv(1, channels, qk_channels, dtype=dtype, rngs=rngs)
    self.value = conv(1, channels, channels, dtype=dtype, rngs=rngs)
    self.attention_impl = attention_impl

  def attend_maps(self, queries_from, keys_from):
    """(B,h,w,C) attends to (B,hk,wk,C) -> (B,h,w,C)."""
    out = attend(flatten_hw(self.query(queries_from)),
                 flatten_hw(self.key(keys_from)),
                 flatten_hw(self.value(keys_from)),
                 implementation=self.attention_impl)
    return out.reshape(queries_from.shape[:3] + (out.shape[-1],))


class SelfAttention(ProjectedAttention):
  """SAGAN block: ``x + gamma * attend(q, k, v)``; gamma starts at 0."""

  def __init__(self, channels: int, qk_channels: int, *, dtype=jnp.float32,
               attention_impl=None, rngs: nnx.Rngs):
    super().__init__(channels, qk_channels, dtype=dtype,
                     attention_impl=attention_impl, rngs=rngs)
    self.gamma = nnx.Param(jnp.zeros((), jnp.float32))

  def __call__(self, x):
    out = self.attend_maps(x, x)
    return x + self.gamma[...].astype(out.dtype) * out


class ValveCrossAttention(ProjectedAttention):
  """VCAttn: source ``s`` (B,h,w,C) attends to reference ``r`` (B,hr,wr,C).

  ``logit_scale`` multiplies the attention logits (1.0 = the spec's
  softmax(q k^T / sqrt(Cq))): a constant, not a parameter.
  """

  def __init__(self, channels: int, qk_channels: int, *, dtype=jnp.float32,
               attention_impl=None, logit_scale: float = 1.0,
               rngs: nnx.Rngs):
    super().__init__(channels, qk_channels, dtype=dtype,
                     attention_impl=attention_impl, rngs=rngs)
    self.logit_scale = float(logit_scale)
    self.valve_hidden = conv(1, 2 * channels, channels, dtype=dtype, rngs=rngs)
    self.valve_gate = conv(1, channels, 2 * channels, dtype=dtype, rngs=rngs)

  def weights(self, s, r_keys):
    """The attention weights (B, h*w, hr*wr), float32, rows summing to 1:
    what ``__call__`` averages the values with (an instrument)."""
    q = flatten_hw(self.query(s)).astype(jnp.float32) * self.logit_scale
    k = flatten_hw(self.key(r_keys)).astype(jnp.float32)
    logits = jnp.einsum('bqc,bkc->bqk', q, k) / jnp.sqrt(
        jnp.float32(q.shape[-1]))
    return jax.nn.softmax(logits, axis=-1)

  def __call__(self, s, r, r_keys=None):
    """``r_keys`` (B,hr,wr,C): what the keys are computed from, if not
    ``r`` (the values always come from ``r``)."""
    if r_keys is None and self.logit_scale == 1.0:
      borrowed = self.attend_maps(s, r)
    else:
      query = flatten_hw(self.query(s))
      if self.logit_scale != 1.0:   # scaling q scales every logit
        query = query * jnp.asarray(self.logit_scale, query.dtype)
      out = attend(query, flatten_hw(self.key(r if r_keys is None else
                                              r_keys)),
                   flatten_hw(self.value(r)),
                   implementation=self.attention_impl)
      borrowed = out.reshape(s.shape[:3] + (out.shape[-1],))
    gate = jax.nn.sigmoid(self.valve_gate(lrelu(
        self.valve_hidden(jnp.concatenate([s, borrowed], axis=-1)))))
    keep_source, keep_borrowed = jnp.split(gate, 2, axis=-1)
    return keep_source * s + keep_borrowed * borrowed


def avg_pool_ceil(x, factor: int):
  """Average pooling, window = stride = factor, ceil mode.

  Edge windows average only the pixels they cover, so odd sizes work.
  """
  if factor == 1:
    return x
  # A fixed high-side pad of factor-1 gives ceil(h/factor) windows for every
  # h, and keeps exported (symbolic) shapes decidable.
  pad = ((0, factor - 1), (0, factor - 1))
  return nnx.avg_pool(x, (factor, factor), strides=(factor, factor),
                      padding=pad, count_include_pad=False).astype(x.dtype)


class PyramidLevel(nnx.Module):
  """One pyramid level: pooled, projected source and reference, then VCAttn."""

  def __init__(self, channels: int, qk_channels: int, *, dtype, attention_impl,
               logit_scale: float = 1.0, rngs: nnx.Rngs):
    self.source_proj = conv(1, channels, channels, dtype=dtype, rngs=rngs)
    self.reference_proj = conv(1, channels, channels, dtype=dtype, rngs=rngs)
    self.valve = ValveCrossAttention(channels, qk_channels, dtype=dtype,
                                     attention_impl=attention_impl,
                                     logit_scale=logit_scale, rngs=rngs)

  def _inputs(self, f_s, f_r, factor, f_r_keys):
    s = lrelu(self.source_proj(avg_pool_ceil(f_s, factor)))
    r = lrelu(self.reference_proj(avg_pool_ceil(f_r, factor)))
    # Keys from the reference's own source features go through the source
    # side's projection: both sides of the match then share one mapping.
    r_keys = (None if f_r_keys is None else
              lrelu(self.source_proj(avg_pool_ceil(f_r_keys, factor))))
    return s, r, r_keys

  def __call__(self, f_s, f_r, factor: int, f_r_keys=None):
    return self.valve(*self._inputs(f_s, f_r, factor, f_r_keys))

  def attention_weights(self, f_s, f_r, factor: int, f_r_keys=None):
    s, r, r_keys = self._inputs(f_s, f_r, factor, f_r_keys)
    return self.valve.weights(s, r if r_keys is None else r_keys)

  def tie_key_to_query(self):
    """Initialisation for luminance keys: the key projection starts equal to
    the query's, so that q . k is a similarity of the two images' features
    (largest where they show the same thing) instead of a random form."""
    valve = self.valve
    valve.key.kernel.value = valve.query.kernel.value
    valve.key.bias.value = valve.query.bias.value


class PyramidValveCrossAttention(nnx.Module):
  """PVCAttn: three VCAttn levels (pool 1, 2, 4) fused back at f_s's size."""

  def __init__(self, channels: int = 256, qk_channels: int = 64,
               levels: int = 3, *, dtype=jnp.float32, attention_impl=None,
               logit_scale: float = 1.0, rngs: nnx.Rngs):
    self.levels = nnx.List([
        PyramidLevel(channels, qk_channels, dtype=dtype,
                     attention_impl=attention_impl, logit_scale=logit_scale,
                     rngs=rngs)
        for _ in range(levels)])
    self.fuse_hidden = conv(1, levels * channels, channels, dtype=dtype,
                            rngs=rngs)
    self.fuse_out = conv(3, channels, channels, dtype=dtype, rngs=rngs)

  def attention_weights(self, f_s, f_r, f_r_keys=None) -> list[jax.Array]:
    """Per level, the attention weights (B, h_l*w_l, hr_l*wr_l)."""
    return [level.attention_weights(f_s, f_r, 2**index, f_r_keys)
            for index, level in enumerate(self.levels)]

  def __call__(self, f_s, f_r, f_r_keys=None):
    """f_s (B,h,w,C) attends to f_r (B,hr,wr,C); keys from ``f_r_keys``
    (same shape as f_r) when given."""
    outputs = []
    for index, level in enumerate(self.levels):
      t = level(f_s, f_r, 2**index, f_r_keys)
      if index:
        t = jax.image.resize(t, f_s.shape[:3] + (t.shape[3],), 'bilinear',
                             antialias=False)
      outputs.append(t)
    return self.fuse_out(lrelu(self.fuse_hidden(
        jnp.concatenate(outputs, axis=-1))))
