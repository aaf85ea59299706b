"""The docs' gallery picture: gray inputs, their top three gallery choices,
the result with the first choice, and the truth.

  python -m scsnet_jax.tools.gallery_figure --checkpoint runs/long \\
      --output docs/images/gallery_choices.png \\
      --photos /usr/share/doc/opencv-doc/examples/data/fruits.jpg ...

Each photo becomes a view pair (``retrieval.benchmark.view_pair``): the
gray low-resolution left part is the input, and the gallery holds the
mirrored right parts of these photos and of ``--distractors`` (default: the
retrieval benchmark's photos), so the partner competes with every other.
One row per photo: input (enlarged), choices 1-3 with their scores (the
true partner framed in green), the result, the truth.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

from scsnet_jax import color
from scsnet_jax.errors import UserError, first_line
from scsnet_jax.inference import runner as runner_lib
from scsnet_jax.retrieval import benchmark as bench
from scsnet_jax.retrieval import colour_benchmark, ranking, view_pairs
from scsnet_jax.retrieval.features import Embedder, Features

TILE = (192, 256)   # (height, width) of every panel
CAPTION = 18


def _panel(pixels: np.ndarray, caption: str, frame=None) -> Image.Image:
  image = Image.fromarray(pixels).convert('RGB')
  image.thumbnail(TILE[::-1], Image.Resampling.BICUBIC)
  panel = Image.new('RGB', (TILE[1], TILE[0] + CAPTION), 'white')
  panel.paste(image, ((TILE[1] - image.width) // 2,
                      (TILE[0] - image.height) // 2))
  draw = ImageDraw.Draw(panel)
  if frame:
    draw.rectangle((0, 0, TILE[1] - 1, TILE[0] - 1), outline=frame, width=4)
  draw.text((4, TILE[0] + 3), caption, fill='black')
  return panel


def make_figure(runner, embedder: Embedder, photos: list[str],
                distractors: list[str]) -> Image.Image:
  views = [view_pairs.view_pair(view_pairs.read_photo(p)) for p in photos]
  others = [view_pairs.view_pair(view_pairs.read_photo(p))['partner']
            for p in distractors if p not in photos]
  partners = [v['partner'] for v in views] + others
  described = view_pairs.describe_gallery(embedder, partners)
  stored = Features(*(a.astype(np.float16) for a in
                      (described.pooled, described.grid, described.hist)))
  names = [f'{i:06d}' for i in range(len(partners))]
  rows = []
  for q, (path, view) in enumerate(zip(photos, views)):
    matches = ranking.rank(embedder.embed_gray(view['gray']), stored, names)
    out = colour_benchmark.render(
        runner, view['gray'],
        colour_benchmark.fixed_reference(partners[matches[0].row]),
        view['target'].shape[:2])
    gray = color.gray_to_rgb8(view['gray'])
    enlarged = Image.fromarray(gray).resize(
        (gray.shape[1] * 4, gray.shape[0] * 4), Image.Resampling.NEAREST)
    panels = [_panel(np.asarray(enlarged), f'input {gray.shape[1]}x'
                     f'{gray.shape[0]}: {os.path.basename(path)}')]
    for rank, match in enumerate(matches[:3], 1):
      panels.append(_panel(partners[match.row],
                           f'choice {rank} ({match.score:.2f})',
                           frame='#1a9850' if match.row == q else None))
    panels.append(_panel(np.round(out * 255).astype(np.uint8),
                         'result, reference = choice 1'))
    panels.append(_panel(view['target'], 'truth'))
    rows.append(panels)
  sheet = Image.new('RGB', (TILE[1] * len(rows[0]),
                            (TILE[0] + CAPTION) * len(rows)), 'white')
  for r, panels in enumerate(rows):
    for c, panel in enumerate(panels):
      sheet.paste(panel, (c * TILE[1], r * (TILE[0] + CAPTION)))
  return sheet


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m scsnet_jax.tools.'
                                   'gallery_figure', description=__doc__,
                                   formatter_class=argparse.
                                   RawDescriptionHelpFormatter)
  parser.add_argument('--checkpoint', required=True)
  parser.add_argument('--output', required=True)
  parser.add_argument('--photos', nargs='+', required=True)
  parser.add_argument('--distractors', nargs='*', default=None,
                      help='globs (default: the retrieval benchmark photos)')
  args = parser.parse_args(argv)
  try:
    distractors = (bench.expand(args.distractors) if args.distractors
                   is not None else bench.default_photos())
    runner = runner_lib.load_runner(args.checkpoint, dtype='float32', tile=0,
                                    tile_overlap=32)
    if not runner.referential:
      raise UserError(f'{args.checkpoint}: model has no referential mode')
    figure = make_figure(runner, Embedder(), args.photos, distractors)
    figure.save(args.output)
  except (OSError, UserError) as error:
    print(f'error: {first_line(error)}', file=sys.stderr)
    return 1
  print(f'wrote {args.output}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
