"""The web app's guard in front of gradio: who may call it, and how much
the uploads may hold.

A page the user visits elsewhere can make the browser POST to
``http://127.0.0.1:7860`` without a preflight (a multipart form is a
"simple" request), so it could fill the user's disk through the upload
route, which is not behind the queue. ``UploadGuard`` (an ASGI middleware,
no gradio import) therefore:

- refuses (403) every request whose ``Origin`` header is not the app's own
  (scheme-less ``host:port`` equal to the ``Host`` header): browsers send
  ``Origin`` with every cross-origin fetch and every POST; scripts
  (``gradio_client``, curl) send none and are not affected;
- refuses an upload without a ``Content-Length`` (411) or larger than
  ``max_request_bytes`` (413: ``max_upload_bytes``, what the largest image
  within the pixel cap can weigh) before reading its body;
- refuses an upload (507) while the uploads kept (``uploads()``, gradio's
  own list) plus those in flight would pass ``max_cache_bytes``. Uploads
  are deleted after ``UPLOAD_KEEP_SECONDS`` (gradio's ``delete_cache``), so
  the space comes back.
"""

from __future__ import annotations

import asyncio
import os
from typing import Callable, Iterable
from urllib.parse import urlsplit

# Uploads (and results) are deleted this long after they were written:
# long enough to preview a photo and colourise it a few times.
UPLOAD_KEEP_SECONDS = 300
# How often gradio looks for files older than that.
SWEEP_SECONDS = 60
# Default cap on the bytes all kept uploads may hold (--max-upload-cache).
DEFAULT_MAX_CACHE_BYTES = 1 << 30
# An uncompressed 16-bit RGB image (TIFF, PNG) is the heaviest common file
# for its pixel count; headers, metadata and the multipart envelope fit in
# the slack.
BYTES_PER_PIXEL = 6
SLACK_BYTES = 1 << 20


def max_upload_bytes(max_input_pixels: int) -> int:
  """The largest upload an image within ``max_input_pixels`` needs."""
  return max_input_pixels * BYTES_PER_PIXEL + SLACK_BYTES


def same_origin(origin: str, host: str) -> bool:
  """Does a request's ``Origin`` name the server it was sent to (its
  ``Host``)? ``null`` (sandboxed pages, files) never does."""
  netloc = urlsplit(origin).netloc if '://' in origin else ''
  return bool(netloc) and netloc.lower() == (host or '').lower()


def cache_bytes(paths: Iterable[str]) -> int:
  """Bytes held by the files of ``paths`` that still exist."""
  total = 0
  for path in list(paths):
    try:
      total += os.stat(path).st_size
    except OSError:   # deleted meanwhile
      pass
  return total


class UploadGuard:
  """ASGI middleware: the module docstring's checks, then ``app``."""

  def __init__(self, app, *, uploads: Callable[[], Iterable[str]],
               max_request_bytes: int, max_cache_bytes: int):
    self.app = app
    self.uploads = uploads
    self.max_request_bytes = max_request_bytes
    self.max_cache_bytes = max_cache_bytes
    self._in_flight = 0
    self._lock = asyncio.Lock()

  async def __call__(self, scope, receive, send):
    if scope['type'] not in ('http', 'websocket'):
      return await self.app(scope, receive, send)
    headers = {key.decode('latin-1').lower(): value.decode('latin-1')
               for key, value in scope.get('headers', [])}
    origin = headers.get('origin')
    if origin is not None and not same_origin(origin, headers.get('host')):
      return await _refuse(scope, send, 403, 'cross-origin request refused: '
                           'this app only answers its own page')
    if not (scope['type'] == 'http' and scope['method'] == 'POST' and
            scope['path'].rstrip('/').endswith('/upload')):
      return await self.app(scope, receive, send)
    try:
      length = int(headers['content-length'])
    except (KeyError, ValueError):
      return await _refuse(scope, send, 411, 'an upload needs a '
                           'Content-Length')
    if length > self.max_request_bytes:
      return await _refuse(scope, send, 413, f'upload of {length} bytes, '
                           f'more than the {self.max_request_bytes} an image '
                           'within this page\'s pixel limit needs')
    async with self._lock:
      held = cache_bytes(self.uploads()) + self._in_flight
      if held + length > self.max_cache_bytes:
        return await _refuse(
            scope, send, 507, f'the upload cache is full ({held} of '
            f'{self.max_cache_bytes} bytes; --max-upload-cache); uploads are '
            f'deleted {UPLOAD_KEEP_SECONDS} s after they arrive, try again '
            'then')
      self._in_flight += length
    try:
      return await self.app(scope, receive, send)
    finally:
      self._in_flight -= length


async def _refuse(scope, send, status: int, message: str) -> None:
  """A plain-text error response (for a websocket: close the handshake)."""
  if scope['type'] == 'websocket':
    await send({'type': 'websocket.close', 'code': 1008})
    return
  body = message.encode()
  await send({'type': 'http.response.start', 'status': status,
              'headers': [(b'content-type', b'text/plain; charset=utf-8'),
                          (b'content-length', str(len(body)).encode())]})
  await send({'type': 'http.response.body', 'body': body})
