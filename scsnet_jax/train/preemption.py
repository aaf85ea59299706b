"""Stopping a run on SIGTERM (preemption) after saving, agreed across
processes: ``PreemptionWatcher`` asks, ``StoppedEarly`` says it happened.
"""

from __future__ import annotations

import logging
import signal
import threading

import jax
from jax.experimental import multihost_utils

from scsnet_jax.train.state import TrainState


class StoppedEarly(Exception):
  """SIGTERM stopped the run before its last step, after saving.

  An exception rather than a normal return, so that ``main`` can exit with
  ``errors.EXIT_STOPPED_EARLY`` and a scheduler requeue the job (a plain
  exit 0 reads as "finished"). ``state`` is the saved state.
  """

  def __init__(self, state: TrainState, step: int):
    super().__init__(f'stopped by SIGTERM at step {step} (saved)')
    self.state, self.step = state, step


class PreemptionWatcher:
  """Did this job get SIGTERM? Agreed across processes.

  Single process: a Python SIGTERM handler sets a flag. Several processes:
  JAX's coordination service (``jax.distributed``) catches the signal and
  ``reached_preemption_sync_point`` tells every process at the same step.
  """

  def __init__(self):
    self._flag = threading.Event()
    self._previous = None
    self._multi = jax.process_count() > 1
    self._warned = False
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint, then exiting')
    self._flag.set()

  def should_stop(self, step: int) -> bool:
    if self._multi:
      try:
        return bool(multihost_utils.reached_preemption_sync_point(step))
      except Exception as error:  # pylint: disable=broad-except
        # No preemption service (older runtime): the run goes on, but a
        # SIGTERM will no longer save, which must not go unnoticed.
        if not self._warned:
          self._warned = True
          logging.error('preemption check failed (%s: %s): SIGTERM will NOT '
                        'save a checkpoint in this run; only the periodic '
                        'checkpoints (train.checkpoint_every_steps) remain',
                        type(error).__name__, error)
        return False
    return self._flag.is_set()

  def close(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
