"""app_uploads.py: the guard in front of gradio, driven as an ASGI app
without gradio (tests/app_test.py sends the same requests to the real
server): foreign origins refused, upload sizes and the cache capped."""

import asyncio

import pytest

from scsnet_jax import app_uploads

HOST = '127.0.0.1:7860'


class _Store:
  """The app behind the guard: stores each upload's body as a file."""

  def __init__(self, folder):
    self.folder, self.files, self.calls = folder, set(), 0

  async def __call__(self, scope, receive, send):
    self.calls += 1
    body = b''
    while True:
      message = await receive()
      body += message.get('body', b'')
      if not message.get('more_body'):
        break
    if body:
      path = self.folder / f'upload{len(self.files)}'
      path.write_bytes(body)
      self.files.add(str(path))
    await send({'type': 'http.response.start', 'status': 200, 'headers': []})
    await send({'type': 'http.response.body', 'body': b'ok'})


def _request(guard, body=b'', method='POST', path='/gradio_api/upload',
             origin=None, length=True):
  headers = [(b'host', HOST.encode())]
  if origin is not None:
    headers.append((b'origin', origin.encode()))
  if length:
    headers.append((b'content-length', str(len(body)).encode()))
  scope = {'type': 'http', 'method': method, 'path': path,
           'headers': headers}
  sent = []

  async def receive():
    return {'type': 'http.request', 'body': body, 'more_body': False}

  async def send(message):
    sent.append(message)
  asyncio.run(guard(scope, receive, send))
  status = sent[0]['status']
  return status, b''.join(m.get('body', b'') for m in sent[1:]).decode()


def _guard(tmp_path, **kwargs):
  store = _Store(tmp_path)
  kwargs.setdefault('max_request_bytes', 1000)
  kwargs.setdefault('max_cache_bytes', 2500)
  return app_uploads.UploadGuard(store, uploads=lambda: store.files,
                                 **kwargs), store


@pytest.mark.parametrize('origin', ['http://evil.example', 'null',
                                    'http://127.0.0.1:7861',
                                    'https://127.0.0.1:7860.evil.example'])
def test_a_foreign_origin_is_refused_before_the_app(tmp_path, origin):
  guard, store = _guard(tmp_path)
  for method, path in (('POST', '/gradio_api/upload'),
                       ('GET', '/gradio_api/queue/data')):
    status, text = _request(guard, b'x' * 10, method, path, origin)
    assert status == 403 and 'cross-origin request refused' in text
  assert store.calls == 0 and store.files == set()


def test_own_origin_and_scripts_pass(tmp_path):
  guard, store = _guard(tmp_path)
  assert _request(guard, b'x', origin=f'http://{HOST}')[0] == 200
  assert _request(guard, b'y')[0] == 200   # gradio_client sends no Origin
  assert store.calls == 2


def test_a_burst_of_uploads_stops_at_the_cache_cap(tmp_path):
  guard, store = _guard(tmp_path)
  statuses = [_request(guard, bytes([i]) * 800)[0] for i in range(6)]
  assert statuses == [200, 200, 200, 507, 507, 507]
  assert app_uploads.cache_bytes(store.files) == 2400 <= 2500
  status, text = _request(guard, b'z' * 800)
  assert status == 507 and 'cache is full (2400 of 2500 bytes' in text
  (tmp_path / 'upload0').unlink()   # gradio's sweep deleted one
  assert _request(guard, b'w' * 800)[0] == 200


def test_upload_sizes_are_checked_from_the_header(tmp_path):
  guard, store = _guard(tmp_path)
  status, text = _request(guard, b'x' * 1001)
  assert status == 413 and '1001 bytes' in text
  assert _request(guard, b'x' * 10, length=False)[0] == 411
  assert store.calls == 0
  assert app_uploads.max_upload_bytes(1000) == 6000 + (1 << 20)


def test_same_origin():
  assert app_uploads.same_origin('http://127.0.0.1:7860', '127.0.0.1:7860')
  assert app_uploads.same_origin('http://LOCALHOST:7860', 'localhost:7860')
  assert not app_uploads.same_origin('http://localhost:7860',
                                     '127.0.0.1:7860')
  assert not app_uploads.same_origin('null', '127.0.0.1:7860')
  assert not app_uploads.same_origin('http://127.0.0.1:7860', None)
