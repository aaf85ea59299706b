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


# ------------------------------------------------------------ issue 32 ---
def _colouriser(checkpoint, **kwargs):
  runner = runner_lib.load_runner(checkpoint, dtype='float32', tile=TILE,
                                  tile_overlap=32)
  kwargs.setdefault('seconds_per_tile', 1.0)
  return app_requests.Colouriser(runner, offer_bfloat16=False, **kwargs)


def _spy_windows(monkeypatch, on_window=None):
  """Counts the windows the model computes (``Predictor._render_window``)."""
  from scsnet_jax.inference import predictor as predictor_lib
  shapes = []
  real = predictor_lib.Predictor.predict_nlab

  def predict(self, gray, reference, out_size, interrupt=None):
    def counted():
      if interrupt is not None:
        interrupt()
      shapes.append(gray.shape)
      if on_window is not None:
        on_window(len(shapes))
    return real(self, gray, reference, out_size, counted)
  monkeypatch.setattr(predictor_lib.Predictor, 'predict_nlab', predict)
  return shapes


def test_a_request_over_the_time_budget_is_refused_before_it_runs(
    checkpoint, photos, monkeypatch):
  """136x40 at x3 runs in 2 windows (tile 128): at 600 s a window (a
  rate far above the real one, so the deadline never stops the run on a
  busy machine), over a 1000 s budget; the measured rate sets the budget."""
  colouriser = _colouriser(checkpoint, seconds_per_tile=600.0,
                           max_request_seconds=1000)
  windows = _spy_windows(monkeypatch)
  try:
    with pytest.raises(app_requests.RequestError) as error:
      colouriser.colourise(photos['wide'], scale=3)
    assert windows == []
    message = str(error.value)
    assert message.startswith('136x40 -> 408x120 would take about 1200 s '
                              'here (2 window(s), 600 s each)'), message
    assert '--max-request-seconds' in message
    colouriser.max_request_seconds = 1300
    assert colouriser.colourise(photos['wide'], scale=3).png_path
    assert len(windows) == 2
  finally:
    colouriser.close()
  measured = app_requests.measure_seconds_per_tile(colouriser.runners[
      'float32'])
  assert 0 < measured < 60


def test_an_input_much_larger_than_the_output_is_reduced_first(
    checkpoint, tmp_path, monkeypatch):
  """A 1024x1024 one-colour PNG (a few KB) asked for at 32x32: 81 windows
  of 128 before; now the model sees 32x32, in one window."""
  Image.fromarray(np.full((1024, 1024), 90, np.uint8)).save(
      tmp_path / 'flat.png')
  colouriser = _colouriser(checkpoint, seconds_per_tile=600.0,
                           max_request_seconds=1000)
  windows = _spy_windows(monkeypatch)
  try:
    result = colouriser.colourise(str(tmp_path / 'flat.png'),
                                  target='Exact size', out_width=32,
                                  out_height=32)
    assert _pixels(result.png_path).shape == (32, 32, 3)
  finally:
    colouriser.close()
  assert windows == [(1, 32, 32, 1)]
  assert 'reduced to 32x32' in result.summary
  shrunk, _, reduced = app_requests.reduce_input(
      np.zeros((100, 80, 3), np.uint8), None, (50, 40))   # 4x: kept
  assert not reduced and shrunk.shape == (100, 80, 3)


def test_the_deadline_stops_a_running_request(checkpoint, photos,
                                              monkeypatch):
  """The estimate can be wrong (a busy machine): the deadline is checked
  before every window."""
  colouriser = _colouriser(checkpoint, seconds_per_tile=0.0,
                           max_request_seconds=30)
  clock = [0.0]
  monkeypatch.setattr(app_requests.time, 'perf_counter', lambda: clock[0])

  def slow(count):
    clock[0] += 31   # the first window took 31 s
  windows = _spy_windows(monkeypatch, slow)
  try:
    with pytest.raises(app_requests.RequestError,
                       match='stopped after 30 s.*--max-request-seconds'):
      colouriser.colourise(photos['wide'], scale=1.5)
  finally:
    colouriser.close()
  assert len(windows) == 1   # of 2


def test_cancel_stops_the_request_and_frees_the_worker(checkpoint, photos,
                                                       monkeypatch):
  colouriser = _colouriser(checkpoint)
  other_session = []

  def cancel_during_the_first_window(count):
    other_session.append(colouriser.cancel('someone else'))
    assert colouriser.cancel('me')
  windows = _spy_windows(monkeypatch, cancel_during_the_first_window)
  try:
    with pytest.raises(app_requests.RequestError, match='^cancelled$'):
      colouriser.colourise(photos['wide'], scale=1.5, session='me')
    assert len(windows) == 1 and other_session == [False]
    assert not colouriser.cancel('me')   # nothing running any more
    monkeypatch.undo()
    result = colouriser.colourise(photos['wide'], scale=1.5, session='me')
    assert _pixels(result.png_path).shape == (60, 204, 3)
  finally:
    colouriser.close()
