"""app_requests.py: one web-app request (``Colouriser``) without gradio,
so these run without the app extra: the bfloat16 offer, the input-pixel cap
checked from the header, the preview shrunk before its conversion. The tiny
model and photos are shared with tests/app_test.py (the served page)."""

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from scsnet_jax import app_requests, color
from scsnet_jax.inference import runner as runner_lib
from scsnet_jax.export import writer as export
from scsnet_jax.models.generator import Generator
from tests.export.tiny import TINY
from tests.export.tiny import config_dict as _config_dict

TILE = 128        # the app's tests tile like ``predict --tile 128``


_RNG = np.random.default_rng(1)


def _random_leaf(leaf):
  """He-normal kernels, small biases, attention gammas of 0.5 (so attention,
  and with it the reference, counts); numpy, so nothing is compiled (an
  eager nnx init of even the tiny model takes a minute on 2 busy cores)."""
  if len(leaf.shape) >= 2:
    fan_in = int(np.prod(leaf.shape[:-1]))
    return _RNG.normal(0, fan_in ** -0.5, leaf.shape).astype(leaf.dtype)
  if not leaf.shape:
    return np.asarray(0.5, leaf.dtype)
  return _RNG.normal(0, 0.01, leaf.shape).astype(leaf.dtype)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
  """An export folder with the tiny referential model's parameters only (no
  serialized artifacts: nothing to compile), as predict and app load it."""
  abstract = nnx.eval_shape(lambda: Generator(TINY, rngs=nnx.Rngs(0)))
  params = jax.tree.map(_random_leaf, nnx.split(abstract)[1].to_pure_dict())
  path = str(tmp_path_factory.mktemp('model') / 'tiny')
  export.export_generator(None, params, _config_dict(TINY), path, modes=())
  return path


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  """A colour 20x28 (HxW) photo, a gray 40x136 one (two tiles of 128), a
  colour reference."""
  folder = tmp_path_factory.mktemp('photos')
  rng = np.random.default_rng(0)
  paths = {'colour': folder / 'colour.png', 'wide': folder / 'wide.png',
           'reference': folder / 'reference.png'}
  Image.fromarray(rng.integers(0, 256, (20, 28, 3), np.uint8)).save(
      paths['colour'])
  yy, xx = np.mgrid[0:40, 0:136]
  wide = (128 + 60 * np.sin(xx / 7.0) * np.cos(yy / 5.0)).astype(np.uint8)
  Image.fromarray(wide).save(paths['wide'])
  reference = np.zeros((16, 16, 3), np.uint8)
  reference[..., 0], reference[..., 2] = 230, 40   # strongly red
  Image.fromarray(reference).save(paths['reference'])
  return {name: str(path) for name, path in paths.items()}


def _pixels(path):
  return np.asarray(Image.open(path))


def test_bfloat16_only_where_offered(checkpoint, photos):
  runner = runner_lib.load_runner(checkpoint, dtype='float32', tile=TILE,
                                  tile_overlap=32)
  plain = app_requests.Colouriser(runner, offer_bfloat16=False)
  offered = app_requests.Colouriser(runner, offer_bfloat16=True)
  try:
    with pytest.raises(app_requests.RequestError, match='bfloat16'):
      plain.colourise(photos['colour'], scale=2.5, bfloat16=True)
    low = offered.colourise(photos['colour'], scale=2.5, bfloat16=True)
    full = offered.colourise(photos['colour'], scale=2.5)
    assert 'bfloat16' in low.summary and 'float32' in full.summary
    difference = np.abs(_pixels(low.png_path).astype(int) -
                        _pixels(full.png_path))
    assert difference.mean() < 8   # bfloat16 keeps ~3 significant digits
  finally:
    plain.close()
    offered.close()


def test_uploads_over_the_pixel_cap_are_refused_before_decoding(
    checkpoint, photos, monkeypatch):
  from PIL import ImageFile
  runner = runner_lib.load_runner(checkpoint, dtype='float32', tile=TILE,
                                  tile_overlap=32)
  colouriser = app_requests.Colouriser(runner, offer_bfloat16=False,
                                       max_input_pixels=559)   # 28x20 = 560

  def no_decoding(self):
    raise AssertionError('pixels were decoded')
  monkeypatch.setattr(ImageFile.ImageFile, 'load', no_decoding)
  try:
    with pytest.raises(app_requests.RequestError) as error:
      colouriser.colourise(photos['colour'])
    assert str(error.value) == (
        'colour.png: 28x20 = 560 pixels, more than this page accepts (559; '
        '--max-input-pixels)')
    with pytest.raises(app_requests.RequestError, match='^colour.png: 28x20'):
      colouriser.preview(photos['colour'])
    colouriser.max_input_pixels = 255
    with pytest.raises(app_requests.RequestError,
                       match='^reference reference.png: 16x16 = 256 pixels'):
      colouriser._read_reference(photos['reference'])
  finally:
    colouriser.close()


def test_preview_is_shrunk_before_the_conversion(checkpoint, tmp_path,
                                                 monkeypatch):
  runner = runner_lib.load_runner(checkpoint, dtype='float32', tile=TILE,
                                  tile_overlap=32)
  colouriser = app_requests.Colouriser(runner, offer_bfloat16=False)
  yy, xx = np.mgrid[0:600, 0:1500]
  gray = ((xx // 30 + yy // 30) % 2 * 180 + 40).astype(np.uint8)
  Image.fromarray(gray).save(tmp_path / 'wide.png')
  converted = []
  convert = color.rgb8_to_gray
  monkeypatch.setattr(app_requests.color, 'rgb8_to_gray',
                      lambda pixels: converted.append(pixels.shape) or
                      convert(pixels))
  try:
    seen, _, (out_width, out_height) = colouriser.preview(
        str(tmp_path / 'wide.png'), 2.0)
  finally:
    colouriser.close()
  assert converted == [(410, 1024, 3)] and seen.shape == (410, 1024, 3)
  assert (out_width, out_height) == (3000, 1200)   # from the full size
  want = np.asarray(Image.fromarray(gray).resize((1024, 410),
                                                 Image.Resampling.BOX))
  assert np.abs(seen[..., 0].astype(int) - want).max() <= 1
