"""The image files of predict and the app: finding inputs, matching and
protecting references, alpha, writing outputs without ever leaving a partial
file. Where outputs go is ``planning``.

Decoding itself (modes, EXIF orientation, decompression bombs, truncation)
is ``scsnet_jax.image_io``, shared with the input pipeline.
"""

from __future__ import annotations

import glob
import io
import os
from typing import Iterable, Optional

import numpy as np
from PIL import Image

from scsnet_jax import atomic, image_io
from scsnet_jax.image_io import ImageDecodeError, read_image


# A reference whose pixels all have at most this channel spread (max - min of
# R, G, B, in 8-bit steps) is gray: JPEG noise gives gray photos a few steps.
GRAY_SPREAD = 3

# ------------------------------------------------------------------ alpha ---
def attach_alpha(pixels: np.ndarray, alpha: Optional[np.ndarray],
                 out_size: tuple[int, int]) -> np.ndarray:
  """A result and its input's alpha -> what to write: (Ht, Wt, 3) uint8
  unchanged without alpha; with an (H, W) uint8 alpha (RGBA and LA inputs),
  (Ht, Wt, 4) with the alpha resized bicubically (PIL, clipped to [0, 255])
  to ``out_size`` (Ht, Wt)."""
  if alpha is None:
    return pixels
  height, width = out_size
  if alpha.shape != (height, width):
    alpha = np.asarray(Image.fromarray(alpha, mode='L').resize(
        (width, height), Image.Resampling.BICUBIC), np.uint8)
  return np.concatenate([pixels, alpha[..., None]], axis=-1)


def is_gray(pixels: np.ndarray) -> bool:
  """True if an (H, W, 3) uint8 image has no colour (R = G = B, up to
  ``GRAY_SPREAD`` steps of compression noise)."""
  wide = pixels.astype(np.int16)
  spread = wide.max(axis=-1) - wide.min(axis=-1)
  return int(spread.max()) <= GRAY_SPREAD


def _is_image_name(path: str) -> bool:
  return path.lower().endswith(image_io.IMAGE_EXTENSIONS)


def collect_inputs(specs: Iterable[str]) -> tuple[list[str], list[str]]:
  """Files, folders (their image files, sorted) and globs -> (files, errors).

  Each error is one line naming the argument and the problem (a folder's
  devices, FIFOs and sockets with image names are reported and skipped).
  Duplicates are dropped, order is kept.
  """
  files, errors, seen = [], [], set()

  def add(path):
    key = os.path.abspath(path)
    if key not in seen:
      seen.add(key)
      files.append(path)

  for spec in specs:
    if os.path.isdir(spec):
      found = []
      for name in sorted(os.listdir(spec)):
        path = os.path.join(spec, name)
        if not _is_image_name(name) or os.path.isdir(path):
          continue
        if image_io.is_regular_file(path):
          found.append(path)
        else:   # never opened: /dev/zero would be read forever, a FIFO hang
          errors.append(f'{path}: not a regular file (a device, FIFO, socket '
                        'or broken link); skipped')
      if not found:
        errors.append(f'{spec}: folder has no image files')
      for path in found:
        add(path)
    elif os.path.exists(spec):
      add(spec)
    elif glob.has_magic(spec):
      found = sorted(p for p in glob.glob(spec)
                     if image_io.is_regular_file(p))
      if not found:
        errors.append(f'{spec}: pattern matches no files')
      for path in found:
        add(path)
    else:
      errors.append(f'{spec}: no such file or folder')
  return files, errors


def protected_references(reference: Optional[str]) -> list[str]:
  """The reference file, or the image files of a reference folder."""
  if reference is None or not os.path.exists(reference):
    return []
  return collect_inputs([reference])[0]


class ReferenceMatcher:
  """The colour reference for each input: one image for all, or a folder
  matched by file name (same name, or same stem with any image suffix).

  A single reference file is read when the matcher is made, so a bad one is
  one error before any input is processed, and it is kept for every input. A
  folder's references are read as their inputs come and not kept (holding
  them would grow with the folder). A gray reference adds a line to
  ``warnings`` (drain it with ``take_warnings``).
  """

  def __init__(self, spec: Optional[str]):
    self.spec = None if spec is None else os.fspath(spec)
    self._cache: dict[str, np.ndarray] = {}
    self._failed: dict[str, ImageDecodeError] = {}
    self.warnings: list[str] = []
    if self.spec is not None and not os.path.exists(self.spec):
      raise FileNotFoundError(f'{self.spec}: reference not found')
    if self.spec is not None and not os.path.isdir(self.spec):
      self._read(self.spec)

  def path_for(self, input_path: str) -> Optional[str]:
    if self.spec is None:
      return None
    if not os.path.isdir(self.spec):
      return self.spec
    name = os.path.basename(input_path)
    candidates = [name] + [os.path.splitext(name)[0] + s
                           for s in image_io.IMAGE_EXTENSIONS]
    for candidate in candidates:
      path = os.path.join(self.spec, candidate)
      if os.path.isfile(path):
        return path
    raise ImageDecodeError(f'{input_path}: no reference named like it in '
                           f'{self.spec}')

  def _read(self, path: str) -> np.ndarray:
    if path in self._failed:
      raise self._failed[path]
    if path not in self._cache:
      try:
        pixels = read_image(path)
      except ImageDecodeError as error:
        self._failed[path] = ImageDecodeError(f'reference {error}')
        raise self._failed[path] from None
      if is_gray(pixels):
        self.warnings.append(
            f'warning: {path}: the reference is gray, so it carries no '
            'colour to borrow; give a colour reference, or omit --reference '
            'for automatic colours')
      if path != self.spec:   # a folder's references are used once each:
        return pixels         # holding them all would grow with the folder
      self._cache[path] = pixels
    return self._cache[path]

  def load(self, input_path: str) -> Optional[np.ndarray]:
    """(Hr, Wr, 3) uint8 sRGB, or None in automatic mode."""
    path = self.path_for(input_path)
    return None if path is None else self._read(path)

  def take_warnings(self) -> list[str]:
    lines, self.warnings = self.warnings, []
    return lines


def write_png_atomic(path: str, pixels: np.ndarray) -> None:
  """uint8 (H, W, 3) or (H, W, 4) (RGBA) -> 8-bit sRGB PNG at ``path``,
  all or nothing.

  Encodes in memory, then ``atomic.write_bytes`` (temporary file in the
  same folder, fsync, rename).
  """
  if (pixels.dtype != np.uint8 or pixels.ndim != 3 or
      pixels.shape[-1] not in (3, 4)):
    raise ValueError(f'expected uint8 (H, W, 3) or (H, W, 4), got '
                     f'{pixels.dtype} {pixels.shape}')
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='PNG')
  atomic.write_bytes(path, buffer.getvalue())
