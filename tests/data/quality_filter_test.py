"""data/quality_filter.py: small, gray and broken files dropped; cached."""

import json

import numpy as np
import pytest

from scsnet_jax.data import quality_filter
from scsnet_jax.data import sources as data_sources
from scsnet_jax.data.sources import DataError
from tests.data.sources_test import _png_bytes


def test_quality_filter_drops_small_and_gray_images_and_caches(
    tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  colourful = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
  gray = np.repeat(rng.integers(0, 256, (128, 128, 1), dtype=np.uint8), 3, -1)
  folder = tmp_path / 'images'
  folder.mkdir()
  (folder / 'a_colourful.png').write_bytes(_png_bytes(colourful))
  (folder / 'b_gray.png').write_bytes(_png_bytes(gray))
  (folder / 'c_small.png').write_bytes(_png_bytes(colourful[:8, :8]))
  (folder / 'd_broken.png').write_bytes(b'not an image' * 5000)
  source = data_sources.folder_source(str(folder), 'train', 0.0)
  kwargs = dict(min_file_bytes=1000, min_colorfulness=20.0,
                cache_dir=str(tmp_path / 'cache'), num_threads=2)
  kept = quality_filter.quality_filter(source, **kwargs)
  assert [kept.describe(i) for i in range(len(kept))] == [
      str(folder / 'a_colourful.png')]
  (index_file,) = (tmp_path / 'cache').iterdir()
  assert json.loads(index_file.read_text())['kept'] == [0]

  with pytest.raises(DataError, match='no image passes'):
    quality_filter.quality_filter(source, min_file_bytes=10**9,
                                  min_colorfulness=0.0,
                                  cache_dir=str(tmp_path / 'cache2'))

  def must_not_recompute(*args):
    raise AssertionError('filter recomputed instead of read from the cache')
  monkeypatch.setattr(quality_filter, '_passes_filter', must_not_recompute)
  assert len(quality_filter.quality_filter(source, **kwargs)) == 1
