"""Metric writers, progress reports and profiles.

With clu and TensorFlow installed: clu ``metric_writers`` (TensorBoard event
files + the log) and ``periodic_actions.ReportProgress`` / ``Profile``.
Without them (e.g. a GPU image with only JAX): a JSON-lines writer
(``WORKDIR/metrics.jsonl``) that also logs, and a plain progress reporter with
the same call signatures; the switch is announced once in the log. Only
process 0 writes files; other processes log only.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np

from scsnet_jax import workdir as workdir_lib

# Re-exported for readers of a writer's folder (tools/plot_curves.py).
METRICS_FILE = workdir_lib.METRICS_FILE


def _is_primary() -> bool:
  return jax.process_index() == 0


def clu_available() -> bool:
  """True when clu's TensorBoard writer can be used (clu and TF importable)."""
  try:
    # Optional extras: only asked whether they import.
    import tensorflow  # noqa: F401  pylint: disable=unused-import
    from clu import metric_writers, periodic_actions  # noqa: F401
  except Exception:  # ImportError, or a broken TF install
    return False
  return True


class JsonLinesWriter:
  """Fallback with clu's ``MetricWriter`` methods: one JSON object per call.

  Scalars go to ``WORKDIR/metrics.jsonl`` ({"step", "kind", name: value})
  and to the log; images are only recorded by shape (the PNG grids in
  ``WORKDIR/samples`` hold the pixels).
  """

  def __init__(self, workdir: Optional[str], log: bool = True):
    self._file = None
    self._log = log
    if workdir is not None:
      os.makedirs(workdir, exist_ok=True)
      self._file = open(workdir_lib.metrics_path(workdir), 'a')

  def _write(self, record: dict[str, Any]):
    if self._file is not None:
      self._file.write(json.dumps(record) + '\n')

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    values = {k: float(np.asarray(v)) for k, v in scalars.items()}
    self._write({'step': int(step), 'kind': 'scalars', **values})
    if self._log:
        logging.info('[%d] %s', step, ', '.join(
          f'{k}={v:.6g}' for k, v in sorted(values.items())))

  def write_images(self, step: int, images: Mapping[str, Any]):
    self._write({'step': int(step), 'kind': 'images',
                 **{k: list(np.shape(v)) for k, v in images.items()}})

  def write_texts(self, step: int, texts: Mapping[str, str]):
    self._write({'step': int(step), 'kind': 'texts', **texts})

  def write_hparams(self, hparams: Mapping[str, Any]):
    self._write({'kind': 'hparams',
                 **{k: v if isinstance(v, (int, float, str, bool)) or v is None
                    else str(v) for k, v in hparams.items()}})

  def write_summaries(self, step, values, metadata=None):
    del step, values, metadata

  def write_histograms(self, step, arrays, num_buckets=None):
    del step, arrays, num_buckets

  def write_audios(self, step, audios, *, sample_rate):
    del step, audios, sample_rate

  def write_videos(self, step, videos):
    del step, videos

  def flush(self):
    if self._file is not None:
      self._file.flush()

  def close(self):
    if self._file is not None:
      self._file.close()
      self._file = None


class PlainProgress:
  """Fallback for ``ReportProgress``: logs steps/s and ETA every ``every_secs``.

  Call ``report(step)`` after each step (same as clu's periodic action).
  """

  def __init__(self, num_train_steps: int, writer=None,
               every_secs: float = 60.0, every_steps: Optional[int] = None):
    self._total = num_train_steps
    self._writer = writer
    self._every_secs = every_secs
    self._every_steps = every_steps
    self._last_step = None
    self._last_time = None

  def __call__(self, step: int, t: Optional[float] = None) -> bool:
    now = time.time() if t is None else t
    if self._last_step is None:
      self._last_step, self._last_time = step, now
      return False
    due = ((self._every_steps and step % self._every_steps == 0) or
           (self._every_secs and now - self._last_time >= self._every_secs))
    if not due or step == self._last_step:
      return False
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    eta = (self._total - step) / rate if rate > 0 else float('inf')
    logging.info('step %d/%d: %.3g steps/s, ETA %.1f min', step, self._total,
                 rate, eta / 60)
    if self._writer is not None:
      self._writer.write_scalars(step, {'steps_per_sec': rate})
    self._last_step, self._last_time = step, now
    return True


def create_writer(workdir: str):
  """clu's default writer (TensorBoard + log) or the JSON-lines fallback.

  Non-primary processes get a writer that only logs (no files).
  """
  primary = _is_primary()
  if clu_available():
    from clu import metric_writers  # an optional extra (clu_available)
    default = metric_writers.create_default_writer(
        workdir, just_logging=not primary, asynchronous=True)
    if not primary:
      return default
    # metrics.jsonl as well: the curves tool reads it without TensorFlow.
    return metric_writers.MultiWriter(
        [default, JsonLinesWriter(workdir, log=False)])
  logging.warning('clu/TensorFlow not importable: metrics go to %s and the '
                  'log instead of TensorBoard.',
                  workdir_lib.metrics_path(workdir))
  return JsonLinesWriter(workdir if primary else None)


def create_progress_reporter(num_train_steps: int, writer,
                             every_secs: float = 60.0,
                             every_steps: Optional[int] = None) -> Callable:
  """``report(step)`` that logs steps/s and ETA (clu ReportProgress if any)."""
  if clu_available():
    from clu import periodic_actions  # an optional extra (clu_available)
    return periodic_actions.ReportProgress(
        num_train_steps=num_train_steps, writer=writer,
        every_secs=every_secs, every_steps=every_steps)
  return PlainProgress(num_train_steps, writer, every_secs, every_steps)


def create_profiler(workdir: str, num_profile_steps: int = 5,
                    first_profile: int = 10) -> Optional[Callable]:
  """clu ``Profile`` (a trace in WORKDIR/plugins/profile) or None."""
  if not clu_available():
    logging.warning('profiling needs clu; config.train.profile ignored')
    return None
  from clu import periodic_actions  # an optional extra (clu_available)
  return periodic_actions.Profile(num_profile_steps=num_profile_steps,
                                  first_profile=first_profile, logdir=workdir)
