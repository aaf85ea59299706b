"""train/loop.py in-process: outputs of a run, resuming, SIGTERM, NaN stop.

One shallow model (configs/test.py widths, one block per stack) and one set
of compiled steps for the whole module; the runs share a workdir and build on
each other, in order.
"""

import json
import logging
import os
import signal
import sys

import numpy as np
import pytest

from scsnet_jax import config_lib
from scsnet_jax import loading
from scsnet_jax.train import checkpointing, preemption
from scsnet_jax.data import pipeline as input_pipeline
from scsnet_jax.train import loop as trainer
from tests.paths import TEST_CONFIG
from tests import helpers



def _config(steps):
  config = helpers.with_shallow_model(
      config_lib.load_sibling_config(TEST_CONFIG, 'test'))
  config.train.steps = steps
  return config


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('run'))


FIRST_RUN_LOG: list[str] = []
FIRST_RUN_LEVELS: dict[str, int] = {}


class _Collect(logging.Handler):
  def emit(self, record):
    FIRST_RUN_LOG.append(record.getMessage())
    FIRST_RUN_LEVELS[record.getMessage()] = record.levelno


@pytest.fixture(scope='module')
def first_run(workdir):
  """2 steps from scratch (checkpoint, validation and samples at step 2)."""
  config = _config(2)
  config.train.eval_every_steps = 2
  handler = _Collect(level=logging.INFO)
  root = logging.getLogger()
  level = root.level
  root.addHandler(handler)
  root.setLevel(logging.INFO)   # as absl's app.run sets it (verbosity 0)
  try:
    return trainer.train_and_evaluate(config, workdir)
  finally:
    root.removeHandler(handler)
    root.setLevel(level)


def test_a_run_logs_losses_validation_and_a_summary(workdir, first_run):
  del first_run
  records = [json.loads(line) for line in
             open(os.path.join(workdir, 'metrics.jsonl'))]
  scalars = {k: v for r in records if r.get('kind') == 'scalars'
             for k, v in r.items()}
  for key in ('automatic/content_loss', 'referential/content_loss',
              'content_l_loss', 'val/automatic/model/l_psnr',
              'val/automatic/bicubic_gray/l_psnr',
              'val/self_reference/color_copy/ciede2000',
              'val/mirrored_reference/global_transfer/ciede2000'):
    assert key in scalars, key
  text = '\n'.join(FIRST_RUN_LOG)
  assert 'step 2/2  loss G' in text and 'steps/s  ETA' in text
  assert 'validation at step 2:' in text and '| automatic | model |' in text
  assert 'finished at step 2.' in text and 'scsnet_jax.predict' in text
  assert 'stopped at step' not in text
  # Progress is INFO, not WARNING (issue 22, item 11): a healthy run shows
  # no warnings.
  progress = [m for m in FIRST_RUN_LOG if m.startswith(
      ('step 2/2  loss G', 'validation at step 2:', 'finished at step 2.'))]
  assert len(progress) == 3, progress
  assert {FIRST_RUN_LEVELS[m] for m in progress} == {logging.INFO}
  from PIL import Image
  grid = np.asarray(Image.open(os.path.join(workdir, 'samples',
                                            'step_2.png')))
  # Header row + one row per validation photo, five labelled columns.
  assert grid.shape == (18 + 2 * 32, 5 * 32, 3)


def test_a_run_leaves_checkpoints_samples_events_and_config(workdir,
                                                            first_run):
  assert int(first_run.step) == 2
  assert checkpointing.create_manager(workdir).all_steps() == [2]
  assert os.path.exists(os.path.join(workdir, 'samples', 'step_2.png'))
  files = os.listdir(workdir)
  assert any(f.startswith('events.out.tfevents') or f == 'metrics.jsonl'
             for f in files)
  saved = json.load(open(os.path.join(workdir, 'config.json')))
  assert saved['train']['steps'] == 2
  bundle = loading.load_generator(workdir)
  assert bundle.step == 2


def test_restart_resumes_from_the_checkpoint_without_clu(
    workdir, first_run, monkeypatch, caplog):
  """Also runs the JSON-lines fallback writer end to end."""
  del first_run
  monkeypatch.setitem(sys.modules, 'clu', None)
  monkeypatch.setitem(sys.modules, 'tensorflow', None)
  with caplog.at_level(logging.INFO):
    state = trainer.train_and_evaluate(_config(4), workdir)
  assert 'restored step 2' in caplog.text
  assert int(state.step) == 4
  records = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  steps = [r['step'] for r in records if r['kind'] == 'scalars'
           and 'generator_loss' in r]
  # Steps 1-2 from the first run (metrics.jsonl is always written), 3-4
  # appended by the resumed run through the fallback writer.
  assert steps == [1, 2, 3, 4]
  assert checkpointing.create_manager(workdir).all_steps() == [2, 4]


class _SigtermAfter:
  """Data iterator that sends this process SIGTERM after `n` batches."""

  def __init__(self, config, n):
    self._inner = input_pipeline.create_iterator(config.data, 'train')
    self._left = n

  def __iter__(self):
    return self

  def __next__(self):
    if self._left == 0:
      os.kill(os.getpid(), signal.SIGTERM)
    self._left -= 1
    return next(self._inner)


def test_sigterm_saves_the_current_step_and_stops_early(workdir, first_run,
                                                        caplog):
  """StoppedEarly (not a return): main turns it into exit status 75."""
  del first_run
  config = _config(100)
  with caplog.at_level(logging.INFO), pytest.raises(
      preemption.StoppedEarly) as stopped:
    trainer.train_and_evaluate(config, workdir,
                               data_iterator=_SigtermAfter(config, 1))
  # Resumed at 4, one batch, SIGTERM during the next: saved at step 6 at most.
  step = int(stopped.value.state.step)
  assert stopped.value.step == step
  assert 5 <= step <= 6
  assert 'preempted: saved step' in caplog.text
  assert f'stopped at step {step} of 100 (checkpoint saved' in caplog.text
  assert 'finished at step' not in caplog.text
  assert checkpointing.create_manager(workdir).latest_step() == step


def test_summary_names_the_samples_folder_only_when_it_has_grids(
    tmp_path, caplog):
  with caplog.at_level(logging.INFO):
    trainer._log_summary(str(tmp_path), 7, 10, stopped=True)
  assert 'stopped at step 7 of 10 (checkpoint saved' in caplog.text
  assert 'sample grids' not in caplog.text
  (tmp_path / 'samples').mkdir()
  (tmp_path / 'samples' / 'step_5.png').write_bytes(b'png')
  caplog.clear()
  with caplog.at_level(logging.INFO):
    trainer._log_summary(str(tmp_path), 10, 10, stopped=False)
  assert 'finished at step 10.' in caplog.text
  assert f'sample grids: {tmp_path / "samples"}' in caplog.text


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(workdir,
                                                                  first_run):
  del first_run
  manager = checkpointing.create_manager(workdir)
  last_good = manager.latest_step()
  manager.close()
  batch = input_pipeline.model_inputs(next(input_pipeline.create_iterator(
      _config(1).data, 'train')))
  batch['target'] = np.full_like(batch['target'], np.nan)
  with pytest.raises(trainer.NonFiniteLossError, match='non-finite'):
    trainer.train_and_evaluate(_config(last_good + 3), workdir,
                               data_iterator=iter([batch] * 3))
  assert checkpointing.create_manager(workdir).latest_step() == last_good
