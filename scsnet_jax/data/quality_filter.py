"""The optional "ImageNet-C" quality filter of a source.

Drops small files and near-gray images (Hasler-Suesstrunk colourfulness on a
<=256 px thumbnail), computes the kept list once and caches it as JSON, and
serves the rest as a ``SubsetSource``. ``config.data.quality_filter``
switches it on (``from_config``).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os

import numpy as np

from scsnet_jax import atomic
from scsnet_jax import color, image_io
from scsnet_jax.data.sources import DataError, note_skipped

FILTER_THUMBNAIL = (256, 256)  # colourfulness is measured on a JPEG draft
_FILTER_CHUNK = 10_000


class SubsetSource:
  """The items of ``base`` listed in ``indices`` (e.g. after filtering)."""

  def __init__(self, base, indices):
    self.base = base
    self.indices = np.asarray(indices, dtype=np.int64)

  def __len__(self) -> int:
    return len(self.indices)

  def describe(self, index: int) -> str:
    return self.base.describe(int(self.indices[index]))

  def encoded(self, index: int) -> bytes:
    return self.base.encoded(int(self.indices[index]))

  def load(self, index: int) -> np.ndarray:
    return self.base.load(int(self.indices[index]))

  def fingerprint(self) -> str:
    return f'subset({len(self)}):' + self.base.fingerprint()


def _passes_filter(source, index, min_file_bytes, min_colorfulness):
  try:
    data = source.encoded(index)
    if len(data) < min_file_bytes:
      return False
    if min_colorfulness <= 0:
      return True
    pixels = image_io.decode_image(data, name=source.describe(index),
                                   draft_size=FILTER_THUMBNAIL)
  except (OSError, image_io.ImageDecodeError) as error:
    note_skipped(source.describe(index), error)
    return False
  return color.colorfulness(pixels) >= min_colorfulness


def filter_index_path(source, min_file_bytes, min_colorfulness, cache_dir):
  key = json.dumps([source.fingerprint(), int(min_file_bytes),
                    float(min_colorfulness)])
  digest = hashlib.sha1(key.encode()).hexdigest()[:16]
  cache_dir = cache_dir or os.path.join(
      os.path.expanduser('~'), '.cache', 'scsnet_jax', 'filter_index')
  return os.path.join(cache_dir, f'filter_{digest}.json')


def quality_filter(source, *, min_file_bytes: int, min_colorfulness: float,
                   cache_dir: str = '', num_threads: int = 8):
  """The "ImageNet-C" subset: files >= ``min_file_bytes`` whose colourfulness
  (Hasler-Suesstrunk M3, on a <=256 px thumbnail) is >= ``min_colorfulness``.

  Computed once and cached as JSON under ``cache_dir`` (keyed by the source's
  contents and the thresholds); later calls read the cache.
  Returns a ``SubsetSource``; raises ``DataError`` if nothing passes.
  """
  path = filter_index_path(source, min_file_bytes, min_colorfulness, cache_dir)
  kept = None
  if os.path.exists(path):
    with open(path) as f:
      cached = json.load(f)
    if cached.get('num_total') == len(source):
      kept = cached['kept']
  if kept is None:
    kept = []
    check = lambda i: _passes_filter(source, i, min_file_bytes,
                                     min_colorfulness)
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
      for start in range(0, len(source), _FILTER_CHUNK):  # bounded memory
        chunk = range(start, min(start + _FILTER_CHUNK, len(source)))
        kept.extend(i for i, ok in zip(chunk, pool.map(check, chunk)) if ok)
        logging.info('quality filter: %d of %d checked, %d kept',
                     chunk.stop, len(source), len(kept))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Atomic: concurrent processes may race here.
    atomic.write_json(path, {'source': source.fingerprint(),
                             'num_total': len(source),
                             'min_file_bytes': min_file_bytes,
                             'min_colorfulness': min_colorfulness,
                             'kept': kept})
    logging.info('quality filter kept %d of %d images; index %s', len(kept),
                 len(source), path)
  if not kept:
    raise DataError(f'{source.fingerprint()}: no image passes the quality '
                    f'filter (min_file_bytes={min_file_bytes}, '
                    f'min_colorfulness={min_colorfulness})')
  return SubsetSource(source, kept)


def from_config(source, quality_config):
  """``source`` filtered as ``config.data.quality_filter`` asks (or as is)."""
  if not quality_config.enabled:
    return source
  return quality_filter(source, min_file_bytes=quality_config.min_file_bytes,
                        min_colorfulness=quality_config.min_colorfulness,
                        cache_dir=quality_config.cache_dir,
                        num_threads=quality_config.num_threads)
