"""config_overrides.py: each closed set comes from the module that owns it
and is checked where the config is built; dotted reads; overrides."""

import glob
import os

import pytest

from scsnet_jax import config_lib, config_overrides
from scsnet_jax.errors import UserError
from scsnet_jax.evaluation import validation
from scsnet_jax.models import cpm, generator
from scsnet_jax.train import losses
from scsnet_jax.train import state as train_state
from tests.paths import REPO_ROOT


def test_each_closed_set_is_the_owners_own_object():
  choices = config_overrides.choices()
  assert choices['model.cpm_sampling'] is cpm.SAMPLINGS
  assert choices['model.attention_impl'] is generator.ATTENTION_IMPLS
  assert choices['model.cpm_project_first'] is generator.PROJECT_FIRST
  assert choices['train.mode_schedule'] is config_lib.MODE_SCHEDULES
  assert choices['optimizer.schedule'] is train_state.LR_SCHEDULES
  assert (choices['optimizer.weight_decay_mode'] is
          train_state.WEIGHT_DECAY_MODES)
  assert choices['loss.luminance_loss'] is losses.LUMINANCE_LOSSES
  assert choices['validation.source'] is validation.SOURCES
  assert choices['dtype'] == ('float32', 'bfloat16')
  # Every key names a field of the base config.
  base = config_lib.get_base_config()
  assert all(config_overrides.unknown_key(base, key) is None
             for key in choices)


@pytest.mark.parametrize('key', sorted(config_overrides.choices()))
def test_a_value_outside_a_closed_set_is_one_line_naming_key_and_choices(key):
  config = config_lib.get_base_config()
  parent, _, leaf = key.rpartition('.')
  node = config_overrides.get(config, parent) if parent else config
  with node.ignore_type():
    node[leaf] = 'nonsense'
  with pytest.raises(UserError) as error:
    config_overrides.validate_config(config)
  message = str(error.value)
  assert '\n' not in message
  # model.dtype is a reference to dtype: setting one sets both.
  (line,) = [part for part in message.split('; ')
             if part.startswith(f'config.{key} ')]
  allowed = ', '.join(repr(c) for c in config_overrides.choices()[key])
  assert line.startswith(f'config.{key} must be one of {allowed}')
  assert line.endswith("got 'nonsense'")


def test_every_shipped_config_is_valid_and_holds_every_base_key():
  """Plain ``config.x.key`` reads rely on this: every config is the base
  with some values changed, never a config without some keys."""
  base_keys = set(config_overrides.leaf_paths(config_lib.get_base_config()))
  files = sorted(glob.glob(os.path.join(REPO_ROOT, 'configs', '*.py')))
  assert len(files) >= 5
  for path in files:
    config = config_lib.load_sibling_config(path, os.path.basename(path)[:-3])
    assert base_keys <= set(config_overrides.leaf_paths(config)), path
    config_overrides.validate_config(config)


def test_a_saved_config_is_merged_onto_the_base():
  config = config_overrides.config_from_dict({'train': {'steps': 7},
                                              'future_section': {'a': 1}})
  assert config.train.steps == 7
  assert config.train.ema_warmup is True          # the base's default
  assert config.future_section.a == 1             # kept as saved


def test_get_reads_dotted_keys_with_a_default():
  config = config_lib.get_base_config()
  assert config_overrides.get(config, 'optimizer.schedule') == 'constant'
  assert config_overrides.get(config, 'optimizer.nothing', None) is None
  with pytest.raises(KeyError):
    config_overrides.get(config, 'optimizer.nothing')


def test_overrides_take_the_fields_type_and_refuse_unknown_keys():
  config = config_lib.get_base_config()
  config_overrides.apply_overrides(config, [('eval.batch_size', '2'),
                                            ('eval.y_channel', None),
                                            ('optimizer.learning_rate', '3')])
  assert config.eval.batch_size == 2
  assert config.eval.y_channel is True
  assert config.optimizer.learning_rate == 3.0
  with pytest.raises(UserError, match="unknown config key 'eval.batch_sise'; "
                     'closest valid keys: eval.batch_size'):
    config_overrides.apply_overrides(config, [('eval.batch_sise', '2')])
  with pytest.raises(UserError, match='--config.eval.batch_size: expected an '
                     "integer, got 'two'"):
    config_overrides.apply_overrides(config, [('eval.batch_size', 'two')])


_TEST_CONFIG_FLAG = '--config=' + os.path.join(REPO_ROOT, 'configs', 'test.py')


@pytest.mark.parametrize('flag, expected', [
    ('--config.train.stepz=5', "unknown config key 'train.stepz'; closest "
     'valid keys: train.steps'),
    ('--config.train.steps=abc', "--config.train.steps=abc: expected an "
     "integer, got 'abc' (the config file has "),
    ('--config.model.cpm_hidden=[1]', 'config.model.cpm_hidden cannot be set '
     'from the command line (a list field); set it in a config file'),
])
def test_a_refused_flag_is_explained_from_the_config_file(flag, expected):
  message = config_overrides.explain_flag_error(
      ['main', _TEST_CONFIG_FLAG, '--workdir=w', flag],
      ValueError('absl says\nsomething'))
  assert message.startswith(expected), message


def test_without_a_cause_in_the_flags_absls_message_is_kept_on_one_line():
  message = config_overrides.explain_flag_error(
      ['main', '--config=configs/no_such.py', '--config.train.steps=2'],
      ValueError('"Flag --config: no_such.py\n not found"'))
  assert message == 'Flag --config: no_such.py not found'


def test_workdir_overrides_are_taken_only_without_a_config_file():
  argv = ['main', '--workdir=w', '--config.eval.batch_size=2',
          '--config.eval.y_channel']
  assert config_overrides.take_workdir_overrides(argv) == (
      ['main', '--workdir=w'],
      [('eval.batch_size', '2'), ('eval.y_channel', None)])
  with_file = ['main', _TEST_CONFIG_FLAG, '--config.eval.batch_size=2']
  assert config_overrides.take_workdir_overrides(with_file) == (with_file, [])
  assert config_overrides.config_file_from_argv(
      ['main', '--config', 'c.py:x']) == 'c.py:x'
