"""Ranking against a plain re-derivation of its formula, ties, top k."""

import numpy as np
import pytest

from scsnet_jax.retrieval import features as features_lib
from scsnet_jax.retrieval import ranking
from scsnet_jax.retrieval.features import Features


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _features(n, seed):
  rng = np.random.default_rng(seed)
  cells = features_lib.GRID * features_lib.GRID
  grid = _unit(rng.normal(size=(n, cells, features_lib.GRID_DIM // cells)))
  hist = rng.uniform(size=(n, features_lib.HIST_BINS))
  return Features(_unit(rng.normal(size=(n, features_lib.POOLED_DIM))),
                  grid.reshape(n, -1), hist / hist.sum(1, keepdims=True))


def test_scores_follow_the_formula_and_order():
  gallery = _features(30, 0)
  query = _features(1, 1)
  names = [f'{i:03d}.jpg' for i in range(30)]
  weights = ranking.Weights(1.0, 0.5, 0.25)
  got = ranking.rank(query, gallery, names, top_k=7, weights=weights)
  cosine = gallery.pooled @ query.pooled[0]
  top = np.argsort(-cosine)[:7]
  want = {}
  for row in top:
    cells = gallery.grid[row].reshape(3, 3, -1)
    mine = query.grid[0].reshape(3, 3, -1)
    straight = np.mean([cells[r, c] @ mine[r, c] for r in range(3)
                        for c in range(3)])
    mirrored = np.mean([cells[r, c] @ mine[r, 2 - c] for r in range(3)
                        for c in range(3)])
    spatial = max(straight, mirrored)
    hist = 0.5 * np.abs(gallery.hist[row] - query.hist[0]).sum()
    want[row] = (cosine[row] + 0.5 * spatial - 0.25 * hist) / 1.5
  assert [m.row for m in got] == sorted(want, key=lambda r: -want[r])
  for match in got:
    assert match.score == pytest.approx(want[match.row], abs=1e-9)
    assert match.name == names[match.row]


def test_a_mirrored_layout_counts_as_the_same_layout():
  one = _features(1, 4)
  grid = one.grid.reshape(1, 3, 3, -1)[:, :, ::-1].reshape(1, -1)
  mirrored = Features(one.pooled, grid, one.hist)
  assert ranking.spatial_similarity(one.grid[0], mirrored.grid) == (
      pytest.approx([1.0]))


def test_the_query_itself_scores_one_and_wins():
  gallery = _features(12, 2)
  names = [f'{i}.png' for i in range(12)]
  matches = ranking.rank(gallery.row(5), gallery, names, top_k=3)
  assert matches[0].row == 5 and matches[0].score == pytest.approx(1.0)
  assert len(matches) == 3


def test_ties_are_broken_by_file_name_and_repeat_exactly():
  one = _features(1, 3)
  gallery = Features.concatenate([one] * 4)   # four identical photos
  names = ['a.jpg', 'b.jpg', 'c.jpg', 'd.jpg']
  first = ranking.rank(one, gallery, names, top_k=3)
  assert [m.name for m in first] == ['a.jpg', 'b.jpg', 'c.jpg']
  assert first == ranking.rank(one, gallery, names, top_k=3)


def test_empty_gallery_and_bad_arguments():
  assert ranking.rank(_features(1, 0), Features.concatenate([]), []) == []
  with pytest.raises(ValueError, match='one query'):
    ranking.rank(_features(2, 0), _features(2, 0), ['a', 'b'])
