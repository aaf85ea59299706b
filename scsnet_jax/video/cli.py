"""Colourise and enlarge a video: ``python -m scsnet_jax.video``.

  python -m scsnet_jax.video --input clip.mp4 --output out.mp4 \\
      (--scale 2 | --size 1280x720) [--reference photo.jpg |
       --reference-gallery photos/ [--top-k K]] [--checkpoint DIR] \\
      [--per-frame] [--propagate-from keyframe|previous|both] \\
      [--hold 0.95] [--cut-threshold 0.25] [--crf 18] [--codec libx264] \
      [--overwrite]

Frames are decoded, coloured and encoded one at a time (memory does not
grow with the clip); frame rate, timestamps (so frame count and duration)
and the rotation are kept; the audio stream is copied packet for packet.
Colour or gray input alike is made gray through CIE L first. Keyframes (the
start, each scene cut) are coloured automatically or from the reference;
the frames after them from the output already made, their colours held
where the picture holds still (``propagate``).
``--size`` is the displayed WIDTHxHEIGHT (a rotated clip's stored frames
are the other way round). The output appears only when it is complete
(temporary file in its folder, renamed at the end); a bad input, an
unwritable output or Ctrl-C leave nothing. Problems are one ``error:``
line on stderr and a non-zero exit, as in ``scsnet_jax.predict``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional, Sequence

from tqdm import tqdm

from scsnet_jax import color, image_io, reference_gallery
from scsnet_jax.errors import UserError, first_line, printable
from scsnet_jax.inference import predictor as predictor_lib
from scsnet_jax.inference import runner as runner_lib
from scsnet_jax.models.generator import DTYPES
from scsnet_jax import predict
from scsnet_jax.predict import parse_scale, parse_size
from scsnet_jax.retrieval.api import retrieve
from scsnet_jax.video import io as video_io
from scsnet_jax.video import propagate, scenes

# Outputs are frames, many of them: a lower cap than predict's.
DEFAULT_MAX_OUTPUT_PIXELS = 3840 * 2160


def _crf(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    value = -1
  if not 0 <= value <= 63:
    raise argparse.ArgumentTypeError(f'crf must be 0 to 63, got {text!r}')
  return value


def _threshold(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    value = -1.0
  if not 0.0 < value <= 1.0:
    raise argparse.ArgumentTypeError(
        f'cut threshold must be in (0, 1], got {text!r}')
  return value


def _hold(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    value = -1.0
  if not 0.0 <= value < 1.0:
    raise argparse.ArgumentTypeError(f'hold must be in [0, 1), got {text!r}')
  return value


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m scsnet_jax.video',
      description='Gray (or colour) video -> coloured, enlarged video.')
  runner_lib.add_model_arguments(
      parser, max_output_pixels=DEFAULT_MAX_OUTPUT_PIXELS)
  parser.add_argument('--input', required=True, help='a video file')
  parser.add_argument('--output', required=True,
                      help='the output video (.mp4, .mkv, .mov, ...)')
  target = parser.add_mutually_exclusive_group(required=True)
  target.add_argument('--scale', type=parse_scale, help='magnification, e.g. 2')
  target.add_argument('--size', type=parse_size,
                      help='output WIDTHxHEIGHT as displayed')
  references = parser.add_mutually_exclusive_group()
  references.add_argument('--reference', default=None,
                          help='a colour photo for every keyframe (default: '
                               'keyframes are coloured automatically)')
  reference_gallery.add_gallery_arguments(parser, references)
  parser.add_argument('--per-frame', action='store_true',
                      help='colour every frame on its own (automatic, or '
                           'from --reference): the flickering baseline')
  parser.add_argument('--propagate-from', choices=propagate.SOURCES,
                      default=propagate.DEFAULT_SOURCE,
                      help='reference for the frames after a keyframe '
                           '(default: %(default)s; docs/video.md)')
  parser.add_argument('--hold', type=_hold, default=propagate.DEFAULT_HOLD,
                      help='how strongly still areas keep the previous '
                           "frame's colours, 0 to below 1; 0 = off "
                           '(default: %(default)s)')
  parser.add_argument('--cut-threshold', type=_threshold,
                      default=scenes.DEFAULT_THRESHOLD,
                      help='scene cut: fraction of pixels whose lightness '
                           'band changes (default: %(default)s)')
  parser.add_argument('--crf', type=_crf, default=video_io.DEFAULT_CRF,
                      help='quality, lower is better (default: %(default)s)')
  parser.add_argument('--codec', default=video_io.DEFAULT_CODEC,
                      help='video encoder (default: %(default)s, '
                           f'{video_io.DEFAULT_PIX_FMT})')
  parser.add_argument('--dtype', choices=tuple(DTYPES), default='float32',
                      help='compute dtype (default: %(default)s)')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace an existing output file')
  return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  """predict's parsing and checks with this command's parser."""
  return predict.parse_args(argv, build_parser())


# ------------------------------------------------------------------ checks ---
def output_size(clip: video_io.Clip, args) -> tuple[int, int]:
  """(Ht, Wt) of the stored output frames; even for 4:2:0 (``--scale``
  rounds down to even, ``--size`` must be even)."""
  size = args.size
  if size is not None and clip.rotation in (90, 270):
    size = (size[1], size[0])   # displayed WxH -> stored
  height, width = predictor_lib.resolve_output_size(
      clip.height, clip.width, scale=args.scale, size=size,
      max_pixels=args.max_output_pixels)
  if video_io.DEFAULT_PIX_FMT == 'yuv420p' and (height % 2 or width % 2):
    if args.size is not None:
      raise UserError(f'--size {args.size[1]}x{args.size[0]}: yuv420p '
                      'video needs an even width and height')
    height, width = max(2, height - height % 2), max(2, width - width % 2)
  return height, width


def check_output(args) -> None:
  out = os.path.abspath(args.output)
  if out == os.path.abspath(args.input):
    raise UserError(f'{args.output}: is the input; choose another output')
  folder = os.path.dirname(out)
  if not os.path.isdir(folder):
    raise UserError(f'{os.path.dirname(args.output)}: no such folder')
  if os.path.lexists(out) and not args.overwrite:
    raise UserError(f'{args.output}: exists; pass --overwrite to replace it')


def keyframe_reference(args):
  """The keyframes' reference as ``propagate.KeyframeReference`` (None:
  automatic). A gallery is searched anew at every keyframe."""
  if args.reference is not None:
    pixels = image_io.read_image(args.reference)
    return lambda gray: pixels
  if args.reference_gallery is not None:
    gallery = reference_gallery.open_chooser(args.reference_gallery,
                                             args.top_k).gallery

    def from_gallery(gray):
      best = retrieve(gray, gallery, top_k=args.top_k)[0]
      tqdm.write(f'keyframe reference: {printable(gallery.path(best))} '
                 f'(similarity {best.score:.3f})', file=sys.stderr)
      return image_io.read_image(gallery.path(best))
    return from_gallery
  return None


# -------------------------------------------------------------------- run ---
def run(args: argparse.Namespace, on_frame=None) -> int:
  """The command; ``on_frame(index)`` after each frame is written (the
  measurement samples memory there)."""
  writer = None
  try:
    video_io.check_codec(args.codec)
    clip = video_io.probe(args.input)
    check_output(args)
    out_size = output_size(clip, args)
    reference = keyframe_reference(args)
    runner = runner_lib.load_runner(args.checkpoint, dtype=args.dtype,
                                    tile=args.tile,
                                    tile_overlap=args.tile_overlap)
    if reference is not None and not runner.referential:
      raise UserError(f'{args.checkpoint}: model has no referential mode; '
                      'run without a reference')
    colourer = propagate.Propagator(
        runner, out_size, source=args.propagate_from,
        per_frame=args.per_frame, keyframe_reference=reference,
        cut_threshold=args.cut_threshold, hold=args.hold)
    writer = video_io.Writer(args.output, clip, out_size, codec=args.codec,
                             crf=args.crf)
    start = time.monotonic()
    bar = tqdm(total=clip.frame_count or None, unit='frame', file=sys.stderr,
               desc='colouring', dynamic_ncols=True)
    with bar:
      for index, rgb, pts in video_io.frames(clip, writer.mux_audio):
        nlab, _ = colourer.colour(color.rgb8_to_gray(rgb))
        writer.write(color.nlab_to_rgb8(nlab), pts)
        bar.update(1)
        if on_frame is not None:
          on_frame(index)
    writer.close()
  except (OSError, UserError, *video_io.FFMPEG_ERRORS) as error:
    if writer is not None:
      writer.abort()
    print(f'error: {first_line(error)}', file=sys.stderr)
    return 1
  except BaseException:
    if writer is not None:
      writer.abort()
    raise
  seconds = time.monotonic() - start
  frames = colourer.frames
  print(f'done: {frames} frames ({len(colourer.keyframes)} scenes) '
        f'{clip.width}x{clip.height} -> {out_size[1]}x{out_size[0]} '
        f'written to {printable(args.output)} in {seconds:.1f} s '
        f'({frames / max(seconds, 1e-9):.2f} frames/s)')
  return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    return run(args)
  except KeyboardInterrupt:
    print('interrupted; no output written', file=sys.stderr)
    return 130


if __name__ == '__main__':
  sys.exit(main())
