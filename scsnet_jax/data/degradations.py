"""Numpy image operations that turn an HR photo into a training example.

Worker-safe: numpy and scipy only, no JAX, so grain's spawned workers can run
them. Images are float32 (H, W, C) arrays; randomness comes from an explicit
``np.random.Generator`` so every example is a pure function of (seed, index).

Bicubic convention. ``resize_bicubic`` reproduces PIL's
``Image.resize(size, Image.BICUBIC, reducing_gap=None)`` on float ('F') images:
the Keys cubic with a = -0.5, widened by the scale factor when shrinking
(antialiasing), pixel centres at (i + 0.5) * in/out. MATLAB's ``imresize``
uses the same kernel, widening and centres, so interior pixels agree with
MATLAB as well; at the borders PIL drops the taps that fall outside the image
and renormalises, while MATLAB mirrors the image, so the outermost
~2 * scale pixels differ slightly (we match PIL).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage
from PIL import Image

from scsnet_jax.errors import UserError
from scsnet_jax.models.geometry import INPUT_MULTIPLE



def resize_bicubic(image: np.ndarray, size: tuple[int, int],
                   clip: bool = True) -> np.ndarray:
  """(H, W, C) float -> (h, w, C) float32, antialiased bicubic (module doc).

  Runs PIL's resampler on each channel in 32-bit float mode ('F'), so there
  is no 8-bit rounding. ``clip`` keeps the result in [0, 1] (bicubic
  overshoots at edges), as an 8-bit resize would.
  """
  out_h, out_w = size
  if out_h < 1 or out_w < 1:
    raise ValueError(f'resize target must be positive, got {size}')
  image = np.asarray(image, dtype=np.float32)
  if (out_h, out_w) != image.shape[:2]:
    image = np.stack([
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]),
                                   mode='F').resize(
                                       (out_w, out_h), Image.BICUBIC,
                                       reducing_gap=None))
        for c in range(image.shape[-1])
    ], axis=-1)
  return np.clip(image, 0.0, 1.0) if clip else image


def upscale_to_min_side(image: np.ndarray, min_side: int) -> np.ndarray:
  """Bicubic upscale so the shorter side is >= ``min_side`` (aspect kept).

  Images that are already large enough are returned unchanged.
  """
  h, w = image.shape[:2]
  if min(h, w) >= min_side:
    return image
  factor = min_side / min(h, w)
  size = (max(min_side, math.ceil(h * factor - 1e-6)),
          max(min_side, math.ceil(w * factor - 1e-6)))
  return resize_bicubic(image, size)


def random_crop(image: np.ndarray, size: int,
                rng: np.random.Generator) -> np.ndarray:
  """A uniformly placed (size, size) window of an image at least that big."""
  h, w = image.shape[:2]
  top = int(rng.integers(0, h - size + 1))
  left = int(rng.integers(0, w - size + 1))
  return image[top:top + size, left:left + size]


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """The central (size, size) window (top-left biased by half a pixel)."""
  h, w = image.shape[:2]
  top, left = (h - size) // 2, (w - size) // 2
  return image[top:top + size, left:left + size]


def random_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Horizontal flip with probability 1/2."""
  return image[:, ::-1] if rng.random() < 0.5 else image


def elastic_distortion(image: np.ndarray, alpha: float, sigma: float,
                       rng: np.random.Generator) -> np.ndarray:
  """Simard et al. (2003) elastic distortion of an (h, w, C) image.

  Each pixel moves by ``alpha * gaussian_filter(U(-1, 1), sigma)`` (one field
  per axis, in pixels), and the image is resampled there bilinearly with
  mirrored borders. The rms displacement per axis is about
  ``alpha * 0.577 / (2 * sqrt(pi) * sigma)`` for fields larger than sigma
  (e.g. alpha=120, sigma=8 -> ~2.4 px). ``alpha = 0`` returns the image.
  """
  if alpha == 0:
    return image
  h, w = image.shape[:2]
  shifts = [
      alpha * scipy.ndimage.gaussian_filter(
          rng.uniform(-1.0, 1.0, size=(h, w)), sigma, mode='constant')
      for _ in range(2)
  ]
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  coords = np.stack([rows + shifts[0], cols + shifts[1]])
  channels = [
      scipy.ndimage.map_coordinates(image[..., c], coords, order=1,
                                    mode='mirror')
      for c in range(image.shape[-1])
  ]
  return np.stack(channels, axis=-1).astype(image.dtype)


def scale_bounds(scale) -> tuple[float, float]:
  """``config.data.scale`` (a number or [min, max]) -> (min, max), checked."""
  if isinstance(scale, (int, float)):
    low = high = float(scale)
  else:
    values = [float(v) for v in scale]
    if len(values) != 2:
      raise UserError(f'data.scale must be a number or [min, max], got {scale}')
    low, high = values
  if not 1.0 <= low <= high:
    raise UserError(f'data.scale must satisfy 1 <= min <= max, got {scale}')
  return low, high


def scale_grid(scale, scale_choices: int) -> np.ndarray | None:
  """The allowed scales when quantised (``scale_choices`` > 1), else None."""
  low, high = scale_bounds(scale)
  if low == high or scale_choices <= 0:
    return None
  return np.linspace(low, high, max(int(scale_choices), 1))


def draw_scale(scale, scale_choices: int, rng: np.random.Generator) -> float:
  """One magnification for a batch: fixed, uniform in [min, max], or one of
  ``scale_choices`` evenly spaced values (fewer distinct shapes to compile)."""
  low, high = scale_bounds(scale)
  if low == high:
    return low
  grid = scale_grid(scale, scale_choices)
  if grid is not None:
    return float(grid[rng.integers(len(grid))])
  return float(rng.uniform(low, high))


def lr_size_for_scale(crop_size: int, scale: float) -> int:
  """LR side for an HR crop at this scale, rounded to a multiple of 4 (>= 4)."""
  units = max(1, int(round(crop_size / scale / INPUT_MULTIPLE)))
  return units * INPUT_MULTIPLE
