"""The web app as its users meet it: its real HTTP server on a free
localhost port, called by gradio_client and by headless Chromium. One tiny
model and one server for the module (in this process, so the compiled
shapes are shared with the in-process checks)."""

import os
import socket
import struct
import zlib

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

gradio_client = pytest.importorskip(
    'gradio_client', reason="the web app's extra is not installed "
    "(pip install -e '.[app]')")
pytest.importorskip('gradio', reason="the web app's extra is not installed "
                    "(pip install -e '.[app]')")

from scsnet_jax import app, app_requests, predict  # noqa: E402
from scsnet_jax.export import writer as export  # noqa: E402
from scsnet_jax.models.generator import Generator  # noqa: E402
from scsnet_jax.tools import app_screenshot  # noqa: E402
from tests.export.tiny import TINY  # noqa: E402
from tests.export.tiny import config_dict as _config_dict  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
TILE = 128        # the server tiles like ``predict --tile 128``


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


def _free_port() -> int:
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


@pytest.fixture(scope='module')
def server(checkpoint):
  """The app's real HTTP server (``app.serve``, as ``python -m
  scsnet_jax.app`` runs it) in this process's threads, on a free port."""
  port = _free_port()
  args = app.parse_args(['--checkpoint', checkpoint, '--port', str(port),
                         '--tile', str(TILE)])
  page, colouriser = app.serve(args, block=False)
  try:
    yield f'http://127.0.0.1:{port}/'
  finally:
    page.close()
    colouriser.close()


@pytest.fixture(scope='module')
def client(server, tmp_path_factory):
  return gradio_client.Client(
      server, download_files=str(tmp_path_factory.mktemp('downloads')),
      verbose=False)


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


def _colourise(client, image, reference=None, target='Scale', scale=4.0,
               width=None, height=None):
  handle = gradio_client.handle_file
  return client.predict(handle(image), reference and handle(reference),
                        target, scale, width, height, False,
                        api_name='/colourise')


def _pixels(path):
  return np.asarray(Image.open(path))


def test_fractional_scale_gives_rounded_size_and_says_gray(client, photos):
  result, bicubic, download, summary = _colourise(client, photos['colour'],
                                                  scale=2.5)
  assert _pixels(result).shape == (50, 70, 3)    # round(2.5 * 20, 2.5 * 28)
  np.testing.assert_array_equal(_pixels(download), _pixels(result))
  assert os.path.basename(download) == 'colour_colour.png'
  assert '28x20 -> 70x50' in summary and 'automatic' in summary
  assert 'converted to gray' in summary
  seconds = float(summary.rsplit('**', 2)[-2].split()[0])
  assert 0 < seconds < 600
  # The comparison is the gray photo enlarged bicubically: gray, and within
  # a few levels of PIL's bicubic of the photo's lightness.
  shown = _pixels(bicubic)[..., :3].astype(int)
  assert shown.shape == (50, 70, 3)
  assert (shown.max(-1) - shown.min(-1)).max() <= 1
  lightness = app_requests._gray_rgb(app_requests.inference.gray_from_rgb(
      _pixels(photos['colour'])))[..., 0]
  pil = np.asarray(Image.fromarray(lightness).resize(
      (70, 50), Image.Resampling.BICUBIC), int)
  assert np.abs(shown[..., 0] - pil)[4:-4, 4:-4].mean() < 3


def test_exact_size(client, photos):
  result, bicubic, _, summary = _colourise(
      client, photos['colour'], target='Exact size', width=33, height=17)
  assert _pixels(result).shape == (17, 33, 3)
  assert _pixels(bicubic).shape[:2] == (17, 33)
  assert '28x20 -> 33x17' in summary


def test_reference_changes_the_output(client, photos):
  automatic = _pixels(_colourise(client, photos['colour'], scale=2.5)[0])
  result, _, _, summary = _colourise(client, photos['colour'],
                                     photos['reference'], scale=2.5)
  guided = _pixels(result)
  assert guided.shape == automatic.shape
  assert 'guided by the reference' in summary
  assert np.abs(guided.astype(int) - automatic).mean() > 0.5


def test_tiled_result_is_the_predict_cli_result(client, photos, checkpoint,
                                                tmp_path, capsys):
  result, _, _, summary = _colourise(client, photos['wide'], scale=1.5)
  assert '136x40 -> 204x60' in summary and '2 tile(s)' in summary
  code = predict.main(['--checkpoint', checkpoint, '--input', photos['wide'],
                       '--output', str(tmp_path), '--scale', '1.5',
                       '--tile', str(TILE)])
  assert code == 0, capsys.readouterr().err
  np.testing.assert_array_equal(_pixels(result),
                                _pixels(tmp_path / 'wide.png'))


def _bomb_png(path, side=20000):
  """A PNG header claiming side x side gray pixels, with almost no data."""
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data +
            struct.pack('>I', zlib.crc32(kind + data)))
  header = struct.pack('>IIBBBBB', side, side, 8, 0, 0, 0, 0)
  path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) +
                   chunk(b'IDAT', zlib.compress(b'\0' * (side + 1))) +
                   chunk(b'IEND', b''))


def test_bad_uploads_are_messages_and_the_server_goes_on(client, photos,
                                                         tmp_path):
  data = open(photos['colour'], 'rb').read()
  (tmp_path / 'cut.png').write_bytes(data[:len(data) // 2])
  (tmp_path / 'letter.png').write_text('not an image at all')
  (tmp_path / 'notes.txt').write_text('not an image at all')
  _bomb_png(tmp_path / 'bomb.png')
  expected = {'cut.png': 'truncated', 'letter.png': 'not a recognised image',
              'notes.txt': 'invalid file type', 'bomb.png': 'bomb'}
  for name, words in expected.items():
    with pytest.raises(gradio_client.exceptions.AppError) as caught:
      _colourise(client, str(tmp_path / name))
    message = str(caught.value)
    assert words in message.lower(), (name, message)
    assert '\n' not in message.strip() and 'Traceback' not in message
    assert str(tmp_path) not in message   # no server paths on the page
  with pytest.raises(gradio_client.exceptions.AppError, match='reference'):
    _colourise(client, photos['colour'], str(tmp_path / 'cut.png'))
  with pytest.raises(gradio_client.exceptions.AppError, match='limit'):
    _colourise(client, photos['colour'], scale=5000)
  result = _colourise(client, photos['colour'], scale=2.5)[0]
  assert _pixels(result).shape == (50, 70, 3)


def test_preview_is_the_gray_the_model_sees(client, photos):
  seen, note, width, height = client.predict(
      gradio_client.handle_file(photos['colour']), 2.5, api_name='/preview')
  pixels = _pixels(seen)[..., :3].astype(int)
  assert pixels.shape == (20, 28, 3)
  assert (pixels.max(-1) - pixels.min(-1)).max() <= 1
  assert 'converted to gray' in note
  assert (width, height) == (70, 50)


def test_bad_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
  assert app.main(['--checkpoint', str(tmp_path / 'missing')]) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and err.count('\n') == 1, err
  assert 'missing' in err


def test_every_flag_has_help_and_help_exits_0(capsys):
  with pytest.raises(SystemExit) as exit_info:
    app.main(['--help'])
  assert exit_info.value.code == 0
  text = capsys.readouterr().out
  flags = [a for a in app.build_parser()._actions if a.option_strings]
  assert {'--checkpoint', '--port', '--host', '--tile'} <= {
      f for a in flags for f in a.option_strings}
  for action in flags:
    assert action.help and action.option_strings[-1] in text


def test_bfloat16_only_where_offered(checkpoint, photos):
  runner = predict.load_runner(checkpoint, dtype='float32', tile=TILE,
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


def test_page_in_headless_chromium(server, photos, tmp_path):
  _, _, why_not = app_screenshot.find_browser()
  if why_not:
    pytest.skip(why_not)
  shot = tmp_path / 'page.png'
  run = app_screenshot.run_page(server, photos['colour'], str(shot),
                                scale=2.5, timeout=180)
  assert run.result_size == (70, 50)
  assert '28x20 -> 70x50' in run.summary
  assert run.requests > 10            # the log saw the page load ...
  assert run.foreign_requests == []   # ... and fonts, scripts all from the app
  with Image.open(shot) as image:
    assert image.format == 'PNG' and image.width >= 1000
