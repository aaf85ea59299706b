"""Colourise and upscale gray photos: ``python -m scsnet_jax.predict``.

  python -m scsnet_jax.predict --checkpoint WORKDIR_OR_EXPORT \\
      --input old_photos/ scan.tif --output out/ --scale 4 \\
      [--size 1920x1080] [--reference ref.jpg | refs/ |
       --reference-gallery photos/ [--top-k 10]] [--tile 256] \\
      [--tile-overlap 32] [--dtype bfloat16] [--batch-size 4] \\
      [--overwrite | --skip-existing]

One ``OUTPUT/<input stem>.png`` (8-bit sRGB) per input; RGBA and LA inputs
keep their alpha channel (resized bicubically) in an RGBA PNG. A bad file
gets one ``error: PATH: problem`` line on stderr and the others are still
processed; the exit code is 1 if anything failed. Outputs are written under a
temporary name and renamed, so an output file is complete or absent (so
``--skip-existing`` resumes an interrupted run: existing outputs count as
done). File names are printed with their control characters escaped
(``errors.printable``): a name cannot forge a line.

Before anything is decoded, every output path is checked
(``planning.plan_outputs``): an output that is an input or a
reference, two inputs with the same output name, and (without
``--overwrite``) an existing output are refused, one line per input, and the
other inputs still run. Inputs are streamed: at most ``--batch-size``
decoded images and ``--max-batch-pixels`` pixels are held (a batch is of one
shape), and each batch is written before the next inputs are read.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Optional, Sequence

from tqdm import tqdm
import numpy as np

from scsnet_jax import color, image_files, image_io, planning
from scsnet_jax import reference_gallery
from scsnet_jax.errors import UserError, file_line, first_line, printable
from scsnet_jax.inference import predictor as predictor_lib
from scsnet_jax.inference import runner as runner_lib
from scsnet_jax.inference.predictor import NlabPredictor
from scsnet_jax.models.generator import DTYPES
from scsnet_jax.retrieval.choices import choice_line

# -------------------------------------------------------------- arguments ---
def parse_scale(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    value = math.nan
  if not math.isfinite(value) or value <= 0:
    raise argparse.ArgumentTypeError(
        f'scale must be a positive number, got {text!r}')
  return value


def parse_size(text: str) -> tuple[int, int]:
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


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m scsnet_jax.predict',
      description='Gray low-resolution images -> colour images at any size.')
  runner_lib.add_model_arguments(
      parser, max_output_pixels=predictor_lib.DEFAULT_MAX_OUTPUT_PIXELS)
  parser.add_argument('--input', required=True, nargs='+',
                      help='files, folders or glob patterns')
  parser.add_argument('--output', required=True,
                      help='output folder (created if needed); one '
                           '<input name>.png per input')
  target = parser.add_mutually_exclusive_group(required=True)
  target.add_argument('--scale', type=parse_scale, help='magnification, e.g. 4 '
                      'or 2.5 or 0.5')
  target.add_argument('--size', type=parse_size, help='output WIDTHxHEIGHT')
  references = parser.add_mutually_exclusive_group()
  references.add_argument('--reference', default=None,
                          help='colour reference: one image for all inputs, '
                               'or a folder matched by file name (default: '
                               'automatic mode)')
  reference_gallery.add_gallery_arguments(parser, references)
  parser.add_argument('--dtype', choices=tuple(DTYPES), default='float32',
                      help='compute dtype; an image that is not finite in '
                           'bfloat16 is recomputed in float32 (default: '
                           '%(default)s)')
  parser.add_argument('--batch-size', type=runner_lib.positive_int,
                      default=1,
                      help='inputs of the same size run together '
                           '(default: %(default)s)')
  parser.add_argument('--max-batch-pixels', type=runner_lib.positive_int,
                      default=planning.DEFAULT_MAX_BATCH_PIXELS,
                      help='at most this many pixels (per image the larger '
                           'of its input and output) are held waiting for '
                           'a batch; a larger image runs alone (default: '
                           '%(default)s)')
  existing = parser.add_mutually_exclusive_group()
  existing.add_argument('--overwrite', action='store_true',
                        help='replace existing outputs (an output that is an '
                             'input or a reference is always refused)')
  existing.add_argument('--skip-existing', action='store_true',
                        help='leave inputs whose output exists alone and '
                             'count them as done (rerun after an interrupt)')
  return parser


def parse_args(argv: Sequence[str],
               parser: Optional[argparse.ArgumentParser] = None
               ) -> argparse.Namespace:
  """``argv`` through ``parser`` (default: predict's) and the model and
  gallery checks (usage errors exit 2); the starter note on stderr."""
  parser = parser or build_parser()
  args = parser.parse_args(argv)
  reference_gallery.check_gallery_arguments(parser, args)
  note = runner_lib.check_model_arguments(parser, args)
  if note:   # the starter weights
    print(note, file=sys.stderr)
  return args


# ------------------------------------------------------------------- main ---
class _Report:
  """Counts and one-line messages (through tqdm, so the bar stays intact)."""

  def __init__(self, bar):
    self.bar, self.written, self.failed, self.recomputed = bar, 0, 0, 0
    self.skipped = 0

  def say(self, line: str):
    (self.bar.write if self.bar is not None else print)(line, file=sys.stderr)

  def fail(self, path: str, error):
    """``error: PATH: reason``, the name escaped and whole (file_line)."""
    self.say(f'error: {file_line(path, error)}')
    self.failed += 1


def _run_batch(runner: NlabPredictor, items: list, out_size,
               report: _Report, args: argparse.Namespace):
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
      report.say(f'warning: {printable(item["path"])}: non-finite values '
                 'in bfloat16; recomputed in float32')
    pixels = image_files.attach_alpha(color.nlab_to_rgb8(out[index]),
                                      item['alpha'], out_size)
    dest = printable(item['dest'])
    if not args.overwrite and os.path.lexists(item['dest']):  # appeared
      if args.skip_existing:
        report.skipped += 1
      else:
        report.fail(item['path'], f'output {dest} appeared during the '
                    'run; refusing to replace it (pass --overwrite)')
      continue
    try:
      image_files.write_png_atomic(item['dest'], pixels)
      report.written += 1
    except OSError as error:
      report.fail(item['path'], f'cannot write {dest} '
                  f'({error.strerror or error})')


def _prepare(path: str, dest: str, args, matcher, chooser=None,
             say=print) -> tuple:
  """Decodes one input: (batch key, item, pixels held); raises OSError or
  UserError (ImageDecodeError is one) for a bad input. With a gallery
  ``chooser``, prints (``say``) the reference it chose."""
  pixels, alpha = image_io.read_image_and_alpha(path)
  height, width = pixels.shape[:2]
  out_size = predictor_lib.resolve_output_size(
      height, width, scale=args.scale, size=args.size,
      max_pixels=args.max_output_pixels)
  gray = color.rgb8_to_gray(pixels)
  if chooser is not None:
    choice = chooser.choose(path, gray, dest)
    say(choice_line(choice))
    ref_pixels = image_io.read_image(choice.reference)
  else:
    ref_pixels = matcher.load(path)
  reference = (None if ref_pixels is None else
               runner_lib.reference_nlab(ref_pixels))
  item = {'path': path, 'dest': dest, 'reference': reference,
          'alpha': alpha, 'gray': gray}
  key = (height, width, out_size,
         None if reference is None else reference.shape)
  return key, item, max(height * width, out_size[0] * out_size[1])


def run(args: argparse.Namespace) -> int:
  files, input_errors = image_files.collect_inputs(args.input)
  for message in input_errors:
    print(f'error: {printable(message)}', file=sys.stderr)
  chooser = None
  try:
    planning.check_output_dir(args.output)
    protected = image_files.protected_references(args.reference)
    if args.reference_gallery is not None and files:
      chooser = reference_gallery.open_chooser(args.reference_gallery,
                                               args.top_k)
      protected += [chooser.gallery.path(row)
                    for row in range(len(chooser.gallery))]
    plan, refused = planning.plan_outputs(
        files, args.output, overwrite=args.overwrite,
        protected=protected, skip_existing=args.skip_existing)
    for message in refused:   # before the model loads: fix, then rerun
      print(f'error: {printable(message)}', file=sys.stderr)
    matcher = image_files.ReferenceMatcher(args.reference)  # reads a file
    for line in matcher.take_warnings():
      print(printable(line), file=sys.stderr)
    if plan:
      runner = runner_lib.load_runner(
          args.checkpoint, dtype=args.dtype, tile=args.tile,
          tile_overlap=args.tile_overlap)
      if ((args.reference is not None or chooser is not None)
          and not runner.referential):
        flag = '--reference' if chooser is None else '--reference-gallery'
        raise UserError(f'{args.checkpoint}: model has no referential mode; '
                        f'run without {flag}')
  except (OSError, UserError) as error:
    print(f'error: {first_line(error)}', file=sys.stderr)
    return 1
  if not files:
    print('error: no input images', file=sys.stderr)
    return 1

  bar = tqdm(total=len(plan), unit='img', file=sys.stderr,
             disable=len(plan) <= 1)
  report = _Report(bar if len(plan) > 1 else None)
  report.skipped = len(files) - len(plan) - len(refused)
  batcher = planning.Batcher(args.batch_size, args.max_batch_pixels)
  for path, dest in plan:
    try:
      key, item, pixels = _prepare(
          path, dest, args, matcher, chooser,
          say=lambda line: (bar.write if len(plan) > 1 else print)(
              line, file=sys.stdout))
    except (OSError, UserError) as error:  # ImageDecodeError is one
      report.fail(path, error)
      bar.update(1)
      continue
    finally:
      for line in matcher.take_warnings():
        report.say(printable(line))
    for ready_key, items in batcher.add(key, item, pixels):
      _run_batch(runner, items, ready_key[2], report, args)
    bar.update(1)
  for key, items in batcher.drain():
    _run_batch(runner, items, key[2], report, args)
  bar.close()
  if chooser is not None and chooser.records:
    try:
      chooser.write_json(args.output)
    except OSError as error:
      report.fail(os.path.join(args.output, 'references.json'), error)
  failed = report.failed + len(input_errors) + len(refused)
  extra = (f'; {report.recomputed} recomputed in float32'
           if report.recomputed else '')
  skipped = (f', {report.skipped} skipped (already there)'
             if report.skipped else '')
  print(f'done: {report.written} written to {printable(args.output)}'
        f'{skipped}, {failed} failed{extra}')
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
