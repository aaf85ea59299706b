"""workdir.py: the names are the ones the docs state, and what the writers
put down is where the readers look."""

import os
import re

import numpy as np

from scsnet_jax import config_lib, sharding, writers
from scsnet_jax import workdir as workdir_lib
from scsnet_jax.evaluation import report as eval_report
from scsnet_jax.evaluation import validation
from scsnet_jax import loading
from scsnet_jax.train import loop
from scsnet_jax.train import state as train_state
from tests.paths import TEST_CONFIG
from tests import helpers

_DOCS = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'docs')


def _documented_workdir_names() -> set[str]:
  """The first path part of each entry of training.md's WORKDIR tree."""
  text = open(os.path.join(_DOCS, 'training.md')).read()
  tree = text.split('## What a run leaves in WORKDIR', 1)[1]
  tree = tree.split('```', 2)[1]
  return {m.group(1) for m in re.finditer(r'^  ([\w.]+)', tree, re.M)}


def test_the_names_are_the_documented_ones():
  documented = _documented_workdir_names()
  for name in (workdir_lib.CONFIG_FILE, workdir_lib.CHECKPOINTS_DIR,
               workdir_lib.SAMPLES_DIR, workdir_lib.METRICS_FILE):
    assert name in documented, (name, documented)
  evaluation = open(os.path.join(_DOCS, 'evaluation.md')).read()
  assert '`WORKDIR/eval/metrics_S.json`' in evaluation
  assert workdir_lib.eval_report_paths('WORKDIR', 5) == (
      'WORKDIR/eval/metrics_5.json', 'WORKDIR/eval/metrics_5.md')
  assert workdir_lib.sample_path('W', 12) == 'W/samples/step_12.png'


def test_paths_are_absolute_locally_and_urls_stay_urls(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert workdir_lib.checkpoint_dir('run') == str(tmp_path / 'run' /
                                                  'checkpoints')
  assert workdir_lib.checkpoint_dir('gs://bucket/run/') == (
      'gs://bucket/run/checkpoints')
  assert workdir_lib.config_path('gs://b/r') == 'gs://b/r/config.json'


def test_what_training_writes_is_what_readers_find(tmp_path):
  config = helpers.with_shallow_model(
      config_lib.load_sibling_config(TEST_CONFIG, 'test'))
  config.train.steps = 3
  workdir = str(tmp_path / 'run')
  state = train_state.create_train_state(
      train_state.build_networks(config), config, sharding.create_mesh())
  step_dir = helpers.save_train_state(workdir, state, config)
  loop._write_config(workdir, config)

  assert step_dir == os.path.join(workdir, 'checkpoints', '0')
  assert loading.resolve_checkpoint(workdir) == (
      os.path.join(workdir, 'checkpoints'), None)
  assert loading.load_generator(workdir).step == 0
  loaded = config_lib.load_workdir_config(workdir)
  assert loaded.train.steps == 3
  assert sorted(os.listdir(workdir)) == ['checkpoints', 'config.json']

  grid = np.zeros((4, 6, 3), np.uint8)
  path = validation.write_sample_grid(workdir, 2, grid)
  assert path == workdir_lib.sample_path(workdir, 2)
  assert path == os.path.join(workdir, 'samples', 'step_2.png')
  writer = writers.JsonLinesWriter(workdir, log=False)
  writer.write_scalars(1, {'loss': 0.5})
  writer.close()
  assert os.path.isfile(os.path.join(workdir, 'metrics.jsonl'))


def test_the_eval_report_lands_where_docs_say(tmp_path, monkeypatch):
  monkeypatch.setattr(eval_report, 'markdown_table', lambda report: 'table')
  json_path = eval_report.write_report(str(tmp_path), {'step': 4})
  assert json_path == os.path.join(tmp_path, 'eval', 'metrics_4.json')
  assert sorted(os.listdir(tmp_path / 'eval')) == ['metrics_4.json',
                                                   'metrics_4.md']
  assert open(tmp_path / 'eval' / 'metrics_4.md').read() == 'table\n'


def test_a_failed_run_leaves_no_new_empty_dirs(tmp_path):
  (tmp_path / 'old' / 'kept').mkdir(parents=True)
  workdir = tmp_path / 'old'
  before = workdir_lib.existing_dirs(workdir)
  (workdir / 'checkpoints' / 'tmp').mkdir(parents=True)
  (workdir / 'samples').mkdir()
  (workdir / 'samples' / 'step_1.png').write_bytes(b'png')
  workdir_lib.remove_new_empty_dirs(workdir, before)
  assert sorted(os.listdir(workdir)) == ['kept', 'samples']

  fresh = tmp_path / 'new' / 'run'
  before = workdir_lib.existing_dirs(fresh)
  assert before.missing == (str(fresh), str(tmp_path / 'new'))
  (fresh / 'checkpoints').mkdir(parents=True)
  workdir_lib.remove_new_empty_dirs(fresh, before)
  assert os.listdir(tmp_path) == ['old']
  assert workdir_lib.existing_dirs('gs://bucket/run') is None
