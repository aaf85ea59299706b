"""The retrieval benchmark's parts: view-pair geometry, recall against a
hand count, the synthetic index, the speed rows (stand-in embedder)."""

import numpy as np
import pytest
from PIL import Image

from scsnet_jax.retrieval import benchmark as bench
from scsnet_jax.retrieval import features as features_lib
from scsnet_jax.retrieval import ranking
from scsnet_jax.retrieval.features import Features
from tests.retrieval.index_test import FakeEmbedder


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_recall_counts_partners_at_rank_one_and_five():
  rng = np.random.default_rng(0)
  n = 8
  grid = _unit(rng.normal(size=(n, 9, 320))).reshape(n, -1)
  hist = np.full((n, features_lib.HIST_BINS), 1 / features_lib.HIST_BINS)
  gallery = Features(_unit(rng.normal(size=(n, 320))), grid, hist)
  partners = [0, 1, 2, 3]
  queries = Features(gallery.pooled[[0, 1, 5, 6]], gallery.grid[[0, 1, 5, 6]],
                     hist[:4])
  got = bench.recall(queries, gallery, partners,
                     weights=ranking.Weights(1, 0, 0))
  # Queries 0 and 1 are their partners; 2 and 3 are other photos: the hand
  # count of their partners' ranks by cosine gives recall@5.
  cosine = gallery.pooled @ queries.pooled[2:].T
  within5 = sum(int(p in np.argsort(-cosine[:, i])[:5])
                for i, p in enumerate((2, 3)))
  assert got['recall_at_1'] == 0.5
  assert got['recall_at_5'] == (2 + within5) / 4


def test_synthetic_index_and_speed_rows():
  index = bench.synthetic_index(50)
  assert index.pooled.dtype == np.float16 and index.grid.shape == (50, 2880)
  np.testing.assert_allclose(np.linalg.norm(
      index.pooled.astype(np.float32), axis=1), 1, atol=2e-3)
  np.testing.assert_allclose(index.hist.astype(np.float32).sum(1), 1,
                             atol=5e-3)

  class Embedder(FakeEmbedder):
    def embed_gray(self, gray):
      return self.embed_light(features_lib.lightness_from_gray(gray)[None])
  row = bench.bench_query(Embedder(), count=50, repeats=2)
  assert row['index_photos'] == 50 and row['cache_read_entries'] == 50
  assert 0 < row['query_s'] and row['index_ram_mb'] == pytest.approx(
      50 * (320 + 2880 + 32) * 2 / 2**20)


def test_indexing_row(tmp_path):
  paths = []
  for i in range(3):
    path = tmp_path / f'{i}.png'
    Image.fromarray(np.full((30, 40, 3), 60 * i, np.uint8)).save(path)
    paths.append(str(path))
  (tmp_path / 'bad.png').write_bytes(b'x')
  row = bench.bench_indexing(FakeEmbedder(), paths + [str(tmp_path /
                                                          'bad.png')])
  assert row['photos'] == 3 and row['failed'] == 1
  assert row['reembedded_on_rerun'] == 0 and row['photos_per_s'] > 0
  assert row['ram_bytes_per_entry'] == (320 + 2880 + 32) * 2
