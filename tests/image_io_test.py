"""image_io reading: PIL modes, 16-bit gray, EXIF."""

import numpy as np
import pytest
from PIL import Image
from skimage import color as skcolor

from scsnet_jax import color
from scsnet_jax.inference import predictor as predictor_lib


def _rgb(height, width, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3),
                                              np.uint8)


def _skimage_l(rgb_uint8):
  return skcolor.rgb2lab(rgb_uint8 / 255.0)[..., 0] / 50.0 - 1.0


@pytest.mark.parametrize('mode', ['RGB', 'RGBA', 'LA', 'L', 'P', 'CMYK'])
def test_pil_modes_give_their_l_channel(tmp_path, mode):
  image = Image.fromarray(_rgb(9, 11, 4)).convert(mode)
  path = tmp_path / ('x.tif' if mode == 'CMYK' else 'x.png')
  image.save(path)
  got = color.rgb8_to_gray(image_io.read_image(path))[..., 0]
  want = _skimage_l(np.asarray(Image.open(path).convert('RGB')))
  np.testing.assert_allclose(got, want, atol=1e-4)


def test_16_bit_gray_keeps_its_range(tmp_path):
  wide = np.random.default_rng(5).integers(0, 65536, (9, 11), np.uint16)
  Image.fromarray(wide).save(tmp_path / 'deep.png')
  assert Image.open(tmp_path / 'deep.png').mode.startswith('I')
  got = color.rgb8_to_gray(image_io.read_image(tmp_path / 'deep.png'))
  gray = np.repeat((wide / 65535.0)[..., None], 3, axis=-1)
  want = skcolor.rgb2lab(gray)[..., 0] / 50.0 - 1.0
  np.testing.assert_allclose(got[..., 0], want, atol=0.01)  # 8-bit decode


def test_exif_orientation_is_applied(tmp_path):
  yy, xx = np.mgrid[0:8, 0:12]
  pixels = np.stack([yy * 30, xx * 20, 255 - xx * 20], -1).astype(np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 6   # stored landscape, shown rotated 90 degrees clockwise
  Image.fromarray(pixels).save(tmp_path / 'phone.jpg', exif=exif, quality=100,
                               subsampling=0)
  shown = image_io.read_image(tmp_path / 'phone.jpg')
  assert shown.shape == (12, 8, 3)
  rotated = np.rot90(pixels, k=-1)
  assert np.abs(shown.astype(int) - rotated).mean() < 8   # JPEG loss only


# ------------------------------------------------ one decoder, any bytes ---
# Everything below goes through image_io's one decoding function, the one
# predict, the app and the data pipeline use.
import io
import struct
import subprocess
import time

from PIL import ImageCms, ImageOps, TiffTags

from scsnet_jax import image_io


def _encoded(image, fmt, **kwargs):
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **kwargs)
  return buffer.getvalue()


def _exif_block(entries):
  """Big-endian EXIF APP1 payload from (tag, type, count, 4 value bytes)."""
  ifd = struct.pack('>2sHI', b'MM', 42, 8) + struct.pack('>H', len(entries))
  for tag, kind, count, value in entries:
    ifd += struct.pack('>HHI4s', tag, kind, count, value)
  return b'Exif\0\0' + ifd + struct.pack('>I', 0)


def _seed_files():
  """Small valid files of every allowed format (JPEG, PNG, WebP, TIFF, GIF,
  BMP), with the parts crafted files attack: EXIF (with orientation), an
  ICC profile, alpha, palette, LZW."""
  rng = np.random.default_rng(7)
  rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8))
  srgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes()
  exif = _exif_block([(0x0100, 4, 1, b'\0\0\0\x10'), (0x010F, 2, 4, b'Cam\0'),
                      (0x0112, 3, 1, b'\0\6\0\0'), (0x0131, 2, 3, b'sw\0\0')])
  rgba = rgb.convert('RGBA')
  rgba.putalpha(Image.fromarray(rng.integers(0, 256, (12, 16), np.uint8)))
  return {
      'jpg': _encoded(rgb, 'JPEG', exif=exif, icc_profile=srgb_icc,
                      quality=90),
      'png': _encoded(rgba, 'PNG', icc_profile=srgb_icc),
      'webp': _encoded(rgba, 'WEBP', quality=80),
      'tif': _encoded(rgb, 'TIFF', compression='tiff_lzw', exif=exif),
      'gif': _encoded(rgb.convert('P'), 'GIF', transparency=3),
      'bmp': _encoded(rgb, 'BMP'),
  }


_SOME_TAGS = sorted(TiffTags.TAGS_V2)


def _mutate(data, rng):
  """Byte flips (half of them in the first 160 bytes: headers, EXIF),
  a truncation, an inserted chunk (random bytes or a copied slice), or an
  EXIF entry given another known tag, type or count (what parsers trust)."""
  data = bytearray(data)
  kind = rng.integers(5)
  exif = data.find(b'Exif\0\0MM')
  if kind == 4 and exif >= 0:
    first = exif + 16   # the big-endian IFD's first entry
    count = struct.unpack('>H', data[first - 2:first])[0]
    entry = first + 12 * int(rng.integers(max(count, 1)))
    field = rng.integers(3)
    if field == 0:
      data[entry:entry + 2] = struct.pack('>H', rng.choice(_SOME_TAGS))
    elif field == 1:
      data[entry + 2:entry + 4] = struct.pack('>H', rng.integers(1, 13))
    else:
      data[entry + 4:entry + 8] = struct.pack('>I', rng.integers(0, 9))
    return bytes(data)
  kind = kind % 4
  if kind in (0, 3):
    for _ in range(rng.integers(1, 5)):
      limit = min(len(data), 160) if rng.random() < 0.5 else len(data)
      data[rng.integers(limit)] = rng.integers(256)
  if kind in (1, 3):
    del data[rng.integers(1, len(data)):]
  if kind == 2:
    at = int(rng.integers(len(data)))
    if rng.random() < 0.5:
      chunk = bytes(rng.integers(0, 256, rng.integers(1, 24), np.uint8))
    else:
      start = int(rng.integers(len(data)))
      chunk = bytes(data[start:start + int(rng.integers(1, 64))])
    data[at:at] = chunk
  return bytes(data)


def test_fuzzed_files_only_ever_raise_image_decode_error():
  start = time.perf_counter()
  outcomes = {'decoded': 0, 'refused': 0}
  unexpected = []
  for number, (suffix, seed) in enumerate(sorted(_seed_files().items())):
    for trial in range(150):
      data = _mutate(seed, np.random.default_rng([number, trial]))
      try:
        pixels, alpha = image_io.decode_image_and_alpha(
            data, name=f'fuzz{trial}.{suffix}', max_pixels=1 << 16)
      except image_io.ImageDecodeError as error:
        assert '\n' not in str(error) and f'fuzz{trial}.{suffix}' in str(error)
        outcomes['refused'] += 1
        continue
      except Exception as error:  # pylint: disable=broad-except
        unexpected.append(f'{suffix} trial {trial}: {type(error).__name__}: '
                          f'{error}')
        continue
      assert pixels.dtype == np.uint8 and pixels.ndim == 3
      assert pixels.shape[-1] == 3
      assert alpha is None or alpha.shape == pixels.shape[:2]
      outcomes['decoded'] += 1
  assert not unexpected, unexpected
  # Both outcomes are common, so the mutations reach the decoders.
  assert min(outcomes.values()) > 40, outcomes
  assert time.perf_counter() - start < 20


def _jpeg_whose_exif_breaks_exif_transpose():
  """Found by the fuzzer above: tag 0x0116 (RowsPerStrip, a number) stored
  as ASCII; Pillow reads it, but ``exif_transpose`` re-encodes the block and
  ``struct.pack`` fails. Orientation 6 (rotate 90 degrees clockwise)."""
  yy, xx = np.mgrid[0:8, 0:12]
  pixels = np.stack([yy * 30, xx * 20, 255 - xx * 20], -1).astype(np.uint8)
  exif = _exif_block([(0x0112, 3, 1, b'\0\6\0\0'), (0x0116, 2, 4, b'Cam\0')])
  return pixels, _encoded(Image.fromarray(pixels), 'JPEG', exif=exif,
                          quality=100, subsampling=0)


def test_malformed_exif_is_ignored_and_orientation_still_applied(tmp_path):
  pixels, data = _jpeg_whose_exif_breaks_exif_transpose()
  with Image.open(io.BytesIO(data)) as image:   # the old code path
    with pytest.raises(struct.error):
      ImageOps.exif_transpose(image)
  (tmp_path / 'phone.jpg').write_bytes(data)
  for shown, alpha in [image_io.read_image_and_alpha(tmp_path / 'phone.jpg'),
                       (image_io.read_image(tmp_path / 'phone.jpg'), None)]:
    assert alpha is None and shown.shape == (12, 8, 3)
    assert np.abs(shown.astype(int) - np.rot90(pixels, k=-1)).mean() < 8


_EPS = (b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n'
        b'newpath 0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n')


def test_postscript_named_jpg_never_reaches_ghostscript(tmp_path, monkeypatch):
  from PIL import EpsImagePlugin
  calls = []

  def refuse(*args, **kwargs):
    calls.append(args)
    raise AssertionError('an external program was started')

  monkeypatch.setattr(EpsImagePlugin, 'has_ghostscript', lambda: True)
  monkeypatch.setattr(EpsImagePlugin, 'Ghostscript', refuse)
  monkeypatch.setattr(subprocess, 'Popen', refuse)
  monkeypatch.setattr(subprocess, 'check_call', refuse)
  (tmp_path / 'photo.jpg').write_bytes(_EPS)
  with pytest.raises(image_io.ImageDecodeError, match=r'photo\.jpg: cannot '
                     r'decode image \(not a recognised image format; allowed'):
    image_io.read_image_and_alpha(tmp_path / 'photo.jpg')
  with pytest.raises(image_io.ImageDecodeError):
    image_io.decode_image(_EPS, name='photo.jpg')
  assert not calls


# ------------------------------------------------------ odd modes, ICC ---
def _gray3(levels):
  """(H, W) expected levels -> the (H, W, 3) uint8 the decoder returns."""
  return np.repeat(np.asarray(levels, np.uint8)[..., None], 3, axis=-1)


def _stretched(values):
  values = np.asarray(values, np.float64)
  return np.round((values - values.min()) * 255 / np.ptp(values))


@pytest.mark.parametrize('fmt', ['PNG', 'TIFF'])
def test_16_bit_gray_is_divided_by_257(fmt):
  wide = np.random.default_rng(5).integers(0, 65536, (9, 11), np.uint16)
  data = _encoded(Image.fromarray(wide), fmt)
  assert Image.open(io.BytesIO(data)).mode in ('I', 'I;16')
  np.testing.assert_array_equal(image_io.decode_image(data),
                                _gray3(np.round(wide / 257.0)))


def test_32_bit_int_tiff_maps_by_its_real_range():
  rng = np.random.default_rng(6)
  # Values within 0..65535 are 16-bit data in a 32-bit container.
  sixteen = rng.integers(0, 65536, (9, 11)).astype(np.int32)
  image = Image.fromarray(sixteen)
  assert image.mode == 'I'
  np.testing.assert_array_equal(
      image_io.decode_image(_encoded(image, 'TIFF')),
      _gray3(np.round(sixteen / 257.0)))
  # A genuine 32-bit range (was divided by 257 and clipped: white).
  wide = rng.integers(-2**31, 2**31 - 1, (9, 11), dtype=np.int64)
  wide[0, 0], wide[0, 1] = -2**31, 2**31 - 1
  got = image_io.decode_image(_encoded(Image.fromarray(wide.astype(np.int32)),
                                       'TIFF'))
  np.testing.assert_allclose(got[..., 0], _stretched(wide), atol=1)
  assert got[..., 0].std() > 50


def test_float_images_are_scaled_not_clipped():
  rng = np.random.default_rng(8)
  unit = rng.random((9, 11)).astype(np.float32)
  unit[0, 0], unit[0, 1] = 0.0, 1.0
  np.testing.assert_allclose(
      image_io.decode_image(_encoded(Image.fromarray(unit), 'TIFF'))[..., 0],
      np.round(unit.astype(np.float64) * 255), atol=1)
  wide = (rng.random((9, 11)) * 700 - 3).astype(np.float32)
  wide[1, 1] = np.nan
  got = image_io.decode_image(_encoded(Image.fromarray(wide), 'TIFF'))[..., 0]
  finite = np.where(np.isnan(wide), np.nanmin(wide), wide)
  np.testing.assert_allclose(got, _stretched(finite), atol=1)
  assert got[1, 1] == 0


def _s15(value):
  return struct.pack('>i', int(round(value * 65536)))


def _linear_rgb_icc():
  """A minimal ICC v2 display profile: sRGB primaries (D50-adapted), but a
  linear tone curve (gamma 1.0), so its values are linear light."""
  def xyz(v):
    return b'XYZ \0\0\0\0' + b''.join(_s15(c) for c in v)
  curve = b'curv\0\0\0\0' + struct.pack('>IHH', 1, 256, 0)   # gamma 1.0
  tags = [(b'wtpt', xyz((0.9642, 1.0, 0.8249))),
          (b'rXYZ', xyz((0.4361, 0.2225, 0.0139))),
          (b'gXYZ', xyz((0.3851, 0.7169, 0.0971))),
          (b'bXYZ', xyz((0.1431, 0.0606, 0.7141))),
          (b'rTRC', curve), (b'gTRC', curve), (b'bTRC', curve)]
  table, body, offset = b'', b'', 128 + 4 + 12 * len(tags)
  for signature, data in tags:
    table += signature + struct.pack('>II', offset + len(body), len(data))
    body += data + b'\0' * (-len(data) % 4)
  header = (struct.pack('>I4sI', offset + len(body), b'\0' * 4, 0x02100000) +
            b'mntrRGB XYZ ' + b'\0' * 12 + b'acsp' + b'\0' * 28 +
            _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b'\0' * 48)
  return header + struct.pack('>I', len(tags)) + table + body


def test_embedded_icc_profile_is_converted_to_srgb():
  rng = np.random.default_rng(9)
  pixels = rng.integers(0, 256, (6, 10, 3), np.uint8)
  pixels[0, :, :] = np.arange(0, 250, 25, dtype=np.uint8)[:, None]   # grays
  image = Image.fromarray(pixels)
  icc = _linear_rgb_icc()
  got = image_io.decode_image(_encoded(image, 'PNG', icc_profile=icc))
  # ImageCms's own transform, applied independently ...
  want = ImageCms.profileToProfile(
      image, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
      ImageCms.createProfile('sRGB'), outputMode='RGB')
  np.testing.assert_array_equal(got, np.asarray(want))
  # ... and the sRGB encoding of linear gray values, re-derived with numpy.
  linear = pixels[0, :, 0] / 255.0
  encoded = np.where(linear <= 0.0031308, 12.92 * linear,
                     1.055 * linear**(1 / 2.4) - 0.055) * 255
  np.testing.assert_allclose(got[0].astype(float), encoded[:, None] *
                             np.ones(3), atol=1.5)
  assert np.abs(got.astype(int) - pixels).max() > 40   # not the raw values


def test_srgb_profile_is_identity_and_a_broken_profile_is_ignored():
  pixels = np.random.default_rng(10).integers(0, 256, (6, 10, 3), np.uint8)
  image = Image.fromarray(pixels)
  srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes()
  got = image_io.decode_image(_encoded(image, 'PNG', icc_profile=srgb))
  assert np.abs(got.astype(int) - pixels).max() <= 1
  # (an sRGB profile is recognised and not converted: identity, and fast)
  assert image_io._is_srgb(srgb) and not image_io._is_srgb(_linear_rgb_icc())
  converted = ImageCms.profileToProfile(
      image, ImageCms.ImageCmsProfile(io.BytesIO(srgb)),
      ImageCms.createProfile('sRGB'), outputMode='RGB')
  assert np.abs(np.asarray(converted, int) - pixels).max() <= 1
  for broken in (b'not a profile' * 20, _linear_rgb_icc()[:200]):
    np.testing.assert_array_equal(
        image_io.decode_image(_encoded(image, 'PNG', icc_profile=broken)),
        pixels)
