"""Colourise and upscale gray photos: ``python -m scsnet_jax.predict``.

  python -m scsnet_jax.predict --checkpoint WORKDIR_OR_EXPORT \\
      --input old_photos/ scan.tif --output out/ --scale 4 \\
      [--size 1920x1080] [--reference ref.jpg | refs/] [--tile 256] \\
      [--tile-overlap 32] [--dtype bfloat16] [--batch-size 4] [--overwrite]

One ``OUTPUT/<input stem>.png`` (8-bit sRGB) per input; RGBA and LA inputs
keep their alpha channel (resized bicubically) in an RGBA PNG. A bad file
gets one ``error: PATH: problem`` line on stderr and the others are still
processed; the exit code is 1 if anything failed. Outputs are written under a
temporary name and renamed, so an output file is complete or absent.

Before anything is decoded, every output path is checked
(``inference.planning.plan_outputs``): an output that is an input or a
reference, two inputs with the same output name, and (without
``--overwrite``) an existing output are refused, one line per input, and the
other inputs still run. Inputs are streamed: at most ``--batch-size``
decoded images and ``--max-batch-pixels`` pixels are held (a batch is of one
shape), and each batch is written before the next inputs are read.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
from typing import Optional, Sequence

import numpy as np

from scsnet_jax.errors import UserError
from scsnet_jax.inference import files as image_files
from scsnet_jax.inference import planning
from scsnet_jax.inference import tiling as inference
from scsnet_jax.models.generator import DTYPES

# References are downscaled to this longest side: their cost (cross attention
# against every source position) grows with their area; training used 128.
REFERENCE_MAX_SIDE = 512


# -------------------------------------------------------------- arguments ---
def _scale(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    value = math.nan
  if not math.isfinite(value) or value <= 0:
    raise argparse.ArgumentTypeError(
        f'scale must be a positive number, got {text!r}')
  return value


def _size(text: str) -> tuple[int, int]:
  """'WIDTHxHEIGHT' (how people write sizes) -> (height, width)."""
  parts = text.lower().split('x')
  try:
    width, height = (int(p) for p in parts)
  except ValueError:
    raise argparse.ArgumentTypeError(
        f'size must be WIDTHxHEIGHT, e.g. 1920x1080, got {text!r}') from None
  if width < 1 or height < 1:
    raise argparse.ArgumentTypeError(f'size must be positive, got {text!r}')
  return height, width


def positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(
        f'expected a positive integer, got {text!r}')
  return value


def add_model_arguments(parser: argparse.ArgumentParser, *,
                        max_output_pixels: int) -> None:
  """--checkpoint, --tile, --tile-overlap (what ``load_runner`` needs) and
  --max-output-pixels: shared with the web app, ``scsnet_jax.app``."""
  parser.add_argument('--checkpoint', required=True,
                      help='a training workdir (latest step, EMA weights), '
                           'its checkpoints/ folder, one checkpoints/STEP '
                           'folder, or a folder written by scsnet_jax.export')
  parser.add_argument('--tile', type=int, default=256,
                      help='input window size (multiple of '
                           f'{inference.WINDOW_ALIGN}, at least '
                           f'{inference.MIN_TILE}; 0 = whole image); bounds '
                           'memory (default: %(default)s)')
  parser.add_argument('--tile-overlap', type=int, default=32,
                      help='input pixels shared by neighbouring tiles, '
                           f'{inference.MIN_TILE_OVERLAP} to tile/2 '
                           '(default: %(default)s)')
  parser.add_argument('--max-output-pixels', type=positive_int,
                      default=max_output_pixels,
                      help='refuse outputs with more pixels than this '
                           '(default: %(default)s)')


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m scsnet_jax.predict',
      description='Gray low-resolution images -> colour images at any size.')
  add_model_arguments(parser,
                      max_output_pixels=inference.DEFAULT_MAX_OUTPUT_PIXELS)
  parser.add_argument('--input', required=True, nargs='+',
                      help='files, folders or glob patterns')
  parser.add_argument('--output', required=True,
                      help='output folder (created if needed); one '
                           '<input name>.png per input')
  target = parser.add_mutually_exclusive_group(required=True)
  target.add_argument('--scale', type=_scale, help='magnification, e.g. 4 '
                      'or 2.5 or 0.5')
  target.add_argument('--size', type=_size, help='output WIDTHxHEIGHT')
  parser.add_argument('--reference', default=None,
                      help='colour reference: one image for all inputs, or a '
                           'folder matched by file name (default: automatic '
                           'mode)')
  parser.add_argument('--dtype', choices=tuple(DTYPES), default='float32',
                      help='compute dtype; an image that is not finite in '
                           'bfloat16 is recomputed in float32 (default: '
                           '%(default)s)')
  parser.add_argument('--batch-size', type=positive_int, default=1,
                      help='inputs of the same size run together '
                           '(default: %(default)s)')
  parser.add_argument('--max-batch-pixels', type=positive_int,
                      default=planning.DEFAULT_MAX_BATCH_PIXELS,
                      help='at most this many pixels (per image the larger '
                           'of its input and output) are held waiting for '
                           'a batch; a larger image runs alone (default: '
                           '%(default)s)')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace existing outputs (an output that is an '
                           'input or a reference is always refused)')
  return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = build_parser()
  args = parser.parse_args(argv)
  check_model_arguments(parser, args)
  return args


def check_model_arguments(parser: argparse.ArgumentParser,
                          args: argparse.Namespace) -> None:
  """``add_model_arguments``' values that argparse cannot check alone
  (the tiling) as a usage error (exit 2)."""
  try:
    inference.check_tiling(args.tile, args.tile_overlap)
  except UserError as error:
    parser.error(str(error))


# ----------------------------------------------------------------- models ---
class Runner:
  """Parameters path (any scale, tiling, bfloat16) plus, for an export
  folder, its serialized artifacts where they apply (integer exported scale,
  float32, image within one tile)."""

  def __init__(self, checkpoint: str, *, dtype: str, tile: int,
               tile_overlap: int):
    from scsnet_jax.export import reader as export
    self.exported = None
    if export.is_export_dir(checkpoint):
      self.exported = export.ExportedGenerator(checkpoint)
      params, model_config = export.load_params(checkpoint)
    else:
      from scsnet_jax.inference import loading
      bundle = loading.load_generator(checkpoint)
      params, model_config = bundle.params, bundle.config.model
    self.predictor = inference.Predictor(params, model_config, dtype=dtype,
                                         tile=tile, tile_overlap=tile_overlap)
    self.tile = tile
    self._noted = False

  @property
  def referential(self) -> bool:
    return self.predictor.referential

  def with_dtype(self, dtype: str) -> 'Runner':
    """The same weights (shared, not copied) computing in ``dtype``."""
    other = copy.copy(self)
    other.predictor = inference.Predictor(
        self.predictor.params, self.predictor.config, dtype=dtype,
        tile=self.predictor.tile, tile_overlap=self.predictor.tile_overlap)
    return other

  def predict_nlab(self, gray, reference, out_size):
    _, height, width, _ = gray.shape
    one_window = not self.tile or max(height, width) <= self.tile
    if (self.exported is not None and self.predictor.dtype == 'float32'
        and one_window and self.exported.supports(reference is not None,
                                                  height, width, out_size)):
      return self.exported.predict_nlab(gray, reference, out_size)
    if self.exported is not None and not self._noted:
      self._noted = True
      print('note: no exported artifact fits (it needs an exported integer '
            'scale, float32 and an image within one tile); using the '
            "export's parameters and the model code", file=sys.stderr)
    return self.predictor.predict_nlab(gray, reference, out_size)


def load_runner(checkpoint: str, *, dtype: str, tile: int,
                tile_overlap: int) -> Runner:
  """A ``Runner``, or a ``UserError`` with one line naming the checkpoint
  and the problem (missing folder, foreign folder, unreadable files)."""
  try:
    return Runner(checkpoint, dtype=dtype, tile=tile, tile_overlap=tile_overlap)
  except (OSError, UserError) as error:
    raise UserError(first_line(error)) from None
  except Exception as error:  # e.g. an orbax error for a foreign folder
    raise UserError(f'{checkpoint}: cannot load the model '
                     f'({type(error).__name__}: {first_line(error)})'
                     ) from None


def reference_nlab(pixels: np.ndarray) -> np.ndarray:
  """uint8 (Hr, Wr, 3) -> nlab, longest side at most REFERENCE_MAX_SIDE."""
  height, width = pixels.shape[:2]
  if max(height, width) > REFERENCE_MAX_SIDE:
    from PIL import Image
    factor = REFERENCE_MAX_SIDE / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    pixels = np.asarray(Image.fromarray(pixels).resize(
        size, Image.Resampling.BICUBIC))
  return inference.nlab_from_rgb(pixels)


# ------------------------------------------------------------------- main ---
def first_line(error: BaseException, limit: int = 300) -> str:
  """An exception as one short line (its type if it has no message)."""
  lines = str(error).strip().splitlines()
  return lines[0][:limit] if lines else type(error).__name__


class _Report:
  """Counts and one-line messages (through tqdm, so the bar stays intact)."""

  def __init__(self, bar):
    self.bar, self.written, self.failed, self.recomputed = bar, 0, 0, 0

  def say(self, line: str):
    (self.bar.write if self.bar is not None else print)(line, file=sys.stderr)

  def fail(self, path: Optional[str], error):
    message = first_line(error)
    if path and not message.startswith(path):
      message = f'{path}: {message}'
    self.say(f'error: {message}')
    self.failed += 1


def _run_batch(runner: Runner, items: list, out_size, report: _Report,
               overwrite: bool):
  gray = np.stack([item['gray'] for item in items])
  refs = [item['reference'] for item in items]
  reference = None if refs[0] is None else np.stack(refs)
  try:
    out, redone = runner.predict_nlab(gray, reference, out_size)
  except Exception as error:  # e.g. out of memory: the other batches go on
    for item in items:
      report.fail(item['path'], f'inference failed ({type(error).__name__}: '
                  f'{first_line(error)})')
    return
  for index, item in enumerate(items):
    if index in redone:
      report.recomputed += 1
      report.say(f'warning: {item["path"]}: non-finite values in bfloat16; '
                 'recomputed in float32')
    pixels = inference.rgb_from_nlab(out[index])
    if item['alpha'] is not None:   # RGBA/LA in: alpha resized, RGBA out
      alpha = image_files.resize_alpha(item['alpha'], out_size)
      pixels = np.concatenate([pixels, alpha[..., None]], axis=-1)
    if not overwrite and os.path.lexists(item['dest']):  # appeared meanwhile
      report.fail(item['path'], f'output {item["dest"]} appeared during the '
                  'run; refusing to replace it (pass --overwrite)')
      continue
    try:
      image_files.write_png_atomic(item['dest'], pixels)
      report.written += 1
    except OSError as error:
      report.fail(item['path'], f'cannot write {item["dest"]} '
                  f'({error.strerror or error})')


def _prepare(path: str, dest: str, args, matcher) -> tuple:
  """Decodes one input: (batch key, item, pixels held); raises OSError or
  UserError (ImageDecodeError is one) for a bad input."""
  pixels, alpha = image_files.read_image_and_alpha(path)
  height, width = pixels.shape[:2]
  out_size = inference.resolve_output_size(
      height, width, scale=args.scale, size=args.size,
      max_pixels=args.max_output_pixels)
  ref_pixels = matcher.load(path)
  reference = None if ref_pixels is None else reference_nlab(ref_pixels)
  item = {'path': path, 'dest': dest, 'reference': reference,
          'alpha': alpha, 'gray': inference.gray_from_rgb(pixels)}
  key = (height, width, out_size,
         None if reference is None else reference.shape)
  return key, item, max(height * width, out_size[0] * out_size[1])


def run(args: argparse.Namespace) -> int:
  files, input_errors = image_files.collect_inputs(args.input)
  for message in input_errors:
    print(f'error: {message}', file=sys.stderr)
  try:
    image_files.check_output_dir(args.output)
    plan, refused = planning.plan_outputs(
        files, args.output, overwrite=args.overwrite,
        protected=planning.protected_references(args.reference))
    for message in refused:   # before the model loads: fix, then rerun
      print(f'error: {message}', file=sys.stderr)
    matcher = image_files.ReferenceMatcher(args.reference)  # reads a file
    for line in matcher.take_warnings():
      print(line, file=sys.stderr)
    if plan:
      runner = load_runner(args.checkpoint, dtype=args.dtype, tile=args.tile,
                           tile_overlap=args.tile_overlap)
      if args.reference is not None and not runner.referential:
        raise UserError(f'{args.checkpoint}: model has no referential mode; '
                         'run without --reference')
  except (OSError, UserError) as error:
    print(f'error: {first_line(error)}', file=sys.stderr)
    return 1
  if not files:
    print('error: no input images', file=sys.stderr)
    return 1

  from tqdm import tqdm
  bar = tqdm(total=len(plan), unit='img', file=sys.stderr,
             disable=len(plan) <= 1)
  report = _Report(bar if len(plan) > 1 else None)
  batcher = planning.Batcher(args.batch_size, args.max_batch_pixels)
  for path, dest in plan:
    try:
      key, item, pixels = _prepare(path, dest, args, matcher)
    except (OSError, UserError) as error:  # ImageDecodeError is one
      report.fail(path, error)
      bar.update(1)
      continue
    finally:
      for line in matcher.take_warnings():
        report.say(line)
    for ready_key, items in batcher.add(key, item, pixels):
      _run_batch(runner, items, ready_key[2], report, args.overwrite)
    bar.update(1)
  for key, items in batcher.drain():
    _run_batch(runner, items, key[2], report, args.overwrite)
  bar.close()
  failed = report.failed + len(input_errors) + len(refused)
  extra = (f'; {report.recomputed} recomputed in float32'
           if report.recomputed else '')
  print(f'done: {report.written} written to {args.output}, {failed} failed'
        f'{extra}')
  return 1 if failed else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    return run(args)
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr)
    return 130


if __name__ == '__main__':
  sys.exit(main())
