"""Does the retrieved reference colour better? CIEDE2000 of a trained model's
output against the truth, with four references per query.

Queries are the view pairs of held-out photos (``view_pairs.view_pair``:
the gray low-resolution left part; its truth is that part in colour at 4x).
The gallery holds every held-out photo's partner (the mirrored right part)
and the distractor photos' partners. Per query the model runs:
- ``automatic``: no reference;
- ``retrieved``: the gallery's top choice (``ranking.rank``, default weights);
- ``random``: a gallery photo drawn at random (seeded), never the partner;
- ``partner``: the true partner (the best a retrieval could do).
References are resized to ``REFERENCE_SIZE`` so one program serves them
all. Reported: mean CIEDE2000 (and L-PSNR, colourfulness) per reference
kind, the retrieval hit rate on these queries, and the margins the issue's
targets ask for.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from scsnet_jax import color
from scsnet_jax.retrieval import view_pairs
from scsnet_jax.retrieval import ranking
from scsnet_jax.retrieval.features import Embedder, Features

REFERENCE_SIZE = (192, 256)    # (height, width) every reference is resized to
KINDS = ('automatic', 'retrieved', 'random', 'partner')


def fixed_reference(pixels: np.ndarray) -> np.ndarray:
  resized = np.asarray(Image.fromarray(pixels).resize(
      REFERENCE_SIZE[::-1], Image.Resampling.BICUBIC))
  return color.rgb8_to_nlab(resized)


def render(runner, gray: np.ndarray, reference, out_size) -> np.ndarray:
  """(h, w, 1) gray (+ reference nlab) -> (H, W, 3) sRGB [0, 1]."""
  ref = None if reference is None else reference[None]
  out, _ = runner.predict_nlab(gray[None], ref, out_size)
  return color.nlab_to_rgb01(np.asarray(out[0], np.float32), xp=np)


def bench_colour(runner, embedder: Embedder, held_out: list[str],
                 distractors: list[str], *, seed: int = 0,
                 checkpoint: str = '') -> dict:
  """The table described in the module docstring, as one JSON row."""
  from scsnet_jax.evaluation import validation  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  queries = [view_pairs.view_pair(view_pairs.read_photo(p)) for p in held_out]
  others = [view_pairs.view_pair(view_pairs.read_photo(p))['partner']
            for p in distractors]
  partners = [q['partner'] for q in queries] + others
  gallery = view_pairs.describe_gallery(embedder, partners)
  stored = Features(*(a.astype(np.float16) for a in
                      (gallery.pooled, gallery.grid, gallery.hist)))
  names = [f'{i:06d}' for i in range(len(partners))]
  rng = np.random.default_rng(seed)
  scores = {kind: [] for kind in KINDS}
  hits = 0
  per_query = []
  for q, view in enumerate(queries):
    top = ranking.rank(embedder.embed_gray(view['gray']), stored, names)[0]
    hits += top.row == q
    random_row = int(rng.choice([r for r in range(len(partners)) if r != q]))
    rows = {'retrieved': top.row, 'random': random_row, 'partner': q}
    out_size = view['target'].shape[:2]
    truth = view['target'][None].astype(np.float32) / 255
    entry = {'photo': held_out[q], 'retrieved_is_partner': top.row == q}
    for kind in KINDS:
      reference = (None if kind == 'automatic'
                   else fixed_reference(partners[rows[kind]]))
      rgb = render(runner, view['gray'], reference, out_size)
      metrics = validation.image_metrics(rgb[None], truth)
      scores[kind].append(metrics)
      entry[kind] = round(metrics['ciede2000'], 3)
    per_query.append(entry)
  mean = {kind: {key: float(np.mean([m[key] for m in values]))
                 for key in values[0]} for kind, values in scores.items()}
  ciede = {kind: mean[kind]['ciede2000'] for kind in KINDS}
  return {
      'part': 'retrieval', 'measure': 'colour', 'checkpoint': checkpoint,
      'queries': len(queries), 'gallery': len(partners),
      'retrieval_hit_rate': hits / max(len(queries), 1),
      'ciede2000': ciede, 'metrics': mean,
      'retrieved_minus_random': ciede['retrieved'] - ciede['random'],
      'retrieved_minus_automatic': ciede['retrieved'] - ciede['automatic'],
      'target_1_below_random': ciede['retrieved'] <= ciede['random'] - 1.0,
      'target_below_automatic': ciede['retrieved'] < ciede['automatic'],
      'per_query': per_query, 'seconds': time.perf_counter() - start}
