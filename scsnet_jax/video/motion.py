"""Whole-frame camera motion between two frames: a zoom about the centre and
a whole-pixel shift (what ``propagate``'s hold undoes before it compares).

``estimate_motion(before, after)`` tries each zoom of ``ZOOMS`` on
thumbnails (longest side at most ``THUMB_SIDE``), finds the best shift for
it by phase correlation, keeps the zoom whose moved thumbnail differs least
from ``after`` (no zoom unless a zoom is clearly better), then finds the
shift again at full size. ``warp`` applies it: bilinear for a zoom, an exact
copy for a shift alone. Everything is numpy on (H, W) / (H, W, C) float
arrays; a 480p frame costs a few tens of milliseconds.
"""

from __future__ import annotations

import math

import numpy as np

# Zoom factors per frame tried (1 = none): steps of 0.25% near 1.
ZOOMS = tuple(1.0 + z for z in (-0.03, -0.02, -0.015, -0.01, -0.0075, -0.005,
                                -0.0025, 0.0, 0.0025, 0.005, 0.0075, 0.01,
                                0.015, 0.02, 0.03))
THUMB_SIDE = 160
# A zoom must beat no zoom's difference by this fraction to be chosen.
ZOOM_MARGIN = 0.05


def estimate_shift(before: np.ndarray, after: np.ndarray,
                   max_fraction: float = 0.125) -> tuple[int, int]:
  """The whole-pixel (dy, dx) with ``after[y, x] ~ before[y - dy, x - dx]``
  (phase correlation of two (H, W) images), each at most ``max_fraction``
  of the side."""
  a = np.fft.rfft2(before - before.mean())
  b = np.fft.rfft2(after - after.mean())
  cross = b * np.conj(a)
  cross /= np.maximum(np.abs(cross), 1e-9)
  surface = np.fft.irfft2(cross, s=before.shape)
  height, width = before.shape
  limit_y = max(1, int(height * max_fraction))
  limit_x = max(1, int(width * max_fraction))
  dy = (np.arange(height) + height // 2) % height - height // 2
  dx = (np.arange(width) + width // 2) % width - width // 2
  allowed = (np.abs(dy)[:, None] <= limit_y) & (np.abs(dx)[None] <= limit_x)
  index = np.argmax(np.where(allowed, surface, -np.inf))
  row, col = np.unravel_index(index, surface.shape)
  return int(dy[row]), int(dx[col])


def shift_image(image: np.ndarray, dy: int, dx: int
                ) -> tuple[np.ndarray, np.ndarray]:
  """(H, W, C) moved by (dy, dx) and the (H, W, 1) mask of the pixels
  that came from inside the image (elsewhere the copy is edge-padded)."""
  height, width = image.shape[:2]
  rows, cols = np.arange(height) - dy, np.arange(width) - dx
  moved = image[np.clip(rows, 0, height - 1)][:, np.clip(cols, 0, width - 1)]
  valid = (((rows >= 0) & (rows < height))[:, None]
           & ((cols >= 0) & (cols < width))[None])
  return moved, valid[..., None]


def _axis(length: int, zoom: float):
  """Bilinear taps of an axis magnified by ``zoom`` about its centre."""
  centre = (length - 1) / 2
  source = centre + (np.arange(length) - centre) / zoom
  low = np.clip(np.floor(source).astype(int), 0, max(length - 2, 0))
  frac = np.clip(source - low, 0.0, 1.0).astype(np.float32)
  inside = (source >= 0) & (source <= length - 1)
  return low, np.minimum(low + 1, length - 1), frac, inside


def zoom_image(image: np.ndarray, zoom: float
               ) -> tuple[np.ndarray, np.ndarray]:
  """(H, W, C) magnified by ``zoom`` about its centre (bilinear) and the
  (H, W, 1) mask of the pixels that came from inside it."""
  height, width = image.shape[:2]
  if zoom == 1.0:
    return image, np.ones((height, width, 1), bool)
  r0, r1, fr, r_in = _axis(height, zoom)
  c0, c1, fc, c_in = _axis(width, zoom)
  fr, fc = fr[:, None, None], fc[None, :, None]
  rows = image[r0] * (1 - fr) + image[r1] * fr
  out = rows[:, c0] * (1 - fc) + rows[:, c1] * fc
  return out.astype(image.dtype), (r_in[:, None] & c_in[None])[..., None]


def warp(image: np.ndarray, zoom: float, dy: int, dx: int
         ) -> tuple[np.ndarray, np.ndarray]:
  """``zoom_image`` then ``shift_image``; the mask of pixels from inside."""
  zoomed, inside = zoom_image(image, zoom)
  moved, valid = shift_image(zoomed, dy, dx)
  carried, _ = shift_image(inside, dy, dx)
  return moved, valid & carried


def thumbnail(image: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
  """(H, W) -> block means, longest side at most about ``side``."""
  factor = max(1, math.ceil(max(image.shape) / side))
  height = image.shape[0] // factor * factor
  width = image.shape[1] // factor * factor
  blocks = image[:height, :width].reshape(height // factor, factor,
                                          width // factor, factor)
  return blocks.mean(axis=(1, 3))


def estimate_motion(before: np.ndarray, after: np.ndarray
                    ) -> tuple[float, int, int]:
  """(zoom, dy, dx) that best moves (H, W) ``before`` onto ``after``."""
  small_before, small_after = thumbnail(before), thumbnail(after)
  scores = {}
  for zoom in ZOOMS:
    shift = estimate_shift(zoom_image(small_before[..., None], zoom)[0][..., 0],
                           small_after)
    moved, valid = warp(small_before[..., None], zoom, *shift)
    valid = valid[..., 0]
    if valid.mean() < 0.25:
      continue
    scores[zoom] = float(np.abs(moved[..., 0] - small_after)[valid].mean())
  best = min(scores, key=scores.get) if scores else 1.0
  if 1.0 in scores and scores[best] >= (1 - ZOOM_MARGIN) * scores[1.0]:
    best = 1.0
  zoomed = zoom_image(before[..., None], best)[0][..., 0]
  return best, *estimate_shift(zoomed, after)
