"""One reference per input, chosen from a gallery, and the record of it.

Predict (``--reference-gallery DIR [--top-k K]``) and the app use this:
``ReferenceChooser.choose(input, gray)`` ranks the gallery for the input's
gray (``api.Gallery``), keeps the best as the reference and the rest of the
top K as runners-up, and remembers it; ``write_json`` then writes
``references.json`` beside the outputs (atomically)::

  {"format": "scsnet_jax.references/1", "gallery": DIR, "top_k": K,
   "feature_model": "<Embedder.version>", "weights": {...},
   "inputs": [{"input": PATH, "output": PATH, "reference": PATH,
               "score": S, "choice": {name, score, cosine, spatial,
               histogram_distance}, "runners_up": [{...}, ...]}, ...]}

The CLI prints ``choice_line`` for each input.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np

from scsnet_jax import atomic
from scsnet_jax.errors import UserError, printable
from scsnet_jax.retrieval import ranking
from scsnet_jax.retrieval.api import Gallery
from scsnet_jax.retrieval.ranking import Match

FORMAT = 'scsnet_jax.references/1'
FILE_NAME = 'references.json'


@dataclasses.dataclass(frozen=True)
class Choice:
  input: str
  reference: str           # the chosen photo's path
  matches: list[Match]     # best first: [choice, runner-up, ...]

  @property
  def score(self) -> float:
    return self.matches[0].score


def choice_line(choice: Choice) -> str:
  """``INPUT -> CHOSEN_REFERENCE (similarity S)``, names escaped."""
  return (f'{printable(choice.input)} -> {printable(choice.reference)} '
          f'(similarity {choice.score:.3f})')


class ReferenceChooser:
  """Chooses and records references for a run's inputs."""

  def __init__(self, gallery: Gallery, top_k: int = ranking.DEFAULT_TOP_K,
               weights: Optional[ranking.Weights] = None):
    if top_k < 1:
      raise UserError(f'--top-k must be at least 1, got {top_k}')
    self.gallery, self.top_k = gallery, top_k
    self.weights = weights or ranking.DEFAULT_WEIGHTS
    self.records: list[dict] = []

  def rank(self, image: np.ndarray) -> list[Match]:
    """uint8 sRGB (H, W, 3) or normalised L (H, W, 1) -> top K, best first."""
    return self.gallery.rank(self.gallery.describe(image), top_k=self.top_k,
                             weights=self.weights)

  def choose(self, input_path: str, image: np.ndarray,
             output_path: Optional[str] = None) -> Choice:
    matches = self.rank(image)
    if not matches:
      raise UserError(f'{input_path}: the reference gallery is empty')
    choice = Choice(input_path, self.gallery.path(matches[0]), matches)
    self.records.append({
        'input': input_path, 'output': output_path,
        'reference': choice.reference, 'score': round(choice.score, 6),
        'choice': matches[0].as_json(),
        'runners_up': [m.as_json() for m in matches[1:]]})
    return choice

  def as_json(self) -> dict:
    return {'format': FORMAT, 'gallery': self.gallery.index.folder,
            'top_k': self.top_k,
            'feature_model': self.gallery.embedder.version,
            'weights': self.weights._asdict(), 'inputs': self.records}

  def write_json(self, output_dir: str) -> str:
    """Writes ``OUTPUT/references.json`` atomically; returns its path."""
    path = os.path.join(output_dir, FILE_NAME)
    atomic.write_json(path, self.as_json(), indent=1)
    return path
