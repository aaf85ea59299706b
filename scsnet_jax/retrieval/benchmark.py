"""Retrieval figures for ``python -m scsnet_jax.benchmark --what=retrieval``.

- ``views``: pairs of views of one photograph (``view_pairs.view_pair``:
  the gray low-resolution query part and its mirrored colour partner, which
  do not overlap). Every photo's partner is in the gallery, so each query has all the other
  partners as distractors.
- ``subjects``: pairs of different photos of one subject or scene (opencv-doc's
  stereo and viewpoint pairs, ``SUBJECT_PAIRS``), queried the same way.
- recall@1 and @5 per ranking ``Weights`` setting (``WEIGHT_GRID``): the
  weights are measured, not assumed.
- speed: indexing photos/s from the files (decode included), query latency
  (features of one gray input plus ranking a 10,000-photo index);
- memory: bytes per entry in RAM and in the cache, a synthetic 10,000-photo
  index written and read back.
The colour measurement (CIEDE2000 with the retrieved reference) is
``colour_benchmark``. Every function returns JSON-ready dicts.
"""

from __future__ import annotations

import glob
import os
import resource
import tempfile
import time
from typing import Optional

import numpy as np
from PIL import Image

from scsnet_jax import color
from scsnet_jax.retrieval import features as features_lib
from scsnet_jax.retrieval import index as index_lib
from scsnet_jax.retrieval import ranking
from scsnet_jax.retrieval.view_pairs import (LR_SIZE, describe_gallery,
                                             describe_queries, read_photo,
                                             view_pair)
from scsnet_jax.retrieval.features import Embedder, Features

OPENCV = '/usr/share/doc/opencv-doc/examples/data/'
# opencv-doc's colour photographs (Debian's opencv-doc; none is in the
# photos_cpu training corpus or the scikit-image validation photos).
HELD_OUT = tuple(OPENCV + name for name in (
    'HappyFish.jpg', 'aero1.jpg', 'aloeL.jpg', 'apple.jpg', 'baboon.jpg',
    'board.jpg', 'building.jpg', 'butterfly.jpg', 'ela_original.jpg',
    'fruits.jpg', 'graf1.png', 'home.jpg', 'left.jpg', 'leuvenA.jpg',
    'licenseplate_motion.jpg', 'messi5.jpg', 'orange.jpg',
    'rubberwhale1.png', 'smarties.png', 'squirrel_cls.jpg')) + tuple(
    '/usr/share/doc/opencv-doc/examples/text/scenetext0%d.jpg' % i
    for i in (1, 4, 6))
SUBJECT_PAIRS = tuple((OPENCV + a, OPENCV + b) for a, b in (
    ('aero1.jpg', 'aero3.jpg'), ('aloeL.jpg', 'aloeR.jpg'),
    ('graf1.png', 'graf3.png'), ('leuvenA.jpg', 'leuvenB.jpg'),
    ('rubberwhale1.png', 'rubberwhale2.png'), ('left.jpg', 'right.jpg'),
    ('ela_original.jpg', 'ela_modified.jpg')))
WEIGHT_GRID = {
    'cosine only': ranking.Weights(1.0, 0.0, 0.0),
    'cosine + histogram 0.25 (He et al.)': ranking.Weights(1.0, 0.0, 0.25),
    'cosine + spatial 0.5': ranking.Weights(1.0, 0.5, 0.0),
    'cosine + spatial 0.5 + histogram 0.25': ranking.Weights(1.0, 0.5, 0.25),
    'cosine + spatial 1.0 + histogram 0.25': ranking.Weights(1.0, 1.0, 0.25),
    'cosine + spatial 1.0 + histogram 0.5': ranking.Weights(1.0, 1.0, 0.5),
}


def expand(globs) -> list[str]:
  """Comma-separated or listed globs -> sorted existing files, no repeats."""
  if isinstance(globs, str):
    globs = [g for g in globs.split(',') if g]
  return sorted({p for g in globs for p in glob.glob(g) if os.path.isfile(p)})


def recall(queries: Features, gallery: Features, partners: list[int], *,
           weights: ranking.Weights, top_k: int = ranking.DEFAULT_TOP_K
           ) -> dict:
  """Recall@1 and @5 of each query's partner row (float16 gallery, as the
  index stores it), and the rank list of the misses."""
  stored = Features(*(a.astype(np.float16) for a in
                      (gallery.pooled, gallery.grid, gallery.hist)))
  names = [f'{i:06d}' for i in range(len(gallery))]
  hits1 = hits5 = 0
  for q, partner in enumerate(partners):
    rows = [m.row for m in ranking.rank(queries.row(q), stored, names,
                                        top_k=max(top_k, 5), weights=weights)]
    hits1 += rows[:1] == [partner]
    hits5 += partner in rows[:5]
  count = max(len(partners), 1)
  return {'recall_at_1': hits1 / count, 'recall_at_5': hits5 / count,
          'queries': len(partners), 'gallery': len(gallery)}


def bench_recall(embedder: Embedder, photos: list[str],
                 pairs=SUBJECT_PAIRS) -> list[dict]:
  """View pairs of ``photos`` and subject ``pairs``: one row per weights
  setting and pair kind."""
  views = [view_pair(read_photo(p)) for p in photos]
  queries = describe_queries(embedder, [v['gray'] for v in views])
  partners = describe_gallery(embedder, [v['partner'] for v in views])
  rows = []
  for label, weights in WEIGHT_GRID.items():
    rows.append({'part': 'retrieval', 'measure': 'recall', 'pairs': 'views',
                 'weights': label, **weights._asdict(),
                 **recall(queries, partners, list(range(len(views))),
                          weights=weights)})
  pairs = [(a, b) for a, b in pairs if os.path.exists(a) and os.path.exists(b)]
  if pairs:
    in_pairs = {os.path.realpath(p) for pair in pairs for p in pair}
    keep = [i for i, p in enumerate(photos)
            if os.path.realpath(p) not in in_pairs]
    grays = []
    for a, _ in pairs:   # the whole first photo, gray, 64 px short side
      image = Image.fromarray(read_photo(a))
      factor = LR_SIZE[0] / min(image.size)
      image = image.resize((round(image.width * factor),
                            round(image.height * factor)),
                           Image.Resampling.BICUBIC)
      grays.append(color.rgb8_to_gray(np.asarray(image)))
    subject_queries = describe_queries(embedder, grays)
    seconds = describe_gallery(embedder, [read_photo(b) for _, b in pairs])
    gallery = Features.concatenate([seconds] + [partners.row(i) for i in keep])
    for label, weights in WEIGHT_GRID.items():
      rows.append({'part': 'retrieval', 'measure': 'recall',
                   'pairs': 'subjects', 'weights': label, **weights._asdict(),
                   **recall(subject_queries, gallery, list(range(len(pairs))),
                            weights=weights)})
  return rows


def _rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_indexing(embedder: Embedder, photos: list[str]) -> dict:
  """Indexes the photo files (symlinked into a temporary folder) cold, then
  again (all cached); photos/s includes reading and decoding."""
  with tempfile.TemporaryDirectory() as folder, \
       tempfile.TemporaryDirectory() as cache:
    for i, path in enumerate(photos):
      os.symlink(os.path.abspath(path),
                 os.path.join(folder, f'{i:05d}_{os.path.basename(path)}'))
    embedder.embed_light(np.zeros((embedder.batch_size, 224, 224),
                                  np.float32))   # compile outside the timing
    start = time.perf_counter()
    built = index_lib.build_index(folder, embedder, cache_dir=cache,
                                  on_error=lambda line: None)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again = index_lib.build_index(folder, embedder, cache_dir=cache)
    warm = time.perf_counter() - start
    cache_bytes = os.path.getsize(index_lib.cache_path(folder, cache))
  entry = sum(a.nbytes for a in (built.features.pooled, built.features.grid,
                                 built.features.hist)) / max(len(built), 1)
  return {'part': 'retrieval', 'measure': 'indexing', 'photos': len(built),
          'failed': built.failed, 'seconds': cold,
          'photos_per_s': len(built) / cold, 'cached_rerun_s': warm,
          'reembedded_on_rerun': again.built,
          'ram_bytes_per_entry': entry,
          'cache_bytes_per_entry': cache_bytes / max(len(built), 1),
          'peak_rss_mb': _rss_mb()}


def synthetic_index(count: int, seed: int = 0) -> Features:
  """``count`` random unit descriptors in float16 (memory and speed only)."""
  rng = np.random.default_rng(seed)

  def unit(shape):
    x = rng.standard_normal(shape, dtype=np.float32)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float16)
  cells = features_lib.GRID * features_lib.GRID
  hist = rng.uniform(size=(count, features_lib.HIST_BINS)).astype(np.float32)
  return Features(unit((count, features_lib.POOLED_DIM)),
                  unit((count, cells, features_lib.GRID_DIM // cells)
                       ).reshape(count, -1),
                  (hist / hist.sum(1, keepdims=True)).astype(np.float16))


def bench_query(embedder: Embedder, count: int = 10_000,
                repeats: int = 20, gray: Optional[np.ndarray] = None) -> dict:
  """Median latency of one query: features of a (LR, LR, 1) gray input, and
  ranking a ``count``-photo index; plus that index's size in RAM and as a
  cache file (written and read back through ``index``)."""
  index = synthetic_index(count)
  names = [f'{i:06d}.jpg' for i in range(count)]
  if gray is None:
    gray = np.random.default_rng(1).uniform(
        -1, 1, LR_SIZE + (1,)).astype(np.float32)
  embedder.embed_gray(gray)   # compile
  feature_s, rank_s = [], []
  for _ in range(repeats):
    start = time.perf_counter()
    query = embedder.embed_gray(gray)
    middle = time.perf_counter()
    ranking.rank(query, index, names)
    feature_s.append(middle - start)
    rank_s.append(time.perf_counter() - middle)
  with tempfile.TemporaryDirectory() as cache:
    path = os.path.join(cache, 'big.npz')
    entries = {name: ('0' * 64, 1, 1, (index.pooled[i], index.grid[i],
                                        index.hist[i]))
               for i, name in enumerate(names)}
    start = time.perf_counter()
    index_lib._write_cache(path, 'synthetic', entries)   # pylint: disable=protected-access
    write_s = time.perf_counter() - start
    del entries
    start = time.perf_counter()
    read = index_lib._read_cache(path, 'synthetic')      # pylint: disable=protected-access
    read_s = time.perf_counter() - start
    file_bytes = os.path.getsize(path)
  return {'part': 'retrieval', 'measure': 'query', 'index_photos': count,
          'features_s': float(np.median(feature_s)),
          'rank_s': float(np.median(rank_s)),
          'query_s': float(np.median(np.add(feature_s, rank_s))),
          'index_ram_mb': sum(a.nbytes for a in (index.pooled, index.grid,
                                                 index.hist)) / 2**20,
          'cache_file_mb': file_bytes / 2**20, 'cache_write_s': write_s,
          'cache_read_s': read_s, 'cache_read_entries': len(read or {}),
          'peak_rss_mb': _rss_mb()}


def default_photos() -> list[str]:
  """The photos_cpu corpus (configs/photos_cpu.py, when run from the
  repository) and the held-out opencv-doc photos, those installed."""
  from scsnet_jax import config_lib  # pylint: disable=import-outside-toplevel
  config = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))), 'configs', 'photos_cpu.py')
  corpus = (expand(config_lib.load_config_file(config).data.folder_path)
            if os.path.exists(config) else [])
  return corpus + expand(list(HELD_OUT))


def run(record, photos: Optional[list[str]] = None,
        checkpoint: Optional[str] = None, embedder: Optional[Embedder] = None,
        index_size: int = 10_000) -> None:
  """Every retrieval measurement, each row passed to ``record`` as it is
  made; the colour rows only with a trained ``checkpoint``."""
  photos = expand(photos) if photos else default_photos()
  if not photos:
    record({'part': 'retrieval', 'skipped': 'no photos found'})
    return
  embedder = embedder or Embedder()
  record(bench_indexing(embedder, photos))
  record(bench_query(embedder, index_size))
  for row in bench_recall(embedder, photos):
    record(row)
  if checkpoint:
    from scsnet_jax.inference import runner as runner_lib  # pylint: disable=import-outside-toplevel
    from scsnet_jax.retrieval import colour_benchmark  # pylint: disable=import-outside-toplevel
    held = {os.path.realpath(p) for p in HELD_OUT}
    runner = runner_lib.load_runner(checkpoint, dtype='float32', tile=0,
                                    tile_overlap=32)
    record(colour_benchmark.bench_colour(
        runner, embedder, [p for p in photos if os.path.realpath(p) in held],
        [p for p in photos if os.path.realpath(p) not in held],
        checkpoint=checkpoint))
