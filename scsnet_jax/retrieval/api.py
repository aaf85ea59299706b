"""The Python API: a gallery of colour photos, and ``retrieve``.

  from scsnet_jax.retrieval.api import Gallery, retrieve
  gallery = Gallery.open('family_photos/')          # indexes (cached)
  matches = retrieve(gray_pixels, gallery, top_k=5)  # best first
  matches[0].name, matches[0].score, gallery.path(matches[0])

``retrieve`` takes what predict decodes: a uint8 sRGB (H, W, 3) image (a
colour one is seen through its L, like every gallery photo) or the model's
normalised-L (H, W, 1) float input. ``gallery`` is a ``Gallery`` or a folder
path (then opened, i.e. indexed or read from its cache, on every call: open
it once for many queries). Predict, the app and the video path use this
module; nothing here prints (progress and bad files go to callbacks).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional, Union

import numpy as np

from scsnet_jax.errors import UserError
from scsnet_jax.retrieval import index as index_lib
from scsnet_jax.retrieval import ranking
from scsnet_jax.retrieval.features import Embedder, Features
from scsnet_jax.retrieval.index import GalleryIndex
from scsnet_jax.retrieval.ranking import Match, Weights


@dataclasses.dataclass
class Gallery:
  """An index and the embedder that made it (queries must use the same)."""
  index: GalleryIndex
  embedder: Embedder

  @classmethod
  def open(cls, folder: str, *, embedder: Optional[Embedder] = None,
           cache_dir: Optional[str] = None,
           on_progress: Optional[Callable[[int, int], None]] = None,
           on_error: Optional[Callable[[str], None]] = None) -> 'Gallery':
    """Indexes ``folder`` (incrementally, cached; see ``index``).

    Raises UserError if it is not a folder or holds no readable photo,
    WeightsError if EfficientNet-Lite0's weights are not installed."""
    embedder = embedder or Embedder()
    built = index_lib.build_index(folder, embedder, cache_dir=cache_dir,
                                  on_progress=on_progress, on_error=on_error)
    if not len(built):
      raise UserError(f'{folder}: reference gallery holds no readable photo')
    return cls(built, embedder)

  def __len__(self):
    return len(self.index)

  def path(self, match: Union[Match, int]) -> str:
    """The file of a match (or of a row)."""
    row = match.row if isinstance(match, Match) else int(match)
    return self.index.path(row)

  def describe(self, image: np.ndarray) -> Features:
    """uint8 (H, W, 3) sRGB or normalised L (H, W, 1) float -> one row."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
      return self.embedder.embed_gray(image)
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3:
      return self.embedder.embed_pixels(image)
    raise ValueError('expected uint8 (H, W, 3) sRGB or normalised L '
                     f'(H, W, 1), got {image.dtype} {image.shape}')

  def rank(self, query: Features, *, top_k: int = ranking.DEFAULT_TOP_K,
           weights: Optional[Weights] = None) -> list[Match]:
    return ranking.rank(query, self.index.features, self.index.names,
                        top_k=top_k, weights=weights)


def retrieve(gray_image: np.ndarray, gallery: Union[Gallery, str, os.PathLike],
             *, top_k: int = ranking.DEFAULT_TOP_K,
             weights: Optional[Weights] = None) -> list[Match]:
  """The ``top_k`` gallery photos best suited as colour references for
  ``gray_image``, best first (``Match``: row, name, score and its parts)."""
  if not isinstance(gallery, Gallery):
    gallery = Gallery.open(os.fspath(gallery))
  return gallery.rank(gallery.describe(gray_image), top_k=top_k,
                      weights=weights)
