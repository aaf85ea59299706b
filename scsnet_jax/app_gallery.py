"""The app's reference gallery (``python -m scsnet_jax.app
--reference-gallery DIR``): suggestions for an uploaded photo, and the
gallery photo a choice names. No gradio import (``app.py`` draws it).

The folder is indexed once at start-up (``reference_gallery.open_chooser``).
For each upload the page shows the top K gallery photos (thumbnails, best
first, with their scores) and a choice, preset to the best; Colourise uses
the chosen photo as the reference unless a reference was uploaded. The
page names a choice by its gallery file name, and only names of the index
are accepted: a request can never make the server read another file.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
from PIL import Image

from scsnet_jax import image_io
from scsnet_jax.app_requests import RequestError
from scsnet_jax.errors import UserError, first_line
from scsnet_jax.retrieval.choices import ReferenceChooser

THUMBNAIL_SIDE = 256
# Uploads are shrunk to this (JPEG draft decoding) before they are described:
# the features see 64 px anyway (retrieval.features.DESCRIBE_SIDE).
_DRAFT = (512, 512)


class GallerySuggestions:
  """Suggestions from one indexed folder (shared by all requests)."""

  def __init__(self, chooser: ReferenceChooser, *, max_input_pixels: int):
    self.chooser = chooser
    self.max_input_pixels = max_input_pixels
    index = chooser.gallery.index
    self._paths = {name: index.path(row) for row, name in
                   enumerate(index.names)}

  @property
  def folder(self) -> str:
    return self.chooser.gallery.index.folder

  def __len__(self):
    return len(self._paths)

  def suggest(self, image_path: Optional[str]
              ) -> tuple[list[tuple[np.ndarray, str]], list[str]]:
    """An upload -> ([(thumbnail (h, w, 3) uint8, caption)], [names]),
    best first; a bad upload is a RequestError line."""
    if not image_path:
      return [], []
    try:
      pixels = image_io.read_image(image_path,
                                   max_pixels=self.max_input_pixels,
                                   draft_size=_DRAFT)
    except (OSError, UserError) as error:
      raise RequestError(f'{os.path.basename(image_path)}: '
                         f'{first_line(error)}') from None
    matches = self.chooser.rank(pixels)
    items = [(self.thumbnail(m.name), f'{i}. {m.name} ({m.score:.3f})')
             for i, m in enumerate(matches, 1)]
    return items, [m.name for m in matches]

  def reference_path(self, name: Optional[str]) -> Optional[str]:
    """The gallery file of a chosen name (None for no choice)."""
    if not name:
      return None
    if name not in self._paths:
      raise RequestError(f'{name!r} is not a photo of the reference gallery')
    return self._paths[name]

  def thumbnail(self, name: str) -> np.ndarray:
    """A gallery photo, at most THUMBNAIL_SIDE px (a gray square if it can
    no longer be read)."""
    try:
      pixels = image_io.read_image(
          self.reference_path(name), max_pixels=self.max_input_pixels,
          draft_size=(THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    except (OSError, UserError):
      return np.full((THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3), 128, np.uint8)
    image = Image.fromarray(pixels)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BICUBIC)
    return np.asarray(image)
