"""The web app as its users meet it: its real HTTP server on a free
localhost port, called by gradio_client and by headless Chromium. One tiny
model and one server for the module (in this process, so the compiled
shapes are shared with the in-process checks)."""

import os
import re
import socket
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip(
    'gradio_client', reason="the web app's extra is not installed "
    "(pip install -e '.[app]')")
pytest.importorskip('gradio', reason="the web app's extra is not installed "
                    "(pip install -e '.[app]')")

from scsnet_jax import app, color, predict  # noqa: E402
from tools import app_screenshot  # noqa: E402
from tests.app_requests_test import TILE, _pixels  # noqa: E402
from tests.app_requests_test import checkpoint, photos  # noqa: E402,F401 (fixtures)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))


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


def _colourise(client, image, reference=None, target='Scale', scale=4.0,
               width=None, height=None):
  handle = gradio_client.handle_file
  return client.predict(handle(image), reference and handle(reference),
                        target, scale, width, height, False,
                        api_name='/colourise')



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
  lightness = color.gray_to_rgb8(color.rgb8_to_gray(
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


def test_queue_is_bounded_and_one_request_decodes_at_a_time(checkpoint,
                                                            monkeypatch):
  import gradio
  calls = {}
  original_queue = gradio.Blocks.queue

  def queue(self, *args, **kwargs):
    calls['queue'] = kwargs
    return original_queue(self, *args, **kwargs)
  monkeypatch.setattr(gradio.Blocks, 'queue', queue)
  monkeypatch.setattr(gradio.Blocks, 'launch',
                      lambda self, **kwargs: calls.setdefault('page', self))
  args = app.parse_args(['--checkpoint', checkpoint, '--max-queue', '3',
                         '--max-input-pixels', '1000'])
  page, colouriser = app.serve(args, block=False)
  colouriser.close()
  assert calls['queue'] == {'max_size': 3, 'default_concurrency_limit': 1}
  assert colouriser.max_input_pixels == 1000
  groups = {fn.api_name: fn.concurrency_id for fn in page.fns.values()}
  assert groups['preview'] == groups['colourise'] is not None
  with pytest.raises(SystemExit):
    app.parse_args(['--checkpoint', checkpoint, '--max-queue', '0'])


# ------------------------------------------------------------ issue 22 ---
def test_start_up_names_the_address_and_offers_no_share_link(
    checkpoint, monkeypatch, capsys):
  """A blocking start (as ``python -m scsnet_jax.app``): our own line, not
  gradio's "To create a public link, set `share=True`"."""
  import gradio  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(gradio.Blocks, 'block_thread', lambda page: page.close())
  monkeypatch.setattr(signal, 'signal', lambda *a: None)  # keep pytest's
  port = _free_port()
  app.serve(app.parse_args(['--checkpoint', checkpoint, '--port', str(port)]))
  out = capsys.readouterr().out
  assert f'Running on http://127.0.0.1:{port}/' in out
  assert 'share' not in out and 'public link' not in out


def readme_client_snippet() -> str:
  with open(os.path.join(ROOT, 'README.md')) as f:
    text = f.read()
  (block,) = re.findall(r'<!-- app-client-snippet:start -->\n```python\n'
                        r'(.*?)```\n<!-- app-client-snippet:end -->', text,
                        flags=re.S)
  return block


def test_readme_gradio_client_snippet_and_documented_api(server, monkeypatch,
                                                         capsys):
  """The README's gradio_client snippet, run against the live server, and
  the endpoints and optional inputs it documents, as the server reports
  them (``Client.view_api``)."""
  code = readme_client_snippet()
  assert 'http://127.0.0.1:7860/' in code
  monkeypatch.chdir(ROOT)   # the snippet names docs/images/chelsea_gray_lr.png
  namespace = {}
  exec(compile(code.replace('http://127.0.0.1:7860/', server), 'README.md',
               'exec'), namespace)
  # The 112x75 sample at x2, the result also downloaded as a PNG.
  assert _pixels(namespace['result']).shape == (150, 224, 3)
  assert '112x75 -> 224x150' in namespace['summary']
  np.testing.assert_array_equal(_pixels(namespace['download']),
                                _pixels(namespace['result']))
  api = namespace['client'].view_api(print_info=False, return_format='dict')
  endpoints = api['named_endpoints']
  assert set(endpoints) == {'/colourise', '/preview'}
  params = {p['parameter_name']: p['parameter_has_default']
            for p in endpoints['/colourise']['parameters']}
  assert list(params) == ['image', 'reference', 'target', 'scale', 'width',
                          'height', 'bfloat16']
  required = [name for name, has_default in params.items() if not has_default]
  assert required == ['image', 'reference', 'width', 'height']  # as README
  preview = [(p['parameter_name'], p['parameter_has_default'])
             for p in endpoints['/preview']['parameters']]
  assert preview == [('image', False), ('scale', True)]


# ------------------------------------------------------------ issue 32 ---
def _upload(url, data: bytes, name='x.png', origin=None):
  import httpx  # gradio's own HTTP client
  headers = {} if origin is None else {'Origin': origin}
  return httpx.post(url + 'gradio_api/upload', headers=headers,
                    files={'files': (name, data, 'image/png')}, timeout=60)


def test_foreign_origins_and_upload_bursts_are_refused(checkpoint):
  """A page on another site could make the browser POST uploads here
  without a preflight: refused. A burst of uploads stops at the cache cap;
  an upload larger than the pixel cap allows is refused from its length;
  the kept uploads never hold more than the cap."""
  from scsnet_jax import app_uploads
  port = _free_port()
  # 1000 pixels: uploads of at most 6000 bytes + 1 MiB of slack; the cache
  # holds that and 300 KB more: three uploads of 400 KB.
  largest = app_uploads.max_upload_bytes(1000)
  cap = largest + 300_000
  args = app.parse_args(['--checkpoint', checkpoint, '--port', str(port),
                         '--tile', str(TILE), '--max-input-pixels', '1000',
                         '--max-upload-cache', str(cap)])
  page, colouriser = app.serve(args, block=False)
  url = f'http://127.0.0.1:{port}/'
  try:
    for origin in ('http://evil.example', 'null',
                   f'http://127.0.0.1:{port + 1}'):
      refused = _upload(url, b'x' * 1000, origin=origin)
      assert refused.status_code == 403, (origin, refused.text)
      assert 'cross-origin request refused' in refused.text
    assert page.upload_file_set == set()   # nothing stored
    own = _upload(url, b'y' * 1000, origin=f'http://127.0.0.1:{port}')
    assert own.status_code == 200, own.text
    too_big = _upload(url, b'z' * (largest + 1))
    assert too_big.status_code == 413, too_big.text
    statuses = [_upload(url, bytes([index]) * 400_000).status_code
                for index in range(6)]
    assert statuses[:3] == [200] * 3 and set(statuses[3:]) == {507}, statuses
    kept = app_uploads.cache_bytes(page.upload_file_set)
    assert kept == 1000 + 3 * 400_000 <= cap
    assert 'cache is full' in _upload(url, b'w' * 400_000).text
  finally:
    page.close()
    colouriser.close()
