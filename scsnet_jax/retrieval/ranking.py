"""Ranking a gallery for one query: global cosine, then a re-rank of the best.

1. ``cosine``: the dot product of the query's and every photo's unit pooled
   features (``features.Features.pooled``): what is in the picture.
2. The ``top_k`` best by cosine are re-ranked by
   ``score = (w_c cosine + w_s spatial - w_h histogram) / (w_c + w_s)``:
   ``spatial`` is the mean cosine of the GRID x GRID cells' features (where
   things are); ``histogram`` the total-variation distance of the two L
   histograms (0 = same tones, 1 = disjoint). A photo identical to the query
   scores 1.0. The published recommender (He et al. 2018, Deep Exemplar-based
   Colorization) weighted deep features 1.0 and the histogram 0.25; our
   weights (``DEFAULT_WEIGHTS``) are the ones measured best by the retrieval
   benchmark (docs/retrieval.md).

Deterministic: arithmetic in float64 from the stored float16 values, and
stable sorts over rows kept in file-name order, so equal scores are ranked
by file name.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import numpy as np

from scsnet_jax.retrieval import features as features_lib
from scsnet_jax.retrieval.features import Features

DEFAULT_TOP_K = 10
_CHUNK = 4096   # rows converted to float64 at a time (bounded memory)


class Weights(NamedTuple):
  """Re-ranking weights: cosine, spatial, histogram distance."""
  cosine: float = 1.0
  spatial: float = 1.0
  histogram: float = 0.5


DEFAULT_WEIGHTS = Weights()


@dataclasses.dataclass(frozen=True)
class Match:
  """One gallery photo for a query: its row, name and scores."""
  row: int
  name: str
  score: float       # the re-ranking score (1.0: the query itself)
  cosine: float
  spatial: float
  histogram: float   # distance, 0 to 1

  def as_json(self) -> dict:
    return {'name': self.name, 'score': round(self.score, 6),
            'cosine': round(self.cosine, 6),
            'spatial': round(self.spatial, 6),
            'histogram_distance': round(self.histogram, 6)}


def cosine_all(query_pooled: np.ndarray, pooled: np.ndarray) -> np.ndarray:
  """(D,) query and (N, D) gallery unit vectors -> (N,) float64 cosines."""
  query = np.asarray(query_pooled, np.float64).reshape(-1)
  out = np.empty(len(pooled), np.float64)
  for start in range(0, len(pooled), _CHUNK):
    out[start:start + _CHUNK] = (
        pooled[start:start + _CHUNK].astype(np.float64) @ query)
  return out


def spatial_similarity(query_grid: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """(G,) query and (K, G) grids of unit cells -> (K,) mean cell cosine,
  the better of the layout as it is and mirrored (cell columns reversed: a
  photo taken from the other side, or flipped, keeps its layout)."""
  side = features_lib.GRID
  query = np.asarray(query_grid, np.float64).reshape(side, side, -1)
  other = np.asarray(grid, np.float64).reshape(len(grid), side, side, -1)
  straight = np.einsum('krcd,rcd->k', other, query)
  mirrored = np.einsum('krcd,rcd->k', other, query[:, ::-1])
  return np.maximum(straight, mirrored) / (side * side)


def histogram_distance(query_hist: np.ndarray, hist: np.ndarray) -> np.ndarray:
  """(B,) and (K, B) histograms summing to 1 -> (K,) total variation."""
  query = np.asarray(query_hist, np.float64).reshape(1, -1)
  return 0.5 * np.abs(np.asarray(hist, np.float64) - query).sum(axis=1)


def rank(query: Features, gallery: Features, names: list[str], *,
         top_k: int = DEFAULT_TOP_K,
         weights: Optional[Weights] = None) -> list[Match]:
  """The ``top_k`` best photos for a one-row ``query``, best first.

  ``gallery`` rows must be in ``names`` order (sorted file names: the
  index's), so that stable sorts break ties by name."""
  if len(query) != 1:
    raise ValueError(f'rank takes one query, got {len(query)}')
  if len(gallery) != len(names):
    raise ValueError(f'{len(gallery)} gallery rows for {len(names)} names')
  weights = weights or DEFAULT_WEIGHTS
  if top_k < 1 or not len(gallery):
    return []
  cosine = cosine_all(query.pooled[0], gallery.pooled)
  # Stable sort of -cosine over name-ordered rows: ties go by name.
  candidates = np.argsort(-cosine, kind='stable')[:top_k]
  candidates = np.sort(candidates)     # back to name order for the re-rank
  spatial = spatial_similarity(query.grid[0], gallery.grid[candidates])
  hist = histogram_distance(query.hist[0], gallery.hist[candidates])
  score = ((weights.cosine * cosine[candidates] + weights.spatial * spatial
            - weights.histogram * hist)
           / max(weights.cosine + weights.spatial, 1e-12))
  order = np.argsort(-score, kind='stable')
  return [Match(row=int(candidates[i]), name=names[candidates[i]],
                score=float(score[i]), cosine=float(cosine[candidates[i]]),
                spatial=float(spatial[i]), histogram=float(hist[i]))
          for i in order]
