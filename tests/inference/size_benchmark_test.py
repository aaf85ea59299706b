"""The mixed-size benchmark's parts: its sizes, its photos, one scenario."""

import os

import numpy as np
import pytest

from scsnet_jax.inference import predictor as predictor_lib
from scsnet_jax.inference import size_benchmark
from tests.paths import REPO_ROOT


def test_mixed_sizes_are_distinct_in_range_and_repeatable():
  sizes = size_benchmark.mixed_sizes(50, seed=3, low=64, high=80)
  assert len(set(sizes)) == 50
  assert all(64 <= side <= 80 for size in sizes for side in size)
  assert sizes == size_benchmark.mixed_sizes(50, seed=3, low=64, high=80)
  assert sizes != size_benchmark.mixed_sizes(50, seed=4, low=64, high=80)


def test_corpus_files_fall_back_to_the_shipped_sample(tmp_path):
  """Without the corpus (a root whose photos_cpu config names no files
  present) the sample image stands in."""
  os.makedirs(tmp_path / 'configs')
  with open(tmp_path / 'configs' / 'photos_cpu.py', 'w') as f:
    f.write("from scsnet_jax import config_lib\n"
            "def get_config():\n"
            "  config = config_lib.get_base_config()\n"
            f"  config.data.folder_path = '{tmp_path}/none/*.jpg'\n"
            "  return config\n")
  assert size_benchmark.corpus_files(str(tmp_path)) == [
      os.path.join(str(tmp_path), 'docs', 'images', 'chelsea_gray_lr.png')]


def test_gray_photos_have_the_asked_sizes_and_the_model_range():
  files = [os.path.join(REPO_ROOT, 'docs', 'images', 'chelsea_gray_lr.png')]
  photos = list(size_benchmark._gray_photos(files, [(40, 50), (33, 21)]))
  assert [p.shape for p in photos] == [(1, 40, 50, 1), (1, 33, 21, 1)]
  assert all(-1.0 <= p.min() and p.max() <= 1.0 for p in photos)


@pytest.mark.parametrize('distinct,programs', [(False, 1), (True, None)])
def test_a_bounded_scenario_keeps_at_most_the_cache_bound(distinct, programs):
  """Same size: one compiled program; 9 distinct sizes: no more than the
  cache bound (8), whatever the sizes."""
  row = size_benchmark.run_scenario('bounded', distinct, 9, 128, REPO_ROOT)
  assert row['photos'] == 9 and row['sizes'] == (9 if distinct else 1)
  assert row['seconds'] > 0 and row['peak_rss_mib'] > 0
  if programs is not None:
    assert row['programs_kept'] == programs
  else:
    assert 1 < row['programs_kept'] <= predictor_lib.MAX_COMPILED_WINDOWS


def test_an_unknown_model_is_refused():
  with pytest.raises(ValueError, match='tiny or full'):
    size_benchmark.run_scenario('bounded', False, 1, 128, REPO_ROOT,
                                model='shallow')
