"""What the gallery search compares: one photo -> three small descriptors.

Every image, gray query or colour gallery photo, is described through its
gray version, CIE L (``color.rgb8_to_gray``) replicated to three channels, so
that the two meet in one domain: the network never sees colour, and a
colour photo and its gray scan get the same description. Both are also
seen at one resolution: the L image is shrunk to ``DESCRIBE_SIDE`` px on its
short side (a gray input is typically low-resolution; a sharp gallery photo
must look like one), then resized (bicubic, aspect ratio squeezed) to
``INPUT_SIZE`` x ``INPUT_SIZE`` and run through EfficientNet-Lite0
(``pretrained/efficientnet_lite``):

- ``pooled`` (320,): the last block's features averaged over the image,
  L2-normalised: what is in the picture (global cosine ranking). Measured
  on the view pairs (docs/retrieval.md) it ranks better than the
  classifier's 1280-d head, at a quarter of the memory;
- ``grid`` (GRID x GRID x 320 = 2880,): the last block's features averaged
  over a GRID x GRID grid (torch ``adaptive_avg_pool2d`` cells), each cell
  L2-normalised: where things are (spatial re-ranking);
- ``hist`` (HIST_BINS,): the L histogram (0 to 100 in HIST_BINS bins,
  summing to 1): how light and contrasted it is.

``Embedder`` holds the weights and its own jitted function (no
process-global cache); ``VERSION`` together with the weights' SHA-256 keys
the on-disk index, so a change here invalidates every cache.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from scsnet_jax import color
from scsnet_jax.hashing import file_sha256
from scsnet_jax.pretrained import efficientnet_lite as lite
from scsnet_jax.pretrained import efficientnet_weights

VERSION = 'lite0-blocks-L64to224-grid3-hist32/2'
INPUT_SIZE = lite.INPUT_SIZE     # 224: Lite0's training resolution
GRID = 3
DESCRIBE_SIDE = 64
HIST_BINS = 32
POOLED_DIM = lite.LAST_BLOCK_WIDTH                   # 320
GRID_DIM = GRID * GRID * lite.LAST_BLOCK_WIDTH       # 2880
# JPEGs are decoded at a reduced size of at least this (Pillow's draft
# mode: 1/2, 1/4 or 1/8 of the full size), which is most of indexing's speed.
DRAFT_SIZE = (4 * DESCRIBE_SIDE, 4 * DESCRIBE_SIDE)


@dataclasses.dataclass(frozen=True)
class Features:
  """Descriptors of N images (float32 here; the index stores float16)."""
  pooled: np.ndarray   # (N, POOLED_DIM), unit rows
  grid: np.ndarray     # (N, GRID_DIM), unit GRID*GRID cells
  hist: np.ndarray     # (N, HIST_BINS), rows sum to 1

  def __len__(self):
    return len(self.pooled)

  def row(self, index: int) -> 'Features':
    return Features(self.pooled[index:index + 1], self.grid[index:index + 1],
                    self.hist[index:index + 1])

  @staticmethod
  def concatenate(parts: list['Features']) -> 'Features':
    if not parts:
      return Features(np.zeros((0, POOLED_DIM), np.float32),
                      np.zeros((0, GRID_DIM), np.float32),
                      np.zeros((0, HIST_BINS), np.float32))
    return Features(*(np.concatenate([getattr(p, f) for p in parts])
                      for f in ('pooled', 'grid', 'hist')))


def lightness_from_gray(gray: np.ndarray) -> np.ndarray:
  """The model's normalised L input (H, W, 1) in [-1, 1] -> (INPUT_SIZE,
  INPUT_SIZE) float32 L / 100 in [0, 1], seen at DESCRIBE_SIDE px."""
  values = (np.asarray(gray, np.float32)[..., 0] + 1.0) * 0.5
  image = Image.fromarray(np.clip(values, 0.0, 1.0), mode='F')
  height, width = values.shape
  if min(height, width) > DESCRIBE_SIDE:
    factor = DESCRIBE_SIDE / min(height, width)
    image = image.resize((max(1, round(width * factor)),
                          max(1, round(height * factor))),
                         Image.Resampling.BICUBIC)
  resized = image.resize((INPUT_SIZE, INPUT_SIZE),
                         Image.Resampling.BICUBIC)
  return np.clip(np.asarray(resized, np.float32), 0.0, 1.0)


def lightness(pixels: np.ndarray) -> np.ndarray:
  """uint8 sRGB (H, W, 3), colour or gray -> (INPUT_SIZE, INPUT_SIZE) L/100.

  Large photos are first shrunk with Pillow's box filter to at most 4x
  DESCRIBE_SIDE (the later bicubic then averages what is left)."""
  height, width = pixels.shape[:2]
  if min(height, width) > 4 * DESCRIBE_SIDE:
    factor = 4 * DESCRIBE_SIDE / min(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    pixels = np.asarray(Image.fromarray(pixels).resize(
        size, Image.Resampling.BOX))
  return lightness_from_gray(color.rgb8_to_gray(pixels))


def histogram(light: np.ndarray) -> np.ndarray:
  """(..., H, W) L/100 in [0, 1] -> (..., HIST_BINS) float32, sums to 1."""
  flat = light.reshape(light.shape[:-2] + (-1,))
  bins = np.clip((flat * HIST_BINS).astype(np.int64), 0, HIST_BINS - 1)
  counts = np.stack([np.bincount(row, minlength=HIST_BINS)
                     for row in bins.reshape(-1, bins.shape[-1])])
  counts = counts.reshape(flat.shape[:-1] + (HIST_BINS,))
  return (counts / flat.shape[-1]).astype(np.float32)


def _cells(size: int) -> list[tuple[int, int]]:
  """torch adaptive_avg_pool2d's bins: [floor(i n / g), ceil((i+1) n / g))."""
  return [((i * size) // GRID, -((-(i + 1) * size) // GRID))
          for i in range(GRID)]


def _unit(x, axis=-1):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def describe(params, light: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(B, S, S) L/100 -> pooled (B, 320) and grid (B, GRID*GRID*320), both
  normalised; a pure function (jit it)."""
  images = jnp.repeat(light[..., None], 3, axis=-1)
  out = lite.efficientnet_lite0(params, images)
  blocks = out['blocks']
  rows, cols = _cells(blocks.shape[1]), _cells(blocks.shape[2])
  cells = [jnp.mean(blocks[:, r0:r1, c0:c1], axis=(1, 2))
           for r0, r1 in rows for c0, c1 in cols]
  grid = _unit(jnp.stack(cells, axis=1))          # (B, GRID*GRID, 320)
  pooled = jnp.mean(blocks, axis=(1, 2))
  return _unit(pooled), grid.reshape(grid.shape[0], -1)


class Embedder:
  """EfficientNet-Lite0 weights + a jitted ``describe``; batches of size 1
  (queries) and ``batch_size`` (indexing, padded) are compiled once each.

  ``version``: the key an index is stored under (descriptor VERSION and the
  weights' SHA-256 prefix)."""

  def __init__(self, params=None, *, weights_path: Optional[str] = None,
               batch_size: int = 8, weights_id: Optional[str] = None):
    if params is None:
      params = efficientnet_weights.load_efficientnet_lite0(weights_path)
      weights_id = weights_id or (
          efficientnet_weights.SHA256[:16] if weights_path is None
          else file_sha256(weights_path)[:16])
    self.params = jax.tree.map(jnp.asarray, params)
    self.batch_size = batch_size
    self.version = f'{VERSION}/{weights_id or "custom"}'
    self._describe = jax.jit(describe)

  def embed_light(self, light: np.ndarray) -> Features:
    """(N, S, S) L/100 -> Features of N rows (N >= 0)."""
    light = np.asarray(light, np.float32)
    parts = []
    step = 1 if len(light) == 1 else self.batch_size
    for start in range(0, len(light), step):
      chunk = light[start:start + step]
      count = len(chunk)
      if count < step:   # pad: one compiled shape per batch size
        chunk = np.concatenate(
            [chunk, np.zeros((step - count,) + chunk.shape[1:], np.float32)])
      pooled, grid = self._describe(self.params, jnp.asarray(chunk))
      parts.append(Features(np.asarray(pooled)[:count],
                            np.asarray(grid)[:count],
                            histogram(chunk[:count])))
    return Features.concatenate(parts)

  def embed_pixels(self, pixels: np.ndarray) -> Features:
    """One uint8 sRGB (H, W, 3) image -> Features of one row."""
    return self.embed_light(lightness(pixels)[None])

  def embed_gray(self, gray: np.ndarray) -> Features:
    """One normalised-L (H, W, 1) image (the model's input) -> one row."""
    return self.embed_light(lightness_from_gray(gray)[None])



