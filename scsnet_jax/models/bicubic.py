"""Bicubic interpolation as weight matrices (Keys a = -0.5, half-pixel
centres, weights renormalised at the borders): equal to
``jax.image.resize(..., 'cubic')`` when enlarging, and usable at arbitrary
points and with symbolic (exported) sizes, which ``jax.image.resize`` is not.

The generator's ``luminance_residual`` option adds this enlargement of the
gray input to its L output. Output pixel ``j`` of an ``n -> m`` axis sits at
input coordinate ``(j + 0.5) n / m - 0.5``; a point ``t`` in [0, 1] at
``t n - 0.5``.
"""

from __future__ import annotations

import jax.numpy as jnp

KEYS_A = -0.5


def keys_kernel(x):
  """The Keys cubic convolution kernel (a = -0.5), support [-2, 2]."""
  x = jnp.abs(x)
  a = KEYS_A
  near = (a + 2) * x**3 - (a + 3) * x**2 + 1
  far = a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
  return jnp.where(x <= 1, near, jnp.where(x < 2, far, 0.0))


def weights(positions, n):
  """(..., m) input coordinates -> (..., m, n) rows of interpolation weights.

  Taps outside [0, n) are dropped and each row renormalised to sum to 1.
  """
  taps = keys_kernel(positions[..., None] -
                     jnp.arange(n, dtype=jnp.float32))
  return taps / jnp.sum(taps, axis=-1, keepdims=True)


def grid_weights(n_in, n_out):
  """(n_out, n_in) weights of a full-axis resize n_in -> n_out."""
  centres = (jnp.arange(n_out, dtype=jnp.float32) + 0.5) * (n_in / n_out)
  return weights(centres - 0.5, n_in)


def resize(images, out_size):
  """(B, H, W, C) -> (B, Ht, Wt, C) bicubic, float32."""
  height, width = images.shape[1], images.shape[2]
  rows = grid_weights(height, out_size[0])
  cols = grid_weights(width, out_size[1])
  return jnp.einsum('yh,bhwc,xw->byxc', rows, images.astype(jnp.float32),
                    cols)


def sample_points(images, coords):
  """(B, H, W) at points coords (B, N, 2) = (x, y) in [0, 1] -> (B, N)."""
  height, width = images.shape[1], images.shape[2]
  rows = weights(coords[..., 1] * height - 0.5, height)   # (B, N, H)
  cols = weights(coords[..., 0] * width - 0.5, width)     # (B, N, W)
  return jnp.einsum('bnh,bhw,bnw->bn', rows, images.astype(jnp.float32), cols)
