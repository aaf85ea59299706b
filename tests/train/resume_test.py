"""resume.py and the loop's resume checks: a changed config, another process
count is said in one line."""


import jax
import pytest

from scsnet_jax import config_lib, sharding
from scsnet_jax.errors import UserError
from scsnet_jax.train import checkpointing, resume
from scsnet_jax.train import loop as trainer
from scsnet_jax.train import state as train_state
from tests.paths import TEST_CONFIG
from tests import helpers


def _config():
  return helpers.with_shallow_model(
      config_lib.load_sibling_config(TEST_CONFIG, 'test'))


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  """A workdir whose checkpoint (step 0) holds configs/test.py's config and
  a grain iterator position."""
  import grain
  config = _config()
  workdir = tmp_path_factory.mktemp('resume')
  state = train_state.create_train_state(
      train_state.build_networks(config), config, sharding.create_mesh())
  iterator = iter(grain.MapDataset.range(10).to_iter_dataset())
  helpers.save_train_state(workdir, state, config, iterator)
  return str(workdir), config


def test_changes_are_listed_and_refused_in_one_line():
  saved = {'optimizer': {'learning_rate': 1e-4}, 'data': {'crop_size': 64},
           'train': {'steps': 10}, 'model': {'encoder_widths': [8, 16]}}
  current = {'optimizer': {'learning_rate': 3e-4}, 'data': {'crop_size': 64},
             'train': {'steps': 20}, 'model': {'encoder_widths': (8, 16)}}
  with pytest.raises(UserError) as info:
    resume.check_config(saved, current, step=5)
  message = str(info.value)
  assert '\n' not in message
  assert 'optimizer.learning_rate: 0.0001 -> 0.0003' in message
  assert '--allow_config_change=optimizer.learning_rate' in message
  assert 'train.steps' not in message   # allowed by default; tuple == list
  # Allowed by key or by section: the changed keys come back (to log).
  assert resume.check_config(saved, current, ['optimizer']) == [
      'optimizer.learning_rate', 'train.steps']
  assert resume.parse_allowed(' a.b, c ,') == ('a.b', 'c')


def test_a_resume_with_another_learning_rate_stops_before_training(saved):
  workdir, config = saved
  config.optimizer.learning_rate *= 3
  config.train.steps = 5
  with pytest.raises(UserError, match='optimizer.learning_rate'):
    trainer.train_and_evaluate(config, workdir, data_iterator=iter([]))
  manager = checkpointing.create_manager(workdir)
  try:   # the same change, allowed by name, passes the check
    trainer._check_resumed_config(  # pylint: disable=protected-access
        manager, config, ['optimizer.learning_rate'])
  finally:
    manager.close()


def test_another_process_count_is_a_one_line_error(saved, monkeypatch, tmp_path):
  import grain
  workdir, config = saved
  manager = checkpointing.create_manager(workdir)
  abstract = train_state.abstract_train_state(
      train_state.build_networks(config), config, sharding.create_mesh())
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  try:
    with pytest.raises(UserError, match=r'saved by 1 process\(es\), this run '
                       r'has 2: .*resume with 1 process'):
      checkpointing.restore(manager, abstract, iter(
          grain.MapDataset.range(10).to_iter_dataset()))
  finally:
    monkeypatch.undo()
    manager.close()
  resume.check_process_count(str(tmp_path), 3)   # no iterator state: silent
