"""checkpointing.py: round trips, partial reads, retention, iterator state."""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scsnet_jax import config_lib, sharding
from scsnet_jax import loading
from scsnet_jax.errors import UserError
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


# ------------------------------------------------------------ issue 32 ---
def damage_step(step_dir, item='generator_ema'):
  """Truncates the largest OCDBT data file of one item to half its size
  (a disk that filled, a copy cut short): TensorStore's OUT_OF_RANGE."""
  data = os.path.join(step_dir, item, 'ocdbt.process_0', 'd')
  biggest = max((os.path.join(data, name) for name in os.listdir(data)),
                key=os.path.getsize)
  os.truncate(biggest, os.path.getsize(biggest) // 2)


@pytest.fixture(scope='module')
def plain_state(config):
  """A TrainState of numpy arrays from the shapes alone (step 7): nothing
  compiled, unlike ``state``."""
  abstract = train_state.abstract_train_state(
      train_state.build_networks(config), config, sharding.create_mesh())
  rng = np.random.default_rng(0)
  state = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype),
                       abstract)
  return state.replace(step=np.int32(7))


@pytest.fixture(scope='module')
def damaged_workdir(tmp_path_factory, config, plain_state):
  """Steps 7 (intact) and 9 (its generator_ema truncated)."""
  workdir = tmp_path_factory.mktemp('damaged')
  helpers.save_train_state(workdir, plain_state, config)
  helpers.save_train_state(
      workdir, plain_state.replace(step=np.int32(9)), config)
  damage_step(workdir / 'checkpoints' / '9')
  return workdir


def test_a_damaged_latest_step_stops_training_in_one_line(
    damaged_workdir, tmp_path, config, plain_state):
  """Once a 157-line TensorStore traceback; now one line naming the damaged
  step, the intact one, and both ways on; with the flag, the damaged step
  is moved aside and training resumes from the intact one."""
  import shutil
  workdir = tmp_path / 'w'
  shutil.copytree(damaged_workdir, workdir)
  checkpoints = workdir / 'checkpoints'
  networks = train_state.build_networks(config)
  mesh = sharding.create_mesh()
  manager = checkpointing.create_manager(workdir)
  with pytest.raises(UserError) as error:
    checkpointing.restore_or_create(manager, networks, config, mesh)
  message = str(error.value)
  assert '\n' not in message and len(message) < 700, message
  assert message.startswith(f'checkpoint step 9 in {checkpoints} is damaged '
                            '(OUT_OF_RANGE: '), message
  assert 'step 7 is intact' in message
  assert f'mv {checkpoints}/9 {checkpoints}/9.damaged' in message
  assert '--fall_back_to_intact_checkpoint' in message
  assert sorted(os.listdir(checkpoints)) == ['7', '9']   # nothing moved
  restored, resumed = checkpointing.restore_or_create(
      manager, networks, config, mesh, fall_back=True)
  assert resumed and int(restored.step) == 7
  _assert_trees_equal(restored.generator_ema, plain_state.generator_ema)
  assert sorted(os.listdir(checkpoints)) == ['7', '9.damaged']
  assert manager.all_steps() == [7]
  manager.close()


def test_a_damaged_step_names_the_step_to_predict_from(damaged_workdir):
  with pytest.raises(UserError) as error:
    loading.load_generator(damaged_workdir)
  message = str(error.value)
  checkpoints = damaged_workdir / 'checkpoints'
  assert '\n' not in message and 'TensorStore(' not in message
  assert message.startswith(f'checkpoint step 9 in {checkpoints} is damaged '
                            '(OUT_OF_RANGE: ')
  assert message.endswith(f'use an earlier step: --checkpoint '
                          f'{checkpoints}/7'), message


@pytest.fixture()
def tiny_disk(tmp_path):
  """A 40 MiB tmpfs (the state needs ~170 MiB): a real ENOSPC. Needs root
  and a kernel that lets this process mount; skipped elsewhere."""
  import subprocess
  disk = tmp_path / 'disk'
  disk.mkdir()
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=40m', 'tmpfs',
                            str(disk)], capture_output=True)
  if mounted.returncode:
    pytest.skip(f'cannot mount a tmpfs here: {mounted.stderr.decode()}')
  try:
    yield disk
  finally:
    subprocess.run(['umount', '-l', str(disk)], check=False)


def test_a_full_disk_is_one_line_before_the_save_starts(tiny_disk, config,
                                                        plain_state):
  """Once 4,541 lines (590 tracebacks from orbax's threads) and training
  went on computing steps it could not save."""
  workdir = tiny_disk / 'w'
  manager = checkpointing.create_manager(workdir)
  with pytest.raises(checkpointing.CheckpointSaveError) as error:
    checkpointing.save(manager, plain_state, config)
  message = str(error.value)
  assert message.startswith(
      f'checkpoint save failed: no space left on {workdir} (step 7 needs '), (
          message)
  assert '\n' not in message
  assert os.listdir(workdir / 'checkpoints') == []   # nothing started
  manager.close()


def test_a_save_that_fails_in_orbax_threads_is_one_line(tiny_disk, config,
                                                        plain_state,
                                                        monkeypatch):
  """The free space can go while a save runs (another writer): the
  asynchronous failure is reported by the next check_saves, as one line."""
  monkeypatch.setattr(checkpointing, '_check_free_space', lambda *a: None)
  workdir = tiny_disk / 'w'
  manager = checkpointing.create_manager(workdir)
  assert checkpointing.save(manager, plain_state, config)
  with pytest.raises(checkpointing.CheckpointSaveError) as error:
    checkpointing.finish_saves(manager)
  assert str(error.value).startswith(
      f'checkpoint save failed: no space left on {workdir}; ')
  manager.close()
