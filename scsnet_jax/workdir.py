"""The layout of a training workdir: every name in it is written here once.

Training writes a workdir; evaluation, prediction, export and the tools read
it. Both sides take the names from this module, so a reader finds what a
writer put down::

  WORKDIR/config.json                  the run's full config (train.loop);
                                       eval and predict start from it
  WORKDIR/checkpoints/<step>/          orbax step folders (train.checkpointing
                                       writes, loading reads)
  WORKDIR/samples/step_<N>.png         validation sample grids
  WORKDIR/metrics.jsonl                scalars, one JSON object a line
                                       (writers; next to TensorBoard events)
  WORKDIR/eval/metrics_<step>.{json,md}  the eval report (evaluation.report),
                                       with its own metrics.jsonl / events

Paths may be local or URLs (``gs://...``); only the clean-up after a failed
run (``existing_dirs``, ``remove_new_empty_dirs``) touches the disk.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple, Optional

CONFIG_FILE = 'config.json'
CHECKPOINTS_DIR = 'checkpoints'
SAMPLES_DIR = 'samples'
METRICS_FILE = 'metrics.jsonl'
EVAL_DIR = 'eval'
# What a command's --checkpoint may name (loading and
# export.reader read them): the help text of predict, the app and export.
CHECKPOINT_HELP = ('a training workdir (latest step, EMA weights), its '
                   'checkpoints/ folder, one checkpoints/STEP folder, or a '
                   'folder written by scsnet_jax.export')


def resolve(workdir) -> str:
  """Absolute local path, or a URL (gs://...) unchanged."""
  workdir = os.fspath(workdir)
  return workdir if '://' in workdir else os.path.abspath(workdir)


def _join(directory, *names: str) -> str:
  # '/'-joined so that URLs stay URLs on any OS.
  return '/'.join([os.fspath(directory).rstrip('/'), *names])


def config_path(workdir) -> str:
  """``WORKDIR/config.json``."""
  return _join(workdir, CONFIG_FILE)


def checkpoint_dir(workdir) -> str:
  """``WORKDIR/checkpoints`` (absolute): where a run's step folders are."""
  return _join(resolve(workdir), CHECKPOINTS_DIR)


def damaged_step_message(checkpoints: str, step: int,
                         error: BaseException) -> str:
  """'checkpoint step N in WORKDIR/checkpoints is damaged (reason)': how
  training and predict name a step orbax cannot read (a truncated OCDBT
  file, a disk that filled), with the innermost reason
  (``errors.root_cause``), not orbax's multi-line TensorStore spec."""
  from scsnet_jax.errors import first_line, root_cause
  cause = root_cause(error)
  reason = first_line(cause, limit=200)
  if not re.match(r'[A-Z_]+: ', reason):   # no status code: name the type
    reason = f'{type(cause).__name__}: {reason}'
  return f'checkpoint step {step} in {checkpoints} is damaged ({reason})'


def samples_dir(workdir) -> str:
  """``WORKDIR/samples``: the validation grids."""
  return _join(workdir, SAMPLES_DIR)


def sample_path(workdir, step: int) -> str:
  """``WORKDIR/samples/step_<N>.png``."""
  return _join(samples_dir(workdir), f'step_{int(step)}.png')


def metrics_path(directory) -> str:
  """``DIR/metrics.jsonl`` of a metric writer's folder (a workdir, or its
  ``eval`` folder)."""
  return _join(directory, METRICS_FILE)


def eval_dir(workdir) -> str:
  """``WORKDIR/eval``: eval reports and eval scalars."""
  return _join(workdir, EVAL_DIR)


def eval_report_paths(workdir, step: int) -> tuple[str, str]:
  """(``WORKDIR/eval/metrics_<step>.json``, the same ``.md``)."""
  stem = _join(eval_dir(workdir), f'metrics_{int(step)}')
  return stem + '.json', stem + '.md'


# -------------------------------------------------- a failed run's leftovers ---
class ExistingDirs(NamedTuple):
  """What stood of a local workdir before a run."""
  inside: frozenset[str]      # the workdir's directories
  missing: tuple[str, ...]    # the workdir and parents not there, deepest first


def existing_dirs(workdir) -> Optional[ExistingDirs]:
  """The directories of a local ``workdir`` now (None for a URL or None)."""
  if workdir is None or '://' in os.fspath(workdir):
    return None
  path = os.path.abspath(workdir)
  inside = frozenset(root for root, _, _ in os.walk(path))
  missing = []
  while path and not os.path.exists(path):
    missing.append(path)
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return ExistingDirs(inside, tuple(missing))


def remove_new_empty_dirs(workdir, before: Optional[ExistingDirs]) -> None:
  """Removes directories created since ``before`` that are empty (deepest
  first), then the workdir and its parents if they were created too: a run
  that failed at once leaves no empty folders behind."""
  if before is None:
    return
  workdir = os.path.abspath(workdir)
  if os.path.isdir(workdir):
    for root, _, _ in sorted(os.walk(workdir, topdown=False),
                             key=lambda w: -len(w[0])):
      if root not in before.inside and root != workdir:
        try:
          os.rmdir(root)   # only succeeds when empty
        except OSError:
          pass
  for path in before.missing:   # deepest first
    try:
      os.rmdir(path)
    except OSError:
      break
