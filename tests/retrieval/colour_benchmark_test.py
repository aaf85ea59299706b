"""The colour rows with a stand-in model that paints the reference's mean
colour: with flat photos the true partner's CIEDE2000 is near 0, so the
rows' order and the target flags are known in advance."""

import numpy as np
import pytest
from PIL import Image

from scsnet_jax.retrieval import colour_benchmark
from scsnet_jax.retrieval import features as features_lib
from tests.retrieval.index_test import FakeEmbedder

pytest.importorskip('skimage', reason='CIEDE2000 uses scikit-image')

COLOURS = [(200, 40, 40), (40, 160, 60), (50, 60, 200), (220, 200, 40)]


class MeanColourRunner:
  """L from the gray input (nearest enlargement), a and b from the
  reference's mean (0 without one)."""
  referential = True

  def predict_nlab(self, gray, reference, out_size, interrupt=None):
    height, width = out_size
    rows = np.arange(height) * gray.shape[1] // height
    cols = np.arange(width) * gray.shape[2] // width
    light = gray[:, rows][:, :, cols]
    ab = (np.zeros(2, np.float32) if reference is None
          else reference[0, ..., 1:].mean(axis=(0, 1)))
    return np.concatenate([light, np.broadcast_to(
        ab, light.shape[:3] + (2,))], axis=-1), []


class Embedder(FakeEmbedder):
  """Unit descriptors peaked at the image's mean lightness, so that photos
  of equal lightness are each other's nearest."""

  def embed_light(self, light):
    base = super().embed_light(light)
    where = light.mean(axis=(1, 2))[:, None] * features_lib.POOLED_DIM
    bump = np.exp(-0.5 * ((np.arange(features_lib.POOLED_DIM) - where) / 4)
                  ** 2)
    pooled = bump / np.linalg.norm(bump, axis=1, keepdims=True)
    grid = np.tile(pooled, (1, features_lib.GRID * features_lib.GRID))
    return features_lib.Features(pooled, grid, base.hist)

  def embed_gray(self, gray):
    return self.embed_light(features_lib.lightness_from_gray(gray)[None])


def test_partner_beats_random_and_automatic(tmp_path):
  paths = []
  for i, rgb in enumerate(COLOURS):
    path = tmp_path / f'{i}.png'
    Image.new('RGB', (160, 120), rgb).save(path)
    paths.append(str(path))
  row = colour_benchmark.bench_colour(MeanColourRunner(), Embedder(),
                                      paths[:3], paths[3:], seed=1)
  ciede = row['ciede2000']
  assert row['queries'] == 3 and row['gallery'] == 4
  assert row['retrieval_hit_rate'] == 1.0   # flat photos: L finds them
  assert ciede['retrieved'] == ciede['partner'] < 1.0
  assert ciede['random'] > ciede['partner'] + 10
  assert ciede['automatic'] > ciede['partner'] + 10
  assert row['target_1_below_random'] and row['target_below_automatic']
  assert [q['retrieved_is_partner'] for q in row['per_query']] == [True] * 3
