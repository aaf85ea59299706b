"""Measure video colouring on synthetic clips: ``python -m
scsnet_jax.video.measure``.

  python -m scsnet_jax.video.measure [--checkpoint DIR] [--frames 48] \\
      [--size 128] [--scale 2] [--sources keyframe,previous,both] \\
      [--memory-frames 2000] [--json F] [--figure F]

For each clip of ``synthetic`` (pan, zoom, cut; gray input, colour truth)
it colours the frames frame by frame (``--per-frame``) and with each
propagation source, and reports per-frame CIEDE2000 against the truth,
flicker (``synthetic.flicker``; the truth's own too) and the cuts found.
Then it runs the whole command (decode, colour, encode; ``cli.run``) on a
``--memory-frames`` clip of tiny frames and samples the resident memory
every 100 frames. Prints a markdown table; ``--json`` keeps everything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Optional, Sequence

import numpy as np

from scsnet_jax import atomic, color, starter
from scsnet_jax.inference import runner as runner_lib
from scsnet_jax.video import propagate, synthetic


def colour_clip(runner, clip: synthetic.Clip, *, per_frame: bool,
                source: str = propagate.DEFAULT_SOURCE,
                hold: float = propagate.DEFAULT_HOLD,
                hold_l: float = propagate.HOLD_L) -> dict:
  """Colours ``clip`` -> its uint8 frames, keyframes and seconds."""
  size = clip.truth.shape[1:3]
  colourer = propagate.Propagator(runner, size, source=source,
                                  per_frame=per_frame, hold=hold,
                                  hold_l=hold_l)
  frames, changes = [], []
  start = time.monotonic()
  for gray in clip.gray:
    nlab, _ = colourer.colour(gray)
    frames.append(color.nlab_to_rgb8(nlab))
    changes.append(colourer.detector.last_change)
  return {'frames': np.stack(frames), 'keyframes': colourer.keyframes,
          'changes': changes, 'seconds': time.monotonic() - start}


def score(clip: synthetic.Clip, result: dict) -> dict:
  de = synthetic.ciede2000(result['frames'], clip.truth)
  found = [k for k in result['keyframes'] if k]
  return {'ciede2000': float(de.mean()), 'ciede2000_per_frame': de.tolist(),
          'flicker': synthetic.flicker(result['frames'], clip.boxes,
                                       clip.photo),
          'cuts_true': clip.cuts, 'cuts_found': found,
          'max_change_within_shots': float(max(
              c for i, c in enumerate(result['changes'])
              if i not in clip.cuts)),
          'change_at_cuts': [float(result['changes'][c]) for c in clip.cuts],
          'frames_per_s': len(clip.gray) / result['seconds']}


def rss_bytes() -> int:
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmRSS:'):
        return int(line.split()[1]) * 1024
  return 0


def write_pan_video(path: str, frames: int, size: int) -> None:
  """A gray ``frames``-frame pan over the astronaut, ``size`` px, with a
  silent audio track (the command copies it)."""
  import av  # pylint: disable=import-outside-toplevel
  photo = synthetic.photos()[0]
  with av.open(path, 'w') as out:
    video = out.add_stream('libx264', rate=24, options={'crf': '18'})
    video.width = video.height = size
    video.pix_fmt = 'yuv420p'
    for t in range(frames):
      x0 = 40 + (t % 400) * 0.5
      rgb = synthetic.render(photo, (x0, 100, 128), size)
      gray = color.gray_to_rgb8(color.rgb8_to_gray(rgb))
      out.mux(video.encode(av.VideoFrame.from_ndarray(gray, format='rgb24')))
    out.mux(video.encode(None))


def measure_memory(checkpoint: str, frames: int, size: int = 32) -> dict:
  """RSS every 100 frames of the whole command on a ``frames``-frame clip
  of ``size`` px (x2)."""
  from scsnet_jax.video import cli  # pylint: disable=import-outside-toplevel
  samples = {}
  with tempfile.TemporaryDirectory() as folder:
    source = os.path.join(folder, 'long.mp4')
    write_pan_video(source, frames, size)
    args = cli.parse_args(['--input', source, '--output',
                           os.path.join(folder, 'out.mp4'), '--scale', '2',
                           '--checkpoint', checkpoint])

    def on_frame(index):
      if (index + 1) % 100 == 0 or index == 0:
        samples[index + 1] = rss_bytes()
    start = time.monotonic()
    status = cli.run(args, on_frame=on_frame)
    seconds = time.monotonic() - start
  counts = sorted(samples)
  early = samples[min(c for c in counts if c >= 200)]
  return {'frames': frames, 'size': size, 'status': status,
          'seconds': seconds, 'rss_mib': {str(k): samples[k] / 2**20
                                          for k in counts},
          'growth_mib_after_200': (samples[counts[-1]] - early) / 2**20}


def figure(clip: synthetic.Clip, per_frame: np.ndarray,
           propagated: np.ndarray, path: str, columns: int = 6) -> None:
  """Rows: gray input (enlarged, nearest), truth, --per-frame, propagated;
  ``columns`` frames evenly spread over the clip."""
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  height, width = clip.truth.shape[1:3]
  picks = np.linspace(0, len(clip.truth) - 1, columns).round().astype(int)
  scale = height // clip.gray.shape[1]
  gray = [np.repeat(np.repeat(color.gray_to_rgb8(clip.gray[i]), scale, 0),
                    scale, 1) for i in picks]
  rows = [('input (gray, LR)', gray), ('truth', clip.truth[picks]),
          ('--per-frame', per_frame[picks]), ('propagated', propagated[picks])]
  label_w, pad = 110, 2
  canvas = Image.new('RGB', (label_w + columns * (width + pad),
                             len(rows) * (height + pad) + 14), 'white')
  draw = ImageDraw.Draw(canvas)
  for c, index in enumerate(picks):
    draw.text((label_w + c * (width + pad) + 2, 1), f'frame {index}',
              fill='black')
  for r, (label, images) in enumerate(rows):
    top = 14 + r * (height + pad)
    draw.text((4, top + height // 2 - 6), label, fill='black')
    for c, image in enumerate(images):
      canvas.paste(Image.fromarray(np.asarray(image)),
                   (label_w + c * (width + pad), top))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with atomic.open_atomic(path, 'wb') as f:
    canvas.save(f, format='PNG')


def measure_clip(runner, clip: synthetic.Clip, sources: Sequence[str]
                 ) -> tuple[dict, dict]:
  """Scores of ``clip`` per mode ('per-frame', then SOURCE[@HOLD[@HOLD_L]]
  each) and the truth's flicker; and each mode's frames."""
  modes = {'truth_flicker': synthetic.flicker(clip.truth, clip.boxes,
                                              clip.photo)}
  outputs = {}
  for source in ['per-frame'] + list(sources):
    name, hold, hold_l = (source.split('@') + ['', ''])[:3]
    result = colour_clip(runner, clip, per_frame=name == 'per-frame',
                         source=propagate.DEFAULT_SOURCE
                         if name == 'per-frame' else name,
                         hold=float(hold or propagate.DEFAULT_HOLD),
                         hold_l=float(hold_l or propagate.HOLD_L))
    outputs[source] = result['frames']
    modes[source] = score(clip, result)
    print(f'{clip.name} {source}: CIEDE2000 '
          f'{modes[source]["ciede2000"]:.2f} flicker '
          f'{modes[source]["flicker"]:.3f} cuts '
          f'{modes[source]["cuts_found"]}', file=sys.stderr, flush=True)
  return modes, outputs


def table(results: dict) -> str:
  """Markdown: per clip and mode, CIEDE2000, flicker, flicker as a
  fraction of --per-frame's (the truth row: the metric's own floor where
  undoing the motion resamples), cuts, speed."""
  lines = ['| clip | mode | CIEDE2000 | flicker | / per-frame | '
           'cuts (true -> found) | frames/s |', '|' + '---|' * 7]
  for name, modes in results['clips'].items():
    floor = modes['truth_flicker']
    base = max(modes['per-frame']['flicker'], 1e-9)
    lines.append(f'| {name} | truth | 0 | {floor:.3f} | {floor / base:.2f} | '
                 '| |')
    for mode, r in modes.items():
      if mode == 'truth_flicker':
        continue
      lines.append(
          f"| {name} | {mode} | {r['ciede2000']:.2f} | {r['flicker']:.3f} | "
          f"{r['flicker'] / base:.2f} | {r['cuts_true']} -> "
          f"{r['cuts_found']} | {r['frames_per_s']:.2f} |")
  return '\n'.join(lines)


def print_report(results: dict) -> None:
  print(table(results))
  changes = [(name, r['per-frame']['max_change_within_shots'],
              r['per-frame']['change_at_cuts'])
             for name, r in results['clips'].items()]
  print('\nluminance change (scenes.change): ' + '; '.join(
      f'{n}: max within shots {w:.3f}, at cuts {[round(c, 3) for c in a]}'
      for n, w, a in changes))
  if 'memory' in results:
    m = results['memory']
    print(f"\nmemory over {m['frames']} frames ({m['size']} px -> x2, "
          f"whole command): RSS "
          + ', '.join(f'{k}: {v:.0f} MiB' for k, v in m['rss_mib'].items()
                      if int(k) in (1, 100, 500, 1000, 1500, 2000))
          + f"; growth after frame 200: {m['growth_mib_after_200']:.1f} MiB"
          f" ({m['frames'] / m['seconds']:.1f} frames/s)")


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m scsnet_jax.video.measure')
  parser.add_argument('--checkpoint', default=starter.STARTER_DIR)
  parser.add_argument('--frames', type=int, default=48)
  parser.add_argument('--size', type=int, default=128, help='truth side')
  parser.add_argument('--scale', type=int, default=2)
  parser.add_argument('--clips', default=','.join(synthetic.KINDS))
  parser.add_argument('--sources', default=','.join(propagate.SOURCES),
                      help='propagation sources; SOURCE@HOLD@HOLD_L sets the '
                           f'hold (default {propagate.DEFAULT_HOLD}) and its '
                           f'lightness scale (default {propagate.HOLD_L})')
  parser.add_argument('--memory-frames', type=int, default=2000,
                      help='0 skips the memory run')
  parser.add_argument('--json', default=None)
  parser.add_argument('--report', default=None, metavar='JSON',
                      help='print the report of an earlier --json and exit')
  parser.add_argument('--real', default=None, metavar='VIDEO',
                      help='also a real clip (its colour frames are the '
                           'truth; a still camera is assumed)')
  parser.add_argument('--real-frames', type=int, default=48)
  parser.add_argument('--real-figure', default=None,
                      help='PNG of the real clip, like --figure')
  parser.add_argument('--figure', default=None,
                      help='PNG of the cut clip: input, truth, per-frame, '
                           'propagated (default source)')
  args = parser.parse_args(argv)
  if args.report:
    with open(args.report) as f:
      print_report(json.load(f))
    return 0
  runner = runner_lib.load_runner(args.checkpoint, dtype='float32', tile=256,
                                  tile_overlap=32)
  results = {'command': 'python -m scsnet_jax.video.measure ' +
                        ' '.join(sys.argv[1:] if argv is None else argv),
             'settings': vars(args), 'clips': {}}
  for kind in filter(None, args.clips.split(',')):
    clip = synthetic.make_clip(kind, args.frames, args.size, args.scale)
    modes, outputs = measure_clip(runner, clip, args.sources.split(','))
    results['clips'][kind] = modes
    if args.figure and kind == 'cut':
      figure(clip, outputs['per-frame'],
             outputs[args.sources.split(',')[0]], args.figure)
  if args.real:
    clip = synthetic.real_clip(args.real, args.real_frames,
                               scale=args.scale)
    modes, outputs = measure_clip(runner, clip, [propagate.DEFAULT_SOURCE])
    results['clips']['real: ' + os.path.basename(args.real)] = modes
    if args.real_figure:
      figure(clip, outputs['per-frame'], outputs[propagate.DEFAULT_SOURCE],
             args.real_figure, columns=4)
  results['compiled_programs'] = len(runner.predictor._compiled)  # pylint: disable=protected-access
  if args.memory_frames:
    results['memory'] = measure_memory(args.checkpoint, args.memory_frames)
  print_report(results)
  if args.json:
    atomic.write_text(args.json, json.dumps(results, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
