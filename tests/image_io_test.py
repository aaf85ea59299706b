"""image_io / inference.files reading: PIL modes, 16-bit gray, EXIF."""

import numpy as np
import pytest
from PIL import Image
from skimage import color as skcolor

from scsnet_jax.inference import files as image_files
from scsnet_jax.inference import tiling as inference


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
  got = inference.gray_from_rgb(image_files.read_image(path))[..., 0]
  want = _skimage_l(np.asarray(Image.open(path).convert('RGB')))
  np.testing.assert_allclose(got, want, atol=1e-4)


def test_16_bit_gray_keeps_its_range(tmp_path):
  wide = np.random.default_rng(5).integers(0, 65536, (9, 11), np.uint16)
  Image.fromarray(wide).save(tmp_path / 'deep.png')
  assert Image.open(tmp_path / 'deep.png').mode.startswith('I')
  got = inference.gray_from_rgb(image_files.read_image(tmp_path / 'deep.png'))
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
  shown = image_files.read_image(tmp_path / 'phone.jpg')
  assert shown.shape == (12, 8, 3)
  rotated = np.rot90(pixels, k=-1)
  assert np.abs(shown.astype(int) - rotated).mean() < 8   # JPEG loss only
