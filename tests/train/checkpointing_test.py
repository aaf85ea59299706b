"""checkpointing.py: round trips, partial reads, retention, iterator state."""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scsnet_jax import config_lib, sharding
from scsnet_jax import loading
from scsnet_jax.train import checkpointing
from scsnet_jax.train import state as train_state
from tests.paths import TEST_CONFIG
from tests import helpers



@pytest.fixture(scope='module')
def config():
  return helpers.with_shallow_model(
      config_lib.load_sibling_config(TEST_CONFIG, 'test'))


@pytest.fixture(scope='module')
def state(config):
  state = train_state.create_train_state(
      train_state.build_networks(config), config, sharding.create_mesh())
  # Make params, EMA and step distinguishable from a fresh state.
  return state.replace(
      step=jnp.int32(7),
      generator_ema=jax.tree.map(lambda x: x * 0.5 + 1.0, state.generator_ema))


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_then_restore_gives_back_every_leaf(tmp_path, config, state):
  helpers.save_train_state(tmp_path, state, config)
  mesh = sharding.create_mesh()
  manager = checkpointing.create_manager(tmp_path)
  assert manager.latest_step() == 7
  restored = checkpointing.restore(
      manager, train_state.abstract_train_state(
          train_state.build_networks(config), config, mesh))
  manager.close()
  _assert_trees_equal(restored, state)
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for leaf in jax.tree.leaves(restored):
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 8


def test_load_generator_reads_ema_or_raw_weights_and_config(tmp_path, config,
                                                            state):
  helpers.save_train_state(tmp_path, state, config)
  bundle = loading.load_generator(tmp_path)
  assert bundle.step == 7
  assert bundle.config.model.texture_res_blocks == 1
  assert bundle.config.to_dict() == config.to_dict()
  _assert_trees_equal(bundle.params, state.generator_ema)
  raw = loading.load_generator(tmp_path, use_ema=False)
  _assert_trees_equal(raw.params, state.generator_params)
  # The bundle runs: one automatic forward pass of the restored generator.
  from flax import nnx
  gen = nnx.merge(bundle.graphdef, bundle.params)
  out = gen(jnp.zeros((1, 8, 8, 1)), out_size=(16, 16))
  assert out.shape == (1, 16, 16, 3)


def test_missing_workdir_or_step_is_a_clear_error(tmp_path, config, state):
  with pytest.raises(FileNotFoundError, match='no checkpoints under'):
    loading.load_generator(tmp_path / 'nothing')
  helpers.save_train_state(tmp_path, state, config)
  with pytest.raises(FileNotFoundError, match=r'available: \[7\]'):
    loading.load_generator(tmp_path, step=3)


def test_keeps_last_n_plus_every_keep_period(tmp_path, config, state):
  manager = checkpointing.create_manager(tmp_path, max_to_keep=2,
                                         keep_period=2, enable_async=False)
  for step in range(1, 6):
    checkpointing.save(manager, state.replace(step=jnp.int32(step)), config)
  manager.wait_until_finished()
  assert sorted(manager.all_steps()) == [2, 4, 5]
  manager.close()


def _counting_iterator():
  """A grain iterator over 0, 1, 2, ... (grain checkpoints its position)."""
  import grain
  return iter(grain.MapDataset.range(100).to_iter_dataset())


def test_data_iterator_position_is_saved_per_process(tmp_path, config, state):
  iterator = _counting_iterator()
  for _ in range(6):
    next(iterator)
  helpers.save_train_state(tmp_path, state, config, iterator)
  assert os.path.exists(tmp_path / 'checkpoints' / '7' / 'data_iterator' /
                        'process_0-of-1.json')
  fresh = _counting_iterator()
  manager = checkpointing.create_manager(tmp_path)
  checkpointing.restore(manager, train_state.abstract_train_state(
      train_state.build_networks(config), config, sharding.create_mesh()), fresh)
  manager.close()
  assert next(fresh) == 6


def test_grain_iterator_resumes_at_the_next_batch(tmp_path, config, state):
  from scsnet_jax.data import pipeline as input_pipeline
  iterator = input_pipeline.create_iterator(config.data, 'train')
  next(iterator)
  helpers.save_train_state(tmp_path, state, config, iterator)
  expected = next(iterator)
  fresh = input_pipeline.create_iterator(config.data, 'train')
  manager = checkpointing.create_manager(tmp_path)
  checkpointing.restore(manager, train_state.abstract_train_state(
      train_state.build_networks(config), config, sharding.create_mesh()), fresh)
  manager.close()
  got = next(fresh)
  for key in ('gray', 'target', 'reference'):
    np.testing.assert_array_equal(got[key], expected[key])


def _tree_listing(root):
  return sorted((os.path.relpath(os.path.join(d, n), root),
                 os.path.getmtime(os.path.join(d, n)))
                for d, dirs, files in os.walk(root) for n in dirs + files)


def test_checkpoint_paths_a_user_may_give(tmp_path, config, state):
  """WORKDIR, WORKDIR/checkpoints and WORKDIR/checkpoints/STEP all load;
  other folders are one line naming what was expected."""
  helpers.save_train_state(tmp_path, state, config)
  later = state.replace(step=jnp.int32(9), generator_ema=jax.tree.map(
      lambda x: x + 2.0, state.generator_ema))
  helpers.save_train_state(tmp_path, later, config)
  cases = [(tmp_path, 9), (tmp_path / 'checkpoints', 9),
           (tmp_path / 'checkpoints' / '7', 7),
           (str(tmp_path / 'checkpoints' / '9') + '/', 9)]
  for path, step in cases:
    bundle = loading.load_generator(path)
    assert bundle.step == step, path
    _assert_trees_equal(bundle.params, (state if step == 7 else later)
                        .generator_ema)
    assert bundle.config.to_dict() == config.to_dict()
  with pytest.raises(ValueError, match='is step 7 but step 9'):
    loading.load_generator(tmp_path / 'checkpoints' / '7', step=9)
  (tmp_path / 'logs').mkdir()
  for bad in (tmp_path / 'logs', tmp_path / 'checkpoints' / '7' / 'config',
              tmp_path / 'missing'):
    with pytest.raises(FileNotFoundError) as error:
      loading.load_generator(bad)
    message = str(error.value)
    assert '\n' not in message and message.startswith(str(bad))
    assert 'checkpoints/STEP' in message and 'export' in message


def test_reading_writes_nothing_and_warns_nothing(tmp_path, config, state,
                                                  caplog):
  helpers.save_train_state(tmp_path, state, config)
  before = _tree_listing(tmp_path)
  with caplog.at_level(logging.INFO):
    loading.load_generator(tmp_path)
    loading.load_generator(tmp_path / 'checkpoints' / '7')
  warnings = [r.getMessage() for r in caplog.records
              if r.levelno >= logging.WARNING]
  assert warnings == []
  assert not any('read only' in r.getMessage() for r in caplog.records)
  assert _tree_listing(tmp_path) == before
