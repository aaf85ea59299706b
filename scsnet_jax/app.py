"""A local web page for SCSNet: ``python -m scsnet_jax.app``.

  pip install -e .[app]
  python -m scsnet_jax.app --checkpoint WORKDIR_OR_EXPORT [--port 7860] \
      [--reference-gallery photos/ [--top-k 5]]

Serves on 127.0.0.1 (this machine only) unless ``--host`` says otherwise
(then a warning says who may reach it; ``--auth FILE`` asks for a login);
no share link, no analytics, nothing fetched from the network (gradio is
pinned to releases that serve their own fonts and scripts). The model is
loaded once at start-up; each request runs the predict CLI's model, a
``inference.runner.Runner`` (same tiling, same bfloat16 fallback), through
``app_requests.Colouriser``.
A bad upload is a one-line message on the page and the server goes on.
Requests from other sites' pages are refused, uploads are size-capped, kept
``app_uploads.UPLOAD_KEEP_SECONDS`` and capped in total
(``app_uploads.UploadGuard``), and one request may take at most
``--max-request-seconds`` (refused up front when the machine's measured
rate says so; the page's Cancel button stops it). With
``--reference-gallery`` the page suggests references from that folder for
each upload (``app_gallery``) and shows the one used beside the result.
"""


import argparse
import ipaddress
import os
import signal
import sys
from typing import Optional, Sequence

from scsnet_jax import app_gallery, app_requests, app_uploads
from scsnet_jax import reference_gallery
from scsnet_jax.inference import runner as runner_lib
from scsnet_jax.errors import UserError, first_line

DEFAULT_PORT = 7860
# Waiting requests beyond this are refused by gradio ("queue is full"):
# each holds its upload, and one running request may hold ~0.5 GB.
DEFAULT_MAX_QUEUE = 8


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m scsnet_jax.app',
      description='A local web page: gray photo -> colour photo at any size.')
  runner_lib.add_model_arguments(
      parser, max_output_pixels=app_requests.DEFAULT_MAX_OUTPUT_PIXELS)
  parser.add_argument('--max-input-pixels', type=int,
                      default=app_requests.DEFAULT_MAX_INPUT_PIXELS,
                      help='refuse uploads (photo or reference) with more '
                           'pixels, read from the file header before '
                           'decoding (default: %(default)s = 4096^2)')
  parser.add_argument('--max-request-seconds', type=float,
                      default=app_requests.DEFAULT_MAX_REQUEST_SECONDS,
                      help='longest a request may take: refused up front '
                           'when the rate measured at start-up says it '
                           'would take longer, stopped when it does '
                           '(default: %(default)s)')
  parser.add_argument('--max-upload-cache', type=int,
                      default=app_uploads.DEFAULT_MAX_CACHE_BYTES,
                      help='bytes all kept uploads may hold; more uploads '
                           'are refused until old ones expire '
                           f'({app_uploads.UPLOAD_KEEP_SECONDS} s) '
                           '(default: %(default)s)')
  parser.add_argument('--max-queue', type=int, default=DEFAULT_MAX_QUEUE,
                      help='requests that may wait while one runs (one runs '
                           'at a time, previews included); more are turned '
                           'away (default: %(default)s)')
  reference_gallery.add_gallery_arguments(parser)
  parser.add_argument('--port', type=int, default=DEFAULT_PORT,
                      help='TCP port (default: %(default)s)')
  parser.add_argument('--host', default='127.0.0.1',
                      help='address to listen on; the default serves this '
                           'machine only (default: %(default)s); any other '
                           'address is warned about')
  parser.add_argument('--auth', default=None, metavar='FILE',
                      help='require a login: FILE holds user:password lines '
                           '(a file, so passwords stay out of the process '
                           'list); sent in clear over plain HTTP')
  return parser


def is_loopback(host: str) -> bool:
  """True for addresses only this machine can reach (127.x, ::1,
  localhost)."""
  if host.lower() == 'localhost':
    return True
  try:
    return ipaddress.ip_address(host.strip('[]')).is_loopback
  except ValueError:   # a host name: it may resolve to anything
    return False


def read_auth(path: str) -> list[tuple[str, str]]:
  """[(user, password), ...] from ``user:password`` lines (blank lines and
  ``#`` comments skipped); a one-line ``UserError`` otherwise."""
  try:
    with open(path, encoding='utf-8') as f:
      lines = f.read(1 << 20).splitlines()
  except (OSError, UnicodeDecodeError) as error:
    raise UserError(f'--auth {path}: cannot read it ({error})') from None
  pairs = []
  for number, line in enumerate(lines, start=1):
    if not line.strip() or line.lstrip().startswith('#'):
      continue
    user, colon, password = line.strip().partition(':')
    if not (colon and user and password):
      raise UserError(f'--auth {path}: line {number} is not user:password')
    pairs.append((user, password))
  if not pairs:
    raise UserError(f'--auth {path}: no user:password line')
  return pairs


def network_warning(args: argparse.Namespace) -> Optional[str]:
  """The warning for a server other machines can reach, or None."""
  if is_loopback(args.host):
    return None
  login = ('a login is required (--auth), but it travels unencrypted over '
           'plain HTTP' if args.auth else 'anyone who can reach it can use '
           'it: no login (--auth FILE) is asked for')
  return (f'warning: serving on {args.host}, which other machines may reach; '
          f'{login}. Use --host 127.0.0.1 for this machine only.')


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = build_parser()
  args = parser.parse_args(argv)
  if not 0 < args.port < 65536:
    parser.error(f'port must be 1 to 65535, got {args.port}')
  if args.max_input_pixels < 1:
    parser.error(f'--max-input-pixels must be positive, got '
                 f'{args.max_input_pixels}')
  if args.max_queue < 1:
    parser.error(f'--max-queue must be positive, got {args.max_queue}')
  if not args.max_request_seconds > 0:
    parser.error(f'--max-request-seconds must be positive, got '
                 f'{args.max_request_seconds}')
  largest = app_uploads.max_upload_bytes(args.max_input_pixels)
  if args.max_upload_cache < largest:
    parser.error(f'--max-upload-cache must hold at least one upload '
                 f'({largest} bytes at --max-input-pixels '
                 f'{args.max_input_pixels}), got {args.max_upload_cache}')
  reference_gallery.check_gallery_arguments(parser, args)
  note = runner_lib.check_model_arguments(parser, args)
  if note:   # the starter weights
    print(note, file=sys.stderr)
  if args.auth is not None:
    try:
      args.auth_pairs = read_auth(args.auth)
    except UserError as error:
      parser.error(str(error))
  else:
    args.auth_pairs = None
  return args


def _import_gradio():
  """gradio with its telemetry and version check off (set before import)."""
  os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'
  import gradio  # the app extra; after the settings above, which it reads
  return gradio


def build_page(colouriser: app_requests.Colouriser, checkpoint: str,
               gallery: Optional[app_gallery.GallerySuggestions] = None):
  """The gradio Blocks page; its ``/colourise`` endpoint takes (image path,
  reference path or None, 'Scale' | 'Exact size', scale, width, height,
  bfloat16) and returns (result PNG, bicubic gray, PNG download, summary).
  With a ``gallery`` it also takes the chosen gallery name (last) and
  returns the reference used (last)."""
  gr = _import_gradio()

  # gradio passes the request by this annotation's evaluated value, so this
  # module has no `from __future__ import annotations` (it made it a string
  # and the request None).
  def colourise(image, reference, target, scale, width, height, bfloat16,
                request: gr.Request):
    try:
      result = colouriser.colourise(image, reference, target, scale, width,
                                    height, bool(bfloat16),
                                    session=request.session_hash)
    except app_requests.RequestError as error:
      raise gr.Error(str(error), print_exception=False) from None
    return result.png_path, result.bicubic, result.png_path, result.summary

  def colourise_from_gallery(image, reference, target, scale, width, height,
                             bfloat16, choice, request: gr.Request):
    try:
      chosen = None if reference else gallery.reference_path(choice)
    except app_requests.RequestError as error:
      raise gr.Error(str(error), print_exception=False) from None
    outputs = colourise(image, reference or chosen, target, scale, width,
                        height, bfloat16, request)
    shown = gallery.thumbnail(choice) if chosen else None
    return (*outputs, shown)

  def suggest(image):
    try:
      items, names = gallery.suggest(image)
    except app_requests.RequestError as error:
      raise gr.Error(str(error), print_exception=False) from None
    return items, gr.Radio(choices=names, value=names[0] if names else None)

  def cancel(request: gr.Request):
    colouriser.cancel(request.session_hash)

  def preview(image, scale):
    if not image:
      return None, '', None, None
    try:
      seen, note, (out_width, out_height) = colouriser.preview(image, scale)
      return seen, note, out_width, out_height
    except app_requests.RequestError as error:
      raise gr.Error(str(error), print_exception=False) from None

  mode = ('automatic, or guided by an optional colour reference'
          if colouriser.referential else 'automatic colours')
  bfloat16_info = ('faster on this device; an image that is not finite in '
                   'bfloat16 is recomputed in float32'
                   if colouriser.offer_bfloat16 else
                   'not offered on this device (CPU: bfloat16 is emulated, '
                   'slower than float32)')
  with gr.Blocks(title='SCSNet colouriser', analytics_enabled=False,
                 delete_cache=(app_uploads.SWEEP_SECONDS,
                               app_uploads.UPLOAD_KEEP_SECONDS)) as page:
    gr.Markdown(f'## SCSNet: gray photo -> colour photo at any size\n'
                f'Model `{os.path.basename(os.path.normpath(checkpoint))}` '
                f'({mode}). A colour upload is converted to gray first. '
                'Large photos run in tiles, as in `scsnet_jax.predict`.')
    with gr.Row(equal_height=True):
      image = gr.File(label='Photo (gray; a colour one is converted to gray '
                      'first)', file_types=['image'], type='filepath',
                      height=170, elem_id='image')
      seen = gr.Image(label='What the model sees', interactive=False,
                      height=170, elem_id='seen')
      reference = gr.File(
          label='Colour reference (optional)' if colouriser.referential
          else 'Colour reference (this model has no referential mode)',
          file_types=['image'], type='filepath', height=170,
          interactive=colouriser.referential, elem_id='reference')
    if gallery is not None:
      with gr.Row(equal_height=True):
        suggestions = gr.Gallery(
            label=f'References suggested from {len(gallery)} gallery photos '
            '(best first)', columns=5, height=200, allow_preview=False,
            interactive=False, elem_id='suggestions')
        choice = gr.Radio([], label='Reference from the gallery (an '
                          'uploaded reference is used instead)',
                          elem_id='gallery_choice')
    with gr.Row(equal_height=True):
      target = gr.Radio(list(app_requests.TARGETS), value='Scale',
                        label='Output size', elem_id='target')
      scale = gr.Number(value=4, label='Magnification (any decimal, e.g. '
                        '2.5)', step=0.1, elem_id='scale')
      width = gr.Number(label='or width (px)', precision=0, elem_id='width')
      height = gr.Number(label='and height (px)', precision=0,
                         elem_id='height')
      bfloat16 = gr.Checkbox(label='bfloat16', value=False,
                             interactive=colouriser.offer_bfloat16,
                             info=bfloat16_info, elem_id='bfloat16')
    with gr.Row():
      run = gr.Button('Colourise', variant='primary', elem_id='run')
      stop = gr.Button('Cancel', variant='stop', elem_id='cancel')
    with gr.Row():
      result = gr.Image(label='SCSNet result', type='filepath', format='png',
                        interactive=False, elem_id='result')
      bicubic = gr.Image(label='Bicubic gray enlargement (comparison)',
                         format='png', interactive=False, elem_id='bicubic')
      if gallery is not None:
        used = gr.Image(label='Gallery reference used', interactive=False,
                        elem_id='used_reference')
    with gr.Row(equal_height=True):
      download = gr.File(label='Download the result (PNG)',
                         elem_id='download')
      summary = gr.Markdown(label='summary', elem_id='summary')
    # One shared concurrency group: a preview and a colourisation never
    # decode at the same time (memory is bounded by one request).
    image.change(preview, inputs=[image, scale],
                 outputs=[seen, summary, width, height],
                 api_name='preview', concurrency_id='decode')
    inputs = [image, reference, target, scale, width, height, bfloat16]
    outputs = [result, bicubic, download, summary]
    if gallery is not None:
      image.change(suggest, inputs=[image], outputs=[suggestions, choice],
                   api_name='suggest', concurrency_id='decode')
      run.click(colourise_from_gallery, inputs=inputs + [choice],
                outputs=outputs + [used], api_name='colourise',
                concurrency_id='decode')
    else:
      run.click(colourise, inputs=inputs, outputs=outputs,
                api_name='colourise', concurrency_id='decode')
    # Not queued: it must run while a colourisation holds the worker.
    stop.click(cancel, api_name='cancel', queue=False,
               api_visibility='undocumented')
  return page


def serve(args: argparse.Namespace, *, block: bool = True):
  """Loads the model once and serves the page on ``args.host:args.port``.

  With ``block=False`` returns (page, colouriser) while the server runs in
  its threads (tests); call ``page.close()`` and ``colouriser.close()``.

  Raises:
    UserError: the checkpoint cannot be loaded (one line).
    OSError: the address cannot be served (e.g. the port is taken).
  """
  from starlette import middleware   # installed with gradio
  runner = runner_lib.load_runner(args.checkpoint, dtype='float32',
                                  tile=args.tile,
                                  tile_overlap=args.tile_overlap)
  colouriser = app_requests.Colouriser(
      runner, max_output_pixels=args.max_output_pixels,
      max_input_pixels=args.max_input_pixels,
      max_request_seconds=args.max_request_seconds)
  if block:   # SIGTERM (``kill``, service managers) stops like Ctrl-C,
    # so the result folder is removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
  try:
    gallery = None
    if args.reference_gallery is not None:
      if not colouriser.referential:
        raise UserError(f'{args.checkpoint}: model has no referential mode; '
                        'run without --reference-gallery')
      gallery = app_gallery.GallerySuggestions(
          reference_gallery.open_chooser(args.reference_gallery, args.top_k),
          max_input_pixels=args.max_input_pixels)
    page = build_page(colouriser, args.checkpoint, gallery)
    max_request_bytes = app_uploads.max_upload_bytes(args.max_input_pixels)
    guard = middleware.Middleware(
        app_uploads.UploadGuard, uploads=lambda: page.upload_file_set,
        max_request_bytes=max_request_bytes,
        max_cache_bytes=args.max_upload_cache)
    page.queue(max_size=args.max_queue,
               default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, share=False,
        auth=args.auth_pairs, app_kwargs={'middleware': [guard]},
        inbrowser=False, ssr_mode=False, mcp_server=False,
        enable_monitoring=False, max_file_size=max_request_bytes,
        prevent_thread_lock=True, quiet=True)
  except BaseException:
    colouriser.close()
    raise
  if block:   # gradio's own lines would offer `share=True`: never here
    print(f'* Running on {page.local_url} (Ctrl-C stops)', flush=True)
    try:
      page.block_thread()
    finally:
      colouriser.close()
  return page, colouriser


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  warning = network_warning(args)
  if warning:
    print(warning, file=sys.stderr)
  try:
    _import_gradio()
  except ImportError:
    print('error: the web app needs gradio; install it with '
          "pip install -e '.[app]'", file=sys.stderr)
    return 1
  try:
    serve(args)
  except UserError as error:   # the checkpoint: a usage error
    print(f'error: {error}', file=sys.stderr)
    return 2
  except OSError as error:   # e.g. the port is taken
    print(f'error: cannot serve on {args.host}:{args.port} '
          f'({first_line(error)})', file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    pass
  return 0


if __name__ == '__main__':
  sys.exit(main())
