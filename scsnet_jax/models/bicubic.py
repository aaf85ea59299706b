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
import numpy as np

KEYS_A = -0.5


def keys_kernel(x, xp=jnp):
  """The Keys cubic convolution kernel (a = -0.5), support [-2, 2]."""
  x = xp.abs(x)
  a = KEYS_A
  near = (a + 2) * x**3 - (a + 3) * x**2 + 1
  far = a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
  return xp.where(x <= 1, near, xp.where(x < 2, far, 0.0))


def weights(positions, n, xp=jnp):
  """(..., m) input coordinates -> (..., m, n) rows of interpolation weights.

  Taps outside [0, n) are dropped and each row renormalised to sum to 1.
  ``xp`` is ``jax.numpy`` (traced, exported) or ``numpy`` (host).
  """
  taps = keys_kernel(positions[..., None] -
                     xp.arange(n, dtype=xp.float32), xp)
  return taps / xp.sum(taps, axis=-1, keepdims=True)


def grid_weights(n_in, n_out, xp=jnp):
  """(n_out, n_in) weights of a full-axis resize n_in -> n_out."""
  centres = (xp.arange(n_out, dtype=xp.float32) + 0.5) * (n_in / n_out)
  return weights(centres - 0.5, n_in, xp)


def resize(images, out_size):
  """(B, H, W, C) -> (B, Ht, Wt, C) bicubic, float32."""
  height, width = images.shape[1], images.shape[2]
  rows = grid_weights(height, out_size[0])
  cols = grid_weights(width, out_size[1])
  return jnp.einsum('yh,bhwc,xw->byxc', rows, images.astype(jnp.float32),
                    cols)


def resize_host(images: np.ndarray, out_size) -> np.ndarray:
  """``resize`` in numpy: (B, H, W, C) -> (B, Ht, Wt, C) float32, with
  nothing to compile per size pair (inference sees many sizes)."""
  height, width = images.shape[1], images.shape[2]
  rows = grid_weights(height, out_size[0], np).astype(np.float32)
  cols = grid_weights(width, out_size[1], np).astype(np.float32)
  return np.einsum('yh,bhwc,xw->byxc', rows,
                   np.asarray(images, np.float32), cols, optimize=True)


def sample_points(images, coords):
  """(B, H, W) at points coords (B, N, 2) = (x, y) in [0, 1] -> (B, N)."""
  height, width = images.shape[1], images.shape[2]
  rows = weights(coords[..., 1] * height - 0.5, height)   # (B, N, H)
  cols = weights(coords[..., 0] * width - 0.5, width)     # (B, N, W)
  return jnp.einsum('bnh,bhw,bnw->bn', rows, images.astype(jnp.float32), cols)
