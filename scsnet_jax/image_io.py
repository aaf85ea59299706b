"""Safe decoding of untrusted image files into uint8 sRGB arrays (numpy + PIL).

Used by the input pipeline's grain workers and usable by the inference CLI.
Files come from folders or datasets we do not control, so decoding refuses
decompression bombs (too many pixels for the file) and oversized files before
any pixel is decoded, and every failure is one ``ImageDecodeError`` naming the
file and the problem. Output is always (H, W, 3) uint8 sRGB: palette, gray,
CMYK and alpha images are converted (alpha is dropped), EXIF orientation is
applied.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from scsnet_jax.errors import UserError

# Largest image we decode: 100 megapixels (a 10000 x 10000 photo). ImageNet
# images are ~0.2 MP. Checked here from the header, before decoding; PIL's
# process-wide limit is left as it is (its warning is silenced in our calls).
MAX_IMAGE_PIXELS = 100_000_000
# Largest file we read into memory.
MAX_FILE_BYTES = 256 * 1024 * 1024
# Files a folder contributes, for training and for predict alike (a file
# named explicitly is always tried).
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp', '.tif', '.tiff',
                    '.gif')


class ImageDecodeError(UserError):
  """An image file or buffer that cannot be used (unreadable, truncated, bomb)."""


def decode_image(data: bytes, *, name: str = '<bytes>',
                 max_pixels: int = MAX_IMAGE_PIXELS,
                 draft_size: tuple[int, int] | None = None) -> np.ndarray:
  """Encoded JPEG/PNG/WebP/... bytes -> (H, W, 3) uint8 sRGB.

  Args:
    data: the encoded file contents.
    name: the file's name or path, used in error messages.
    max_pixels: refuse images with more pixels than this (decompression bombs).
    draft_size: if given, JPEGs may be decoded at a reduced size of at least
      this (width, height) (fast thumbnails, e.g. for colourfulness filters).

  Raises:
    ImageDecodeError: empty, not an image, truncated, too large, bad mode.
  """
  if not data:
    raise ImageDecodeError(f'{name}: empty file')
  if len(data) > MAX_FILE_BYTES:
    raise ImageDecodeError(f'{name}: file has {len(data)} bytes, more than '
                           f'the limit of {MAX_FILE_BYTES}')
  try:
    with warnings.catch_warnings():
      # Our own check below refuses bombs with a clear message.
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      image = Image.open(io.BytesIO(data))
      width, height = image.size
      if width < 1 or height < 1 or width * height > max_pixels:
        raise ImageDecodeError(
            f'{name}: {width}x{height} pixels is outside the allowed range '
            f'(1 to {max_pixels} pixels; possible decompression bomb)')
      if draft_size is not None and image.format == 'JPEG':
        image.draft('RGB', draft_size)
      image.load()  # decodes now, so truncation is detected here
      image = ImageOps.exif_transpose(image)
      if image.mode not in ('RGB', 'L'):
        if image.mode in ('I;16', 'I;16B', 'I;16L', 'I'):  # 16-bit gray
          wide = np.asarray(image, dtype=np.float64)
          image = Image.fromarray(
              np.clip(wide / 257.0, 0, 255).astype(np.uint8), mode='L')
        else:
          image = image.convert('RGB')
      if image.mode == 'L':
        image = image.convert('RGB')
      pixels = np.asarray(image, dtype=np.uint8)
  except ImageDecodeError:
    raise
  except Image.UnidentifiedImageError:
    raise ImageDecodeError(f'{name}: cannot decode image (not a recognised '
                           'image format)') from None
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
          EOFError) as error:
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise ImageDecodeError(f'{name}: cannot decode image ({message})') from None
  if pixels.ndim != 3 or pixels.shape[-1] != 3:
    raise ImageDecodeError(f'{name}: decoded to shape {pixels.shape}, '
                           'expected (H, W, 3)')
  return np.ascontiguousarray(pixels)


def read_image(path: str | os.PathLike, *,
               max_pixels: int = MAX_IMAGE_PIXELS,
               draft_size: tuple[int, int] | None = None) -> np.ndarray:
  """Reads and decodes an image file -> (H, W, 3) uint8 sRGB.

  Raises:
    ImageDecodeError: missing, unreadable, oversized or undecodable file.
  """
  path = os.fspath(path)
  try:
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
      raise ImageDecodeError(f'{path}: file has {size} bytes, more than the '
                             f'limit of {MAX_FILE_BYTES}')
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as error:
    raise ImageDecodeError(f'{path}: cannot read file ({error.strerror or error})'
                           ) from None
  return decode_image(data, name=path, max_pixels=max_pixels,
                      draft_size=draft_size)


def to_float01(pixels: np.ndarray) -> np.ndarray:
  """uint8 (..., 3) -> float32 in [0, 1]."""
  return pixels.astype(np.float32) * np.float32(1.0 / 255.0)
