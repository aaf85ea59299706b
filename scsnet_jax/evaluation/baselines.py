"""Trivial baselines that every evaluation table shows beside the model.

They bound what the numbers mean on a given set of images:
- ``bicubic_gray``: the LR L channel upsampled bicubically, zero chroma (a
  model that does super-resolution and no colourisation);
- ``color_copy``: the same L plus the reference's a, b channels upsampled
  bicubically to the output size (a naive colour transfer that copies the
  reference pixel by pixel, ignoring content).
Bicubic is the Keys kernel (a = -0.5) of ``jax.image.resize``; every input is
normalised LAB (``scsnet_jax.color``), every output sRGB in [0, 1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from scsnet_jax import color


def _resize_bicubic(x, out_size):
  """(B, h, w, C) -> (B, Ht, Wt, C), bicubic (antialiased when shrinking)."""
  shape = (x.shape[0],) + tuple(out_size) + (x.shape[-1],)
  return jax.image.resize(x, shape, method='cubic')


def upsampled_luminance(gray, out_size):
  """LR normalised L (B, h, w, 1) -> (B, Ht, Wt, 1), clipped to [-1, 1]."""
  return jnp.clip(_resize_bicubic(gray, out_size), -1.0, 1.0)


def bicubic_gray(gray, out_size):
  """(B, h, w, 1) nlab L -> (B, Ht, Wt, 3) sRGB [0, 1] with zero chroma."""
  lightness = upsampled_luminance(gray, out_size)
  nlab = jnp.concatenate([lightness, jnp.zeros_like(lightness),
                          jnp.zeros_like(lightness)], axis=-1)
  return color.nlab_to_rgb01(nlab, jnp)


def color_copy(gray, reference, out_size):
  """L from ``gray`` (B,h,w,1), a/b from ``reference`` (B,hr,wr,3) -> sRGB."""
  lightness = upsampled_luminance(gray, out_size)
  chroma = jnp.clip(_resize_bicubic(reference[..., 1:], out_size), -1.0, 1.0)
  return color.nlab_to_rgb01(jnp.concatenate([lightness, chroma], axis=-1),
                           jnp)
