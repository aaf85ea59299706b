"""File handling for the inference CLI: finding inputs, matching references,
writing outputs without ever leaving a partial file.

Decoding itself (modes, EXIF orientation, decompression bombs, truncation)
is ``scsnet_jax.image_io``, shared with the input pipeline.
"""

from __future__ import annotations

import glob
import io
import os
import tempfile
from typing import Iterable, Optional

import numpy as np
from PIL import Image

from scsnet_jax.image_io import ImageDecodeError, read_image

# Files a folder input contributes (a file named explicitly is always tried).
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.webp', '.bmp', '.tif', '.tiff',
                  '.gif')

# mkstemp makes 0600 files; outputs get the usual permissions instead.
_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = ['ImageDecodeError', 'read_image', 'collect_inputs',
           'ReferenceMatcher', 'output_path', 'check_output_dir',
           'write_png_atomic']


def _is_image_name(path: str) -> bool:
  return path.lower().endswith(IMAGE_SUFFIXES)


def collect_inputs(specs: Iterable[str]) -> tuple[list[str], list[str]]:
  """Files, folders (their image files, sorted) and globs -> (files, errors).

  Each error is one line naming the argument and the problem. Duplicates are
  dropped, order is kept.
  """
  files, errors, seen = [], [], set()

  def add(path):
    key = os.path.abspath(path)
    if key not in seen:
      seen.add(key)
      files.append(path)

  for spec in specs:
    if os.path.isdir(spec):
      found = sorted(os.path.join(spec, name) for name in os.listdir(spec)
                     if _is_image_name(name)
                     and os.path.isfile(os.path.join(spec, name)))
      if not found:
        errors.append(f'{spec}: folder has no image files')
      for path in found:
        add(path)
    elif os.path.exists(spec):
      add(spec)
    elif glob.has_magic(spec):
      found = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
      if not found:
        errors.append(f'{spec}: pattern matches no files')
      for path in found:
        add(path)
    else:
      errors.append(f'{spec}: no such file or folder')
  return files, errors


class ReferenceMatcher:
  """The colour reference for each input: one image for all, or a folder
  matched by file name (same name, or same stem with any image suffix)."""

  def __init__(self, spec: Optional[str]):
    self.spec = spec
    self._cache: dict[str, np.ndarray] = {}
    if spec is not None and not os.path.exists(spec):
      raise FileNotFoundError(f'{spec}: reference not found')

  def path_for(self, input_path: str) -> Optional[str]:
    if self.spec is None:
      return None
    if not os.path.isdir(self.spec):
      return self.spec
    name = os.path.basename(input_path)
    candidates = [name] + [os.path.splitext(name)[0] + s
                           for s in IMAGE_SUFFIXES]
    for candidate in candidates:
      path = os.path.join(self.spec, candidate)
      if os.path.isfile(path):
        return path
    raise ImageDecodeError(f'{input_path}: no reference named like it in '
                           f'{self.spec}')

  def load(self, input_path: str) -> Optional[np.ndarray]:
    """(Hr, Wr, 3) uint8 sRGB, or None in automatic mode."""
    path = self.path_for(input_path)
    if path is None:
      return None
    if path not in self._cache:
      self._cache[path] = read_image(path)
    return self._cache[path]


def output_path(output_dir: str, input_path: str) -> str:
  """OUTPUT/<input stem>.png"""
  stem = os.path.splitext(os.path.basename(input_path))[0]
  return os.path.join(output_dir, stem + '.png')


def check_output_dir(output_dir: str) -> None:
  """Creates the folder; raises OSError with a one-line reason if unusable."""
  try:
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output_dir, prefix='.probe-'):
      pass
  except OSError as error:
    raise OSError(f'{output_dir}: output folder is not writable '
                  f'({error.strerror or error})') from None


def write_png_atomic(path: str, pixels: np.ndarray) -> None:
  """uint8 (H, W, 3) -> 8-bit sRGB PNG at ``path``, all or nothing.

  Encodes in memory, writes a temporary file in the same folder, then
  ``os.replace`` (atomic on one file system).
  """
  if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[-1] != 3:
    raise ValueError(f'expected uint8 (H, W, 3), got {pixels.dtype} '
                     f'{pixels.shape}')
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='PNG')
  folder = os.path.dirname(os.path.abspath(path))
  handle, temp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix='.png')
  try:
    with os.fdopen(handle, 'wb') as f:
      f.write(buffer.getvalue())
    os.chmod(temp, 0o666 & ~_UMASK)
    os.replace(temp, path)
  except BaseException:
    if os.path.exists(temp):
      os.remove(temp)
    raise
