"""Pairs of views of one photograph, the retrieval benchmarks' data.

``view_pair`` splits a photo into two parts that do not overlap (a gap of
``GAP`` of the width; top and bottom for portrait photos): the query, the
gray low-resolution left part (its centre at 3:4, ``LR_SIZE`` px, what
predict gets) with its colour truth at ``SCALE`` x; and its partner, the
colour right part, mirrored, at full resolution. ``benchmark`` measures
recall with them, ``colour_benchmark`` the colours, ``tools.gallery_figure``
draws them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from scsnet_jax import color, image_io
from scsnet_jax.retrieval import features as features_lib
from scsnet_jax.retrieval.features import Embedder, Features

LR_SIZE = (84, 64)    # the gray query (height, width), 4x smaller than
SCALE = 4             # its colour truth, as the validation protocol's x4
GAP = 0.1


def _fit(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Centre crop to the aspect of ``size`` (height, width), resized to it."""
  height, width = pixels.shape[:2]
  want = size[1] / size[0]
  if width / height > want:
    keep = max(1, round(height * want))
    pixels = pixels[:, (width - keep) // 2:(width - keep) // 2 + keep]
  else:
    keep = max(1, round(width / want))
    pixels = pixels[(height - keep) // 2:(height - keep) // 2 + keep]
  return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize(
      (size[1], size[0]), Image.Resampling.BICUBIC))


def view_pair(pixels: np.ndarray) -> dict:
  """One photo -> {'target': (4h, 4w, 3) uint8 colour truth of the query
  part, 'gray': (h, w, 1) normalised L query (LR_SIZE, transposed for
  portrait photos), 'partner': the other part, mirrored, uint8}."""
  height, width = pixels.shape[:2]
  portrait = width < height
  if portrait:   # split top / bottom
    pixels = np.transpose(pixels, (1, 0, 2))
  edge = pixels.shape[1]
  cut = int(edge * (1 - GAP) / 2)
  query, partner = pixels[:, :cut], pixels[:, edge - cut:][:, ::-1]
  size = LR_SIZE
  if portrait:
    query, partner = (np.transpose(p, (1, 0, 2)) for p in (query, partner))
    size = size[::-1]
  target = _fit(query, (size[0] * SCALE, size[1] * SCALE))
  small = np.asarray(Image.fromarray(target).resize(
      (size[1], size[0]), Image.Resampling.BICUBIC))
  return {'target': target, 'gray': color.rgb8_to_gray(small),
          'partner': np.ascontiguousarray(partner)}


def read_photo(path: str) -> np.ndarray:
  """Decoded at a reduced size (JPEG draft) and shrunk to <= 1024 px."""
  pixels = image_io.read_image(path, draft_size=(1024, 1024))
  image = Image.fromarray(pixels)
  image.thumbnail((1024, 1024), Image.Resampling.BICUBIC)
  return np.asarray(image)


def describe_queries(embedder: Embedder, grays: list[np.ndarray]) -> Features:
  return Features.concatenate([embedder.embed_gray(g) for g in grays])


def describe_gallery(embedder: Embedder, photos: list[np.ndarray]) -> Features:
  return embedder.embed_light(np.stack([features_lib.lightness(p)
                                        for p in photos]))
