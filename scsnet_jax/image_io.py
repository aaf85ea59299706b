"""Safe decoding of untrusted image files into uint8 sRGB arrays (numpy + PIL).

The one decoder of the package: the input pipeline's grain workers, the
predict CLI and the web app all read images through ``decode_image_and_alpha``
(or its wrappers ``decode_image``, ``read_image``, ``read_image_and_alpha``).
Files come from folders, datasets and uploads we do not control, so:

- only regular files are read (no devices, FIFOs, sockets: ``fstat`` after an
  ``O_NONBLOCK`` open), and at most ``MAX_FILE_BYTES`` + 1 bytes of them;
- only the formats in ``ALLOWED_FORMATS`` are identified (Pillow otherwise
  picks a plugin from the content, and EPS bytes named photo.jpg would be
  handed to Ghostscript);
- decompression bombs (too many pixels) are refused from the header, before
  any pixel is decoded;
- every exception Pillow raises while opening or decoding becomes one
  ``ImageDecodeError`` line naming the file; a malformed EXIF block is
  ignored (the image is shown as stored).

Output is always (H, W, 3) uint8 sRGB, plus the (H, W) uint8 alpha where the
file has one. Conversions:
- EXIF orientation is applied (to colour and alpha alike);
- an embedded ICC profile is converted to sRGB (``PIL.ImageCms``); a profile
  that cannot be used leaves the stored values as they are, and so does an
  sRGB one (named sRGB, sRGB primaries: the conversion would be identity);
- 16-bit gray ('I;16*'): / 257;
- 32-bit integer gray ('I'): values within 0..65535 are 16-bit data (16-bit
  PNGs and TIFFs often open as 'I'): / 257; any other range (negative values
  or above 65535) is stretched linearly from the image's min..max to 0..255;
- float gray ('F'): values within [0, 1] are scaled by 255; any other range
  is stretched from the image's min..max (NaN -> min, +-inf -> max/min);
- a stretched image of one value is white if that is positive, else black;
- palette, gray, CMYK, YCbCr, alpha images: Pillow's conversion to RGB
  (alpha dropped, not composited).
"""

from __future__ import annotations

import functools
import io
import os
import stat
import warnings
from typing import Optional

import numpy as np
from PIL import Image

from scsnet_jax.errors import UserError, first_line

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
# The only Pillow plugins that may identify untrusted bytes ('JPEG' also
# opens MPO, the multi-picture JPEGs of some cameras, as their first frame).
ALLOWED_FORMATS = ('PNG', 'JPEG', 'WEBP', 'BMP', 'TIFF', 'GIF')

_ALPHA_MODES = ('RGBA', 'LA', 'PA', 'RGBa', 'La')
_WIDE_GRAY_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I', 'F')
# EXIF orientation -> the transpose that shows the image upright (as
# ``ImageOps.exif_transpose``, which also rewrites the EXIF block and fails on
# malformed ones; we need the pixels only).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageDecodeError(UserError):
  """An image file or buffer that cannot be used (unreadable, truncated, bomb)."""


class ImageTooLargeError(ImageDecodeError):
  """More pixels than the caller's ``max_pixels`` or PIL's own limit (read
  from the header); ``size`` is the header's (width, height), or (0, 0)
  where PIL refused it first."""
  size: tuple[int, int] = (0, 0)


# ------------------------------------------------------------- reading ---
def read_file_bytes(path: str | os.PathLike,
                    max_bytes: int = MAX_FILE_BYTES, *,
                    error_type: type[UserError] = ImageDecodeError) -> bytes:
  """A regular file's contents, refusing anything else and anything larger
  than ``max_bytes`` (at most ``max_bytes`` + 1 bytes are ever read).

  The open is non-blocking, so a FIFO does not hang; ``fstat`` of the open
  file (not a ``stat`` of the name, which could be swapped meanwhile) must
  say regular file, so ``/dev/zero`` or a socket is one error line. Other
  untrusted files (an export folder's) are read through here too, with
  their own ``error_type`` and cap.

  Raises:
    error_type (ImageDecodeError): missing, unreadable, not a regular file,
      too large.
  """
  path = os.fspath(path)
  flags = (os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) |
           getattr(os, 'O_BINARY', 0))
  try:
    fd = os.open(path, flags)
  except OSError as error:
    raise error_type(
        f'{path}: cannot read file ({error.strerror or error})') from None
  try:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
      raise error_type(f'{path}: not a regular file (a folder, device, '
                       'FIFO or socket); only regular files are read')
    if info.st_size > max_bytes:
      raise error_type(f'{path}: file has {info.st_size} bytes, more '
                       f'than the limit of {max_bytes}')
    chunks, left = [], max_bytes + 1
    while left > 0:
      chunk = os.read(fd, min(left, 1 << 24))
      if not chunk:
        break
      chunks.append(chunk)
      left -= len(chunk)
  except OSError as error:
    raise error_type(
        f'{path}: cannot read file ({error.strerror or error})') from None
  finally:
    os.close(fd)
  data = b''.join(chunks)
  if len(data) > max_bytes:   # it grew after the fstat
    raise error_type(f'{path}: file has more than the limit of '
                     f'{max_bytes} bytes')
  return data


def is_regular_file(path: str | os.PathLike) -> bool:
  """True for a regular file or a link to one (folder listings use it to
  skip devices, FIFOs and sockets that carry an image suffix)."""
  try:
    return stat.S_ISREG(os.stat(path).st_mode)
  except (OSError, ValueError):
    return False


# ------------------------------------------------------------ decoding ---
_SRGB_PROFILE = None


def _colorants(profile) -> np.ndarray:
  return np.array([c[0] for c in (profile.red_colorant, profile.green_colorant,
                                  profile.blue_colorant)], np.float64)


@functools.lru_cache(maxsize=64)
def _is_srgb(icc: bytes) -> bool:
  """True for the many "sRGB IEC61966-2.1"-like profiles cameras and
  editors embed: named sRGB, with sRGB's primaries. Converting with them
  would change nothing (within a level) and triple a JPEG's decode time."""
  try:
    # Not every Pillow build has littlecms: only ICC images need it.
    from PIL import ImageCms  # pylint: disable=g-import-not-at-top
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile
    name = profile.profile_description or ''
    return ('srgb' in name.lower() and profile.xcolor_space.strip() == 'RGB'
            and np.abs(_colorants(profile) - _colorants(
                ImageCms.createProfile('sRGB'))).max() < 0.003)
  except Exception:  # pylint: disable=broad-except
    return False


def _to_srgb(image: Image.Image, icc: bytes) -> Optional[Image.Image]:
  """RGB / L / CMYK ``image`` with embedded profile ``icc`` -> RGB sRGB, or
  None when the profile cannot be used (corrupt, wrong colour space) or is
  sRGB already."""
  global _SRGB_PROFILE
  if _is_srgb(icc):
    return None
  try:
    from PIL import ImageCms  # pylint: disable=g-import-not-at-top
    if _SRGB_PROFILE is None:
      _SRGB_PROFILE = ImageCms.createProfile('sRGB')
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    return ImageCms.profileToProfile(image, source, _SRGB_PROFILE,
                                     outputMode='RGB')
  except Exception:  # pylint: disable=broad-except
    return None       # ImportError, PyCMSError, OSError, ...: raw values


def _pillow_decode(data, name, max_pixels, draft_size, want_alpha):
  """The Pillow part: -> (array, mode, alpha). ``array`` is (H, W, 3) uint8
  sRGB when ``mode`` is 'RGB', else the (H, W) raw values of a wide gray
  mode ('I;16*', 'I', 'F'). Any Pillow exception propagates."""
  image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
  width, height = image.size
  if width < 1 or height < 1 or width * height > max_pixels:
    error = ImageTooLargeError(
        f'{name}: {width}x{height} pixels is outside the allowed range '
        f'(1 to {max_pixels} pixels; possible decompression bomb)')
    error.size = (width, height)   # for callers' own wording (the app)
    raise error
  if draft_size is not None and image.format in ('JPEG', 'MPO'):
    image.draft('RGB', draft_size)
  image.load()  # decodes now, so truncation is detected here
  try:
    orientation = image.getexif().get(0x0112)
  except Exception:  # pylint: disable=broad-except
    orientation = None   # a malformed EXIF block: shown as stored
  if isinstance(orientation, int) and orientation in _ORIENTATION:
    image = image.transpose(_ORIENTATION[orientation])
  alpha = None
  if want_alpha and (image.mode in _ALPHA_MODES or
                     (image.mode == 'P' and 'transparency' in image.info)):
    alpha = np.asarray(image.convert('RGBA').getchannel('A'), np.uint8)
  mode = image.mode
  if mode in _WIDE_GRAY_MODES:
    return np.asarray(image), mode, alpha
  if mode in ('RGBA', 'RGBX', 'RGBa', 'P', 'PA'):
    image = image.convert('RGB')
  elif mode in ('LA', 'La'):
    image = image.convert('L')
  icc = image.info.get('icc_profile')
  converted = None
  if icc and image.mode in ('RGB', 'L', 'CMYK'):
    converted = _to_srgb(image, icc)
  if converted is not None:
    image = converted
  elif image.mode != 'RGB':   # (convert to the same mode would copy)
    image = image.convert('RGB')
  return np.asarray(image, np.uint8), 'RGB', alpha


def _stretch(values: np.ndarray) -> np.ndarray:
  """Any real (H, W) -> float32 in [0, 255] by its own finite min..max."""
  values = values.astype(np.float32)
  finite = np.isfinite(values)
  if not finite.any():
    return np.zeros(values.shape, np.float32)
  low, high = values[finite].min(), values[finite].max()
  values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
  if high == low:
    return np.full(values.shape, 255.0 if low > 0 else 0.0, np.float32)
  return ((values - low) * (255.0 / (float(high) - float(low)))).astype(
      np.float32)


def wide_gray_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
  """(H, W) raw values of mode 'I;16*', 'I' or 'F' -> (H, W) uint8, by the
  rules in the module docstring (rounded, never clipped)."""
  if mode.startswith('I;16'):
    scaled = values.astype(np.float32) / np.float32(257.0)
  elif mode == 'I':   # int32; float32 keeps 1e-5 of a level of its range
    if values.size and values.min() >= 0 and values.max() <= 65535:
      scaled = values.astype(np.float32) / np.float32(257.0)
    else:
      scaled = _stretch(values)
  elif mode == 'F':
    floats = values.astype(np.float32)
    if (floats.size and np.isfinite(floats).all() and floats.min() >= 0 and
        floats.max() <= 1):
      scaled = floats * np.float32(255.0)
    else:
      scaled = _stretch(floats)
  else:
    raise ValueError(f'not a wide gray mode: {mode}')
  return np.round(scaled).astype(np.uint8)


def decode_image_and_alpha(
    data: bytes, *, name: str = '<bytes>',
    max_pixels: int = MAX_IMAGE_PIXELS,
    draft_size: tuple[int, int] | None = None,
    want_alpha: bool = True) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """Encoded image bytes -> ((H, W, 3) uint8 sRGB, (H, W) uint8 alpha or
  None). The alpha (RGBA, LA, transparent palette) gets the same EXIF
  orientation as the colour; the colour is not composited over anything.

  Args:
    data: the encoded file contents.
    name: the file's name or path, used in error messages.
    max_pixels: refuse images with more pixels than this (from the header).
    draft_size: if given, JPEGs may be decoded at a reduced size of at least
      this (width, height) (fast thumbnails, e.g. for colourfulness filters).
    want_alpha: False skips extracting the alpha (always None then).

  Raises:
    ImageTooLargeError: more than ``max_pixels`` (an ImageDecodeError).
    ImageDecodeError: empty, not an allowed format, truncated, corrupt.
  """
  if not data:
    raise ImageDecodeError(f'{name}: empty file')
  if len(data) > MAX_FILE_BYTES:
    raise ImageDecodeError(f'{name}: file has {len(data)} bytes, more than '
                           f'the limit of {MAX_FILE_BYTES}')
  try:
    with warnings.catch_warnings():
      # Our own check refuses bombs with a clear message; corrupt-EXIF and
      # truncation warnings would repeat for every read of the same file.
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      warnings.simplefilter('ignore', UserWarning)
      values, mode, alpha = _pillow_decode(data, name, max_pixels, draft_size,
                                           want_alpha)
  except (ImageDecodeError, MemoryError):
    raise
  except Image.DecompressionBombError as error:   # PIL's own, above ~179 MP
    raise ImageTooLargeError(f'{name}: {first_line(error)}') from None
  except Image.UnidentifiedImageError:
    raise ImageDecodeError(
        f'{name}: cannot decode image (not a recognised image format; '
        f'allowed: {", ".join(ALLOWED_FORMATS)})') from None
  except Exception as error:  # pylint: disable=broad-except
    # Pillow's plugins raise OSError, ValueError, SyntaxError, EOFError,
    # struct.error, IndexError, KeyError, TypeError, ... on crafted input.
    raise ImageDecodeError(
        f'{name}: cannot decode image ({first_line(error)})') from None
  if mode != 'RGB':
    values = np.repeat(wide_gray_to_uint8(values, mode)[..., None], 3, -1)
  if values.ndim != 3 or values.shape[-1] != 3:
    raise ImageDecodeError(f'{name}: decoded to shape {values.shape}, '
                           'expected (H, W, 3)')
  if alpha is not None and alpha.shape != values.shape[:2]:
    raise ImageDecodeError(f'{name}: alpha channel is {alpha.shape}, colour '
                           f'is {values.shape[:2]}')
  return np.ascontiguousarray(values), alpha


def decode_image(data: bytes, *, name: str = '<bytes>',
                 max_pixels: int = MAX_IMAGE_PIXELS,
                 draft_size: tuple[int, int] | None = None) -> np.ndarray:
  """Encoded JPEG/PNG/WebP/... bytes -> (H, W, 3) uint8 sRGB (alpha
  dropped); see ``decode_image_and_alpha``.

  Raises:
    ImageDecodeError: empty, not an image, truncated, too large, bad mode.
  """
  return decode_image_and_alpha(data, name=name, max_pixels=max_pixels,
                                draft_size=draft_size, want_alpha=False)[0]


def read_image(path: str | os.PathLike, *,
               max_pixels: int = MAX_IMAGE_PIXELS,
               draft_size: tuple[int, int] | None = None) -> np.ndarray:
  """Reads and decodes an image file -> (H, W, 3) uint8 sRGB.

  Raises:
    ImageDecodeError: missing, unreadable, not a regular file, oversized or
      undecodable file.
  """
  path = os.fspath(path)
  return decode_image(read_file_bytes(path), name=path, max_pixels=max_pixels,
                      draft_size=draft_size)


def read_image_and_alpha(path: str | os.PathLike, *,
                         max_pixels: int = MAX_IMAGE_PIXELS
                         ) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """Reads an image file -> ((H, W, 3) uint8 sRGB, (H, W) uint8 alpha or
  None); see ``decode_image_and_alpha``."""
  path = os.fspath(path)
  return decode_image_and_alpha(read_file_bytes(path), name=path,
                                max_pixels=max_pixels)


def to_float01(pixels: np.ndarray) -> np.ndarray:
  """uint8 (..., 3) -> float32 in [0, 1]."""
  return pixels.astype(np.float32) * np.float32(1.0 / 255.0)
