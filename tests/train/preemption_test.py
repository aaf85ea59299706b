"""train/preemption.py: SIGTERM is noticed once and the old handler comes
back; a broken preemption service is said in one line."""

import logging
import os
import signal


from scsnet_jax.train import preemption


def test_sigterm_sets_the_flag_and_close_restores_the_handler():
  before = signal.getsignal(signal.SIGTERM)
  watcher = preemption.PreemptionWatcher()
  try:
    assert not watcher.should_stop(1)
    os.kill(os.getpid(), signal.SIGTERM)
    assert watcher.should_stop(2)
  finally:
    watcher.close()
  assert signal.getsignal(signal.SIGTERM) is before


def test_stopped_early_carries_the_saved_state_and_step():
  stopped = preemption.StoppedEarly({'w': 1}, 12)
  assert stopped.state == {'w': 1} and stopped.step == 12
  assert str(stopped) == 'stopped by SIGTERM at step 12 (saved)'


def test_a_failing_preemption_check_is_logged_once(monkeypatch, caplog):
  watcher = preemption.PreemptionWatcher()
  watcher._multi = True  # pylint: disable=protected-access
  def broken(step):
    raise RuntimeError('no preemption service')
  monkeypatch.setattr(preemption.multihost_utils,
                      'reached_preemption_sync_point', broken)
  with caplog.at_level(logging.WARNING):
    assert not watcher.should_stop(1) and not watcher.should_stop(2)
  watcher.close()
  errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
  assert len(errors) == 1
  assert 'SIGTERM will NOT save' in errors[0].getMessage()
  assert 'no preemption service' in errors[0].getMessage()
