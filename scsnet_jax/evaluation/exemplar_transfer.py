"""Classical exemplar colour transfer (Welsh, Ashikhmin & Mueller 2002), the
baseline a referential model must beat to claim it matches colours by
content rather than by global statistics.

For a gray target and a colour reference (both CIE LAB):
1. Luminance remapping: the reference's L is shifted and scaled to the
   target's mean and standard deviation, so the two are comparable.
2. Jittered sampling: one random pixel per cell of a ``grid`` x ``grid``
   grid over the reference (Welsh used ~200 samples).
3. Matching: every target pixel takes the a, b of the sample whose
   (L, local standard deviation of L in a ``window`` x ``window``
   neighbourhood) is nearest, the two weighted equally (Welsh's 50/50) in
   L1 distance.
The output keeps the target's own L. Pure numpy/scipy, per image; the
sampling is seeded, so it is deterministic.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage
import scipy.spatial

from scsnet_jax import color

DEFAULT_GRID = 15          # 225 samples, Welsh et al.'s "about 200"
DEFAULT_WINDOW = 5         # neighbourhood of the local std, pixels
LUMINANCE_WEIGHT = 0.5     # Welsh et al.: 50% luminance, 50% std


def local_std(lightness: np.ndarray, window: int) -> np.ndarray:
  """Standard deviation of (H, W) ``lightness`` over a window x window box
  around each pixel (mirrored borders)."""
  mean = scipy.ndimage.uniform_filter(lightness, window, mode='mirror')
  mean_sq = scipy.ndimage.uniform_filter(lightness**2, window, mode='mirror')
  return np.sqrt(np.maximum(mean_sq - mean**2, 0.0))


def remap_luminance(reference_l: np.ndarray, target_l: np.ndarray
                    ) -> np.ndarray:
  """The reference's L with the target's mean and standard deviation."""
  spread = reference_l.std()
  scale = target_l.std() / spread if spread > 1e-8 else 1.0
  return (reference_l - reference_l.mean()) * scale + target_l.mean()


def jittered_samples(height: int, width: int, grid: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(rows, cols) of one uniformly random pixel per cell of a grid x grid
  partition of an (height, width) image (fewer cells on tiny images)."""
  row_edges = np.linspace(0, height, min(grid, height) + 1).astype(int)
  col_edges = np.linspace(0, width, min(grid, width) + 1).astype(int)
  rows, cols = [], []
  for top, bottom in zip(row_edges[:-1], row_edges[1:]):
    for left, right in zip(col_edges[:-1], col_edges[1:]):
      rows.append(rng.integers(top, bottom))
      cols.append(rng.integers(left, right))
  return np.asarray(rows), np.asarray(cols)


def transfer_lab(target_l: np.ndarray, reference_lab: np.ndarray, *,
                 grid: int = DEFAULT_GRID, window: int = DEFAULT_WINDOW,
                 seed: int = 0) -> np.ndarray:
  """Target L (H, W) and reference CIE LAB (h, w, 3) -> CIE LAB (H, W, 3):
  the target's L with the a, b of its best-matching reference sample."""
  target_l = np.asarray(target_l, np.float64)
  reference_lab = np.asarray(reference_lab, np.float64)
  reference_l = remap_luminance(reference_lab[..., 0], target_l)
  rows, cols = jittered_samples(*reference_l.shape, grid,
                                np.random.default_rng(seed))
  sample_features = np.stack(
      [reference_l[rows, cols], local_std(reference_l, window)[rows, cols]],
      axis=-1) * np.array([LUMINANCE_WEIGHT, 1 - LUMINANCE_WEIGHT])
  target_features = np.stack(
      [target_l, local_std(target_l, window)], axis=-1) * np.array(
          [LUMINANCE_WEIGHT, 1 - LUMINANCE_WEIGHT])
  tree = scipy.spatial.cKDTree(sample_features)
  _, nearest = tree.query(target_features.reshape(-1, 2), p=1)
  chroma = reference_lab[rows, cols, 1:][nearest].reshape(
      target_l.shape + (2,))
  return np.concatenate([target_l[..., None], chroma], axis=-1)


def exemplar_transfer(lightness_nlab: np.ndarray, reference_nlab: np.ndarray,
                      **kwargs) -> np.ndarray:
  """Batch form on normalised LAB: HR L (B, H, W, 1) and LR reference
  (B, h, w, 3) -> sRGB in [0, 1] (B, H, W, 3)."""
  outputs = []
  for lightness, reference in zip(np.asarray(lightness_nlab, np.float64),
                                  np.asarray(reference_nlab, np.float64)):
    target_l = (lightness[..., 0] + color.L_OFFSET) * color.L_SCALE
    lab = transfer_lab(target_l, color.denormalize_lab(reference, np),
                       **kwargs)
    outputs.append(color.lab_to_rgb01(lab, np))
  return np.clip(np.stack(outputs), 0.0, 1.0)
