"""What one web-app request does, without the web framework.

The page (``scsnet_jax.app``) hands uploaded file paths and form values to
``Colouriser.colourise``; it decodes them with the package's one safe
decoder (``image_io``: too many pixels for ``max_input_pixels`` is refused
from the header; bombs, truncation, wrong types are one ``RequestError``
line), converts to the model's gray input (``color.rgb8_to_gray``, in
float32 blocks; a preview is shrunk first), runs the ``inference.runner.Runner``
that the predict CLI runs (same tiling, same dtype fallback) and writes the
result PNG. Nothing here imports gradio, so the
logic is testable and reusable on its own.

One request may not hold the (single) worker for long: an input much larger
than the requested output is reduced to the output size first
(``reduce_input``: a 4096x4096 upload asked for at 64x64 was 361 tiles); a
request whose estimated time (its windows times the seconds per window
measured on this machine at start-up, ``measure_seconds_per_tile``) is over
``max_request_seconds`` is refused before it runs; a running one stops at
the next window when that deadline passes, or when ``cancel`` is called
for its session (the page's Cancel button), which frees the worker.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from typing import Optional

from absl import logging
import jax
import numpy as np
from PIL import Image

from scsnet_jax import color, image_io
from scsnet_jax.inference import runner as runner_lib
from scsnet_jax.errors import UserError, first_line
from scsnet_jax import image_files
from scsnet_jax.inference import predictor as predictor_lib

# The web app's default output limit: 16.8 MP (4096 x 4096). A browser tab
# shows and downloads the result, and a CPU needs minutes for more.
DEFAULT_MAX_OUTPUT_PIXELS = 1 << 24
# The default input limit, checked from the file's header before decoding
# (a small PNG can hold 25 MP of one colour): 16.8 MP, ~0.5 GB per request.
DEFAULT_MAX_INPUT_PIXELS = 1 << 24
# The "what the model sees" preview is at most this many pixels on its
# longer side (a browser shows it in a 170 px box).
PREVIEW_MAX_SIDE = 1024
# Result folders older than this are removed at the next request (the page
# has already been sent its copy by then).
KEEP_RESULTS_SECONDS = 600
TARGETS = ('Scale', 'Exact size')
# Default deadline of one request (``--max-request-seconds``): requests
# estimated to take longer are refused, running ones stop when it passes.
DEFAULT_MAX_REQUEST_SECONDS = 300
# An input with more than this many times the output's pixels is reduced to
# the output size before the model runs (the output is less than half the
# input on each side): the model's cost follows its input.
REDUCE_FACTOR = 4


class RequestError(UserError):
  """A user mistake (bad upload, bad size): one line for the page."""


def bfloat16_is_fast(backend: Optional[str] = None) -> bool:
  """True where bfloat16 runs in hardware (GPUs, TPUs); XLA on CPUs emulates
  it, slower than float32, so the page does not offer it there."""
  return (backend or jax.default_backend()) in ('gpu', 'cuda', 'rocm', 'tpu')


@dataclasses.dataclass(frozen=True)
class Result:
  """One request's outputs: the PNG on disk (RGB, or RGBA for inputs with
  alpha), the gray bicubic enlargement (Ht, Wt, 3) uint8 for comparison,
  a Markdown summary, and the seconds the request took."""
  png_path: str
  bicubic: np.ndarray
  summary: str
  seconds: float


def shrink_for_preview(pixels: np.ndarray,
                       max_side: int = PREVIEW_MAX_SIDE) -> np.ndarray:
  """(H, W, 3) uint8 -> the same, longer side at most ``max_side``
  (antialiased, PIL's reducing box filter), aspect ratio kept."""
  height, width = pixels.shape[:2]
  if max(height, width) <= max_side:
    return pixels
  factor = max_side / max(height, width)
  size = (max(1, round(width * factor)), max(1, round(height * factor)))
  return np.asarray(Image.fromarray(pixels).resize(
      size, Image.Resampling.BOX), np.uint8)


def reduce_input(pixels: np.ndarray, alpha: Optional[np.ndarray],
                 out_size: tuple[int, int]):
  """(H, W, 3) uint8 and (H, W) alpha or None -> both at ``out_size``
  (Ht, Wt) (PIL's antialiasing box filter) if the input has more than
  ``REDUCE_FACTOR`` times the output's pixels, else unchanged; and whether
  they were reduced."""
  height, width = pixels.shape[:2]
  out_h, out_w = out_size
  if height * width <= REDUCE_FACTOR * out_h * out_w:
    return pixels, alpha, False

  def shrink(image, mode=None):
    return np.asarray(Image.fromarray(image, mode).resize(
        (out_w, out_h), Image.Resampling.BOX), np.uint8)
  return (shrink(pixels), None if alpha is None else shrink(alpha, 'L'),
          True)


def measure_seconds_per_tile(runner: runner_lib.Runner) -> float:
  """Seconds one window takes on this machine: a full tile (256 px when
  untiled) at scale 2, timed on its second run (the first compiles)."""
  side = runner.tile or 256
  gray = np.zeros((1, side, side, 1), np.float32)
  runner.predict_nlab(gray, None, (2 * side, 2 * side))
  start = time.perf_counter()
  runner.predict_nlab(gray, None, (2 * side, 2 * side))
  return time.perf_counter() - start


def _short(error: BaseException, path: str) -> str:
  """One line, with the upload's temporary folder cut from its path."""
  return first_line(error).replace(path, os.path.basename(path))


def _output_size(height: int, width: int, target: str, scale, out_width,
                 out_height, max_pixels: int) -> tuple[int, int]:
  """(Ht, Wt) from the form: a decimal scale or a whole width and height."""
  try:
    if target == 'Scale':
      if scale is None:
        raise ValueError('give a magnification, e.g. 4 or 2.5')
      return predictor_lib.resolve_output_size(
          height, width, scale=float(scale), max_pixels=max_pixels)
    if target != 'Exact size':
      raise ValueError(f'output size must be one of {TARGETS}, got {target!r}')
    if out_width is None or out_height is None:
      raise ValueError('give the output width and height in pixels')
    size = []   # (Ht, Wt)
    for name, value in (('height', out_height), ('width', out_width)):
      if float(value) != int(value):
        raise ValueError(f'output {name} must be a whole number, got {value}')
      size.append(int(value))
    return predictor_lib.resolve_output_size(
        height, width, size=tuple(size), max_pixels=max_pixels)
  except (TypeError, ValueError, OverflowError) as error:
    raise RequestError(first_line(error).replace(
        ' (--max-output-pixels)', '')) from None


class Colouriser:
  """The loaded model and the folder of result PNGs, shared by all requests.

  Args:
    runner: ``runner_lib.Runner`` (float32); bfloat16 shares its weights.
    max_output_pixels: larger outputs are refused with a RequestError.
    max_input_pixels: larger uploads (photo or reference) are refused from
      their header, before decoding, with a RequestError.
    offer_bfloat16: whether requests may ask for bfloat16 (default: where it
      is fast, ``bfloat16_is_fast``).
    max_request_seconds: one request's deadline (module docstring).
    seconds_per_tile: the cost of one window here (default: measured now,
      ``measure_seconds_per_tile``).
  """

  def __init__(self, runner: runner_lib.Runner, *,
               max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
               max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
               offer_bfloat16: Optional[bool] = None,
               max_request_seconds: float = DEFAULT_MAX_REQUEST_SECONDS,
               seconds_per_tile: Optional[float] = None):
    self.runners = {'float32': runner}
    self.offer_bfloat16 = (bfloat16_is_fast() if offer_bfloat16 is None
                           else offer_bfloat16)
    if self.offer_bfloat16:
      self.runners['bfloat16'] = runner.with_dtype('bfloat16')
    self.max_output_pixels = max_output_pixels
    self.max_input_pixels = max_input_pixels
    self.max_request_seconds = max_request_seconds
    self.seconds_per_tile = (measure_seconds_per_tile(runner)
                             if seconds_per_tile is None else seconds_per_tile)
    self._cancelled: dict[Optional[str], threading.Event] = {}   # running
    self.output_dir = tempfile.mkdtemp(prefix='scsnet_app-')

  @property
  def referential(self) -> bool:
    return self.runners['float32'].referential

  def close(self) -> None:
    shutil.rmtree(self.output_dir, ignore_errors=True)

  # ------------------------------------------------------------- reading ---
  def _decode(self, path: str, what: str = ''):
    """Upload -> ((H, W, 3) uint8 sRGB, (H, W) alpha or None); too many
    pixels (from the header, before decoding) and every decoding problem
    are one RequestError line."""
    try:
      return image_io.read_image_and_alpha(
          path, max_pixels=self.max_input_pixels)
    except image_io.ImageTooLargeError as error:
      width, height = error.size
      size = (f'{width}x{height} = {width * height} pixels' if width * height
              else 'too many pixels')
      raise RequestError(
          f'{what}{os.path.basename(path)}: {size}, more than this page '
          f'accepts ({self.max_input_pixels}; --max-input-pixels)') from None
    except (OSError, UserError) as error:
      raise RequestError(what + _short(error, path)) from None

  def _read_upload(self, path: Optional[str]):
    """Upload -> (pixels (H, W, 3) uint8, alpha (H, W) or None, note)."""
    if not path:
      raise RequestError('upload a photo first')
    pixels, alpha = self._decode(path)
    note = ''
    if not image_files.is_gray(pixels):
      note = (f'{os.path.basename(path)} is in colour: it was converted to '
              'gray (its CIE-LAB lightness) first; the model colourises gray '
              'photos.')
    return pixels, alpha, note

  def preview(self, path: Optional[str], scale=None):
    """The gray image the model will see, (h, w, 3) uint8 with its longer
    side at most ``PREVIEW_MAX_SIDE`` (shrunk before the conversion), the
    note, and the output (width, height) at ``scale`` (the input's size
    without one) to start the page's exact-size fields from."""
    pixels, _, note = self._read_upload(path)
    height, width = pixels.shape[:2]
    try:
      out_h, out_w = predictor_lib.resolve_output_size(height, width,
                                                       scale=float(scale))
    except (TypeError, ValueError):
      out_h, out_w = height, width
    gray = color.rgb8_to_gray(shrink_for_preview(pixels))
    del pixels
    return color.gray_to_rgb8(gray), note, (out_w, out_h)

  def _read_reference(self, path: str):
    if not self.referential:
      raise RequestError('this model has no referential mode; remove the '
                         'reference image')
    pixels, _ = self._decode(path, what='reference ')
    note = ''
    if image_files.is_gray(pixels):
      note = ('The reference is gray, so it carries no colour to borrow; '
              'give a colour reference, or none for automatic colours.')
    return runner_lib.reference_nlab(pixels), note

  # ------------------------------------------------------------- budget ---
  def estimate_seconds(self, height: int, width: int,
                       out_size: tuple[int, int]) -> float:
    """The time an (H, W) -> ``out_size`` request is expected to take: its
    windows, or its output in units of the measured window's output if
    that is more, times ``seconds_per_tile``."""
    runner = self.runners['float32']
    side = runner.tile or 256
    windows = runner.tile_count(height, width, out_size)
    if not runner.tile:
      windows = math.ceil(height * width / side**2)
    output = out_size[0] * out_size[1] / (2 * side)**2
    return max(windows, output) * self.seconds_per_tile

  def _check_budget(self, height: int, width: int,
                    out_size: tuple[int, int], size: str) -> None:
    """RequestError (one line) for a request over the time budget."""
    seconds = self.estimate_seconds(height, width, out_size)
    if seconds > self.max_request_seconds:
      windows = self.runners['float32'].tile_count(height, width, out_size)
      raise RequestError(
          f'{size} -> {out_size[1]}x{out_size[0]} would take about '
          f'{seconds:.0f} s here ({windows} window(s), '
          f'{self.seconds_per_tile:.3g} s each), more than this page\'s '
          f'{self.max_request_seconds:g} s per request '
          '(--max-request-seconds); ask for a smaller output or use python '
          '-m scsnet_jax.predict')

  def cancel(self, session: Optional[str] = None) -> bool:
    """Stops ``session``'s running request at its next window (True if one
    was running): its ``colourise`` raises RequestError and the worker is
    free."""
    event = self._cancelled.get(session)
    if event is not None:
      event.set()
    return event is not None

  def _interrupt(self, cancelled: threading.Event, deadline: float):
    def interrupt():
      if cancelled.is_set():
        raise RequestError('cancelled')
      if time.perf_counter() > deadline:
        raise RequestError(
            f'stopped after {self.max_request_seconds:g} s, this page\'s '
            'limit per request (--max-request-seconds); ask for a smaller '
            'output or use python -m scsnet_jax.predict')
    return interrupt

  # ------------------------------------------------------------- running ---
  def colourise(self, image_path: Optional[str],
                reference_path: Optional[str] = None, target: str = 'Scale',
                scale=4.0, out_width=None, out_height=None,
                bfloat16: bool = False, session: Optional[str] = None
                ) -> Result:
    """One request: upload(s) and form values -> ``Result``. ``session``
    names it for ``cancel``.

    Raises:
      RequestError: one line naming the file or field and the problem
        (also: over the time budget, past the deadline, cancelled).
    """
    cancelled = threading.Event()
    self._cancelled[session] = cancelled
    try:
      return self._colourise(image_path, reference_path, target, scale,
                             out_width, out_height, bfloat16, cancelled)
    finally:
      if self._cancelled.get(session) is cancelled:
        del self._cancelled[session]

  def _colourise(self, image_path, reference_path, target, scale, out_width,
                 out_height, bfloat16, cancelled) -> Result:
    start = time.perf_counter()
    interrupt = self._interrupt(cancelled, start + self.max_request_seconds)
    self._sweep()
    pixels, alpha, note = self._read_upload(image_path)
    height, width = pixels.shape[:2]
    out_size = _output_size(height, width, target, scale, out_width,
                            out_height, self.max_output_pixels)
    notes = [note] if note else []
    pixels, alpha, reduced = reduce_input(pixels, alpha, out_size)
    if reduced:
      notes.append(f'The {width}x{height} input was reduced to '
                   f'{out_size[1]}x{out_size[0]} before colourising.')
    gray = color.rgb8_to_gray(pixels)
    del pixels
    run_h, run_w = gray.shape[:2]
    self._check_budget(run_h, run_w, out_size, f'{width}x{height}')
    reference = None
    if reference_path:
      reference, ref_note = self._read_reference(reference_path)
      notes += [ref_note] if ref_note else []
    dtype = 'bfloat16' if bfloat16 else 'float32'
    if dtype not in self.runners:
      raise RequestError(f'bfloat16 is not offered on this device '
                         f'({jax.default_backend()}); untick it')
    runner = self.runners[dtype]
    try:
      nlab, redone = runner.predict_nlab(
          gray[None], None if reference is None else reference[None],
          out_size, interrupt)
    except RequestError:   # the deadline, or cancelled
      raise
    except Exception as error:  # e.g. out of memory: the server goes on
      logging.exception('inference failed')   # the server log keeps it
      raise RequestError(f'inference failed ({type(error).__name__}: '
                         f'{first_line(error)})') from None
    if redone:
      notes.append('bfloat16 gave non-finite values; recomputed in float32.')
    pixels = image_files.attach_alpha(color.nlab_to_rgb8(nlab[0]), alpha,
                                      out_size)
    folder = os.path.join(self.output_dir, uuid.uuid4().hex)
    os.makedirs(folder)
    stem = os.path.splitext(os.path.basename(image_path))[0]
    png_path = os.path.join(folder, f'{stem}_colour.png')
    image_files.write_png_atomic(png_path, pixels)
    bicubic = color.gray_to_rgb8(runner.bicubic_gray(gray[None],
                                                      out_size)[0])
    seconds = time.perf_counter() - start
    tiles = runner.tile_count(run_h, run_w, out_size)
    mode = 'guided by the reference' if reference is not None else 'automatic'
    summary = (f'**{width}x{height} -> {out_size[1]}x{out_size[0]}** '
               f'({out_size[1] / width:.3g}x), {mode}, {dtype}, '
               f'{tiles} tile(s): **{seconds:.2f} s**')
    return Result(png_path, bicubic, '\n\n'.join([summary] + notes), seconds)

  def _sweep(self) -> None:
    """Removes result folders older than ``KEEP_RESULTS_SECONDS``."""
    now = time.time()
    for entry in os.scandir(self.output_dir):
      try:
        if now - entry.stat().st_mtime > KEEP_RESULTS_SECONDS:
          shutil.rmtree(entry.path, ignore_errors=True)
      except OSError:
        pass

