"""What every evaluation shares: one renderer, one padding, one result type
and the one interface the training loop and ``--mode=eval`` drive.

An evaluator (``validation.Validator``, ``protocol.ProtocolEvaluator``) is
built once per run, with its data and its compiled renderer, and then
called on parameters: ``run(params) -> Evaluation``. ``scores`` are flat
``'<mode>/<method>/<metric>'`` scalars, written under the evaluator's
``prefix`` (``prefixed``); ``summary`` is its table for the log. In the
spirit of big_vision's ``evaluators/common.py``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Protocol

import jax.numpy as jnp
import numpy as np

from scsnet_jax.models.generator import apply_generator


class Evaluation(NamedTuple):
  """One evaluation of one set of parameters.

  scores: {'<mode>/<method>/<metric>': float} (None values left out).
  outputs: {mode: (N, H, W, 3) normalised LAB} the model rendered, for
    pictures (empty where the evaluator keeps none).
  report: what the evaluator writes beside the scores (the protocol's
    nested results; empty for validation).
  """
  scores: dict[str, float]
  outputs: dict[str, np.ndarray]
  report: dict[str, Any]


class Evaluator(Protocol):
  """The interface of every evaluation (see the module docstring)."""
  prefix: str   # writer scalars are '<prefix>/<score name>'

  def run(self, params) -> Evaluation:
    ...

  def summary(self, evaluation: Evaluation) -> str:
    ...


def prefixed(prefix: str, scores: dict[str, float]) -> dict[str, float]:
  """Scores as writer scalars: ``'<prefix>/<name>'``."""
  return {f'{prefix}/{name}': value for name, value in scores.items()}


def render_nlab(graphdef, params, gray, reference, out_size):
  """The one renderer: (B, h, w, 1) gray [, (B, hr, wr, 3) reference] ->
  (B, H, W, 3) normalised LAB float32 at ``out_size`` (H, W). Pure; the
  callers jit it (with their own shardings)."""
  return apply_generator(graphdef, params, gray, reference,
                         out_size=out_size).astype(jnp.float32)


def pad_batch(array: Optional[np.ndarray], multiple: int
              ) -> Optional[np.ndarray]:
  """(N, ...) -> (N', ...), N' the next multiple of ``multiple``, by
  repeating the last row (the extra rows are dropped after rendering), so a
  short batch compiles as a full one; None stays None."""
  if array is None:
    return None
  extra = (-len(array)) % multiple
  if not extra:
    return array
  return np.concatenate([array, np.repeat(array[-1:], extra, axis=0)])
