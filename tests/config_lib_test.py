"""config_lib: validation of flag values beside the defaults (the model
section by GeneratorConfig itself); the workdir's config.json; the one
flattener and dotted reads."""

import glob
import json
import os

import pytest

from scsnet_jax import config_lib
from scsnet_jax.errors import UserError
from scsnet_jax.models import cpm, generator
from tests.paths import REPO_ROOT, TEST_CONFIG



def _config():
  return config_lib.load_sibling_config(TEST_CONFIG, 'test')


@pytest.mark.parametrize('value', ['False', 'True', 'false', 'no', 1, None])
def test_cpm_project_first_rejects_flag_strings_and_other_types(value):
  config = _config()
  with config.model.ignore_type():
    config.model.cpm_project_first = value
  with pytest.raises(ValueError, match='cpm_project_first must be one of') as e:
    config_lib.validate_config(config)
  assert '\n' not in str(e.value)
  if value == 'False':
    assert "did you mean 'never'" in str(e.value)


@pytest.mark.parametrize('value', ['auto', 'always', 'never', True, False])
def test_cpm_project_first_accepts_choices_and_python_bools(value):
  config = _config()
  with config.model.ignore_type():
    config.model.cpm_project_first = value
  config_lib.validate_config(config)


@pytest.mark.parametrize('key,value', [
    ('dtype', 'float16'), ('train.mode_schedule', 'both'),
    ('model.attention_impl', 'None'), ('loss.vgg_dtype', 'fp32')])
def test_string_choices_are_validated(key, value):
  config = _config()
  section, _, leaf = key.rpartition('.')
  node = config[section] if section else config
  with node.ignore_type():
    node[leaf] = value
  with pytest.raises(ValueError, match=f'config.{key} must be one of'):
    config_lib.validate_config(config)


def test_wrong_types_are_one_line_errors():
  config = _config()
  with config.train.ignore_type():
    config.train.steps = '5'
  with pytest.raises(ValueError, match=r"config.train.steps must be int, got "
                     r"'5' \(str\)"):
    config_lib.validate_config(config)
  config = _config()
  config.loss.content_weight = 3   # an int is a fine float
  config_lib.validate_config(config)


def test_workdir_config_round_trip(tmp_path):
  config = _config()
  config.model.texture_res_blocks = 2
  (tmp_path / 'config.json').write_text(config.to_json())
  loaded = config_lib.load_workdir_config(str(tmp_path))
  assert loaded.to_dict() == config.to_dict()
  loaded.dtype = 'bfloat16'          # the reference survives the JSON
  assert loaded.model.dtype == 'bfloat16'
  # configs/workdir.py:WORKDIR is the same config, as --config names it.
  named = config_lib.load_config_file(
      os.path.join(REPO_ROOT, 'configs', 'workdir.py') + f':{tmp_path}')
  assert named.to_dict() == config.to_dict()
  with pytest.raises(UserError, match='nothing/config.json does not exist'):
    config_lib.load_config_file(os.path.join(REPO_ROOT, 'configs', 'workdir.py')
                                + f':{tmp_path}/nothing')
  with pytest.raises(FileNotFoundError, match='config.json does not exist'):
    config_lib.load_workdir_config(str(tmp_path / 'nothing'))
  (tmp_path / 'config.json').write_text('{')
  with pytest.raises(UserError, match='config.json is not valid JSON'):
    config_lib.load_workdir_config(str(tmp_path))


def test_saved_config_keys_unknown_to_the_base_config_are_kept():
  values = json.loads(_config().to_json())
  values['train']['from_a_newer_version'] = 3
  loaded = config_lib.config_from_dict(values)
  assert loaded.train.from_a_newer_version == 3


def test_cpm_project_first_strings_mean_what_they_say():
  from flax import nnx  # pylint: disable=g-import-not-at-top
  def uses_projection(mode, lr_pixels, n_points):
    head = cpm.ContinuousPixelMapping(4, (4,), project_first=mode,
                                      rngs=nnx.Rngs(0))
    return head._use_projection(lr_pixels, n_points)  # pylint: disable=protected-access
  assert uses_projection('never', 4, 64) is False
  assert uses_projection(False, 4, 64) is False
  assert uses_projection('always', 64, 4) is True
  assert uses_projection(True, 64, 4) is True
  assert uses_projection('auto', 4, 64) is True
  assert uses_projection('auto', 64, 4) is False
  with pytest.raises(ValueError, match="got 'False'"):
    uses_projection('False', 4, 64)   # truthy before: projected anyway
  with pytest.raises(ValueError, match='cpm_project_first'):
    generator.GeneratorConfig(cpm_project_first='False')
  with pytest.raises(ValueError, match='attention_impl'):
    generator.GeneratorConfig.from_mapping({'attention_impl': 'flash'})


def test_each_closed_set_is_defined_beside_the_defaults():
  choices = config_lib.choices()
  assert choices['train.mode_schedule'] is config_lib.MODE_SCHEDULES
  assert choices['optimizer.schedule'] is config_lib.LR_SCHEDULES
  assert (choices['optimizer.weight_decay_mode'] is
          config_lib.WEIGHT_DECAY_MODES)
  assert choices['loss.luminance_loss'] is config_lib.LUMINANCE_LOSSES
  assert choices['validation.source'] is config_lib.VALIDATION_SOURCES
  assert choices['data.source'] is config_lib.DATA_SOURCES
  assert choices['dtype'] == ('float32', 'bfloat16')
  assert not any(key.startswith('model.') for key in choices)  # its own
  base = config_lib.get_base_config()
  assert all(config_lib.get(base, key, None) is not None for key in choices)


# The closed sets of the whole config: the model's (GeneratorConfig checks
# them) and the rest (config_lib.choices()).
_CLOSED_SETS = dict(config_lib.choices(), **{
    'model.dtype': ('float32', 'bfloat16'),
    'model.cpm_project_first': generator.PROJECT_FIRST,
    'model.attention_impl': generator.ATTENTION_IMPLS,
    'model.cpm_sampling': cpm.SAMPLINGS})


@pytest.mark.parametrize('key', sorted(_CLOSED_SETS))
def test_a_value_outside_a_closed_set_is_one_line_naming_key_and_choices(key):
  config = config_lib.get_base_config()
  parent, _, leaf = key.rpartition('.')
  node = config_lib.get(config, parent) if parent else config
  with node.ignore_type():
    node[leaf] = 'nonsense'
  with pytest.raises(UserError) as error:
    config_lib.validate_config(config)
  message = str(error.value)
  assert '\n' not in message
  # model.dtype is a reference to dtype: setting one sets both.
  (line,) = [part for part in message.split('; ')
             if part.startswith(f'config.{key} ')]
  allowed = ', '.join(repr(c) for c in _CLOSED_SETS[key])
  assert line.startswith(f'config.{key} must be one of {allowed}')
  assert line.endswith("got 'nonsense'")


def test_every_shipped_config_is_valid_and_holds_every_base_key():
  """Plain ``config.x.key`` reads rely on this: every config is the base
  with some values changed, never a config without some keys."""
  base_keys = set(config_lib.flatten(config_lib.get_base_config()))
  files = [path for path in sorted(glob.glob(
      os.path.join(REPO_ROOT, 'configs', '*.py')))
           if not path.endswith('workdir.py')]   # it needs a workdir
  assert len(files) >= 5
  for path in files:
    config = config_lib.load_sibling_config(path, os.path.basename(path)[:-3])
    assert base_keys <= set(config_lib.flatten(config)), path
    config_lib.validate_config(config)


def test_a_saved_config_is_merged_onto_the_base():
  config = config_lib.config_from_dict({'train': {'steps': 7},
                                        'future_section': {'a': 1}})
  assert config.train.steps == 7
  assert config.train.ema_warmup is True          # the base's default
  assert config.future_section.a == 1             # kept as saved


def test_get_reads_dotted_keys_with_a_default():
  config = config_lib.get_base_config()
  assert config_lib.get(config, 'optimizer.schedule') == 'constant'
  assert config_lib.get(config, 'optimizer.nothing', None) is None
  with pytest.raises(KeyError):
    config_lib.get(config, 'optimizer.nothing')


def test_flatten_gives_dotted_leaves_of_configs_and_dicts():
  tree = {'a': {'b': 1, 'c': {'d': [1, 2]}}, 'e': 'x', 'f': {}}
  assert config_lib.flatten(tree) == {'a.b': 1, 'a.c.d': [1, 2], 'e': 'x',
                                      'f': {}}
  assert list(config_lib.flatten(tree, sep='/')) == ['a/b', 'a/c/d', 'e', 'f']
  config = config_lib.get_base_config()
  flat = config_lib.flatten(config)
  assert flat['data.quality_filter.min_file_bytes'] == 80 * 1024
  assert flat['model.dtype'] == flat['dtype']
  assert flat == config_lib.flatten(config.to_dict())
