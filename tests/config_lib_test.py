"""config_lib: shallow copies keep references; validation of flag values;
the workdir's config.json; unknown keys get the closest valid ones."""

import json

import pytest

from scsnet_jax import config_lib, config_overrides
from tests.paths import TEST_CONFIG



def _config():
  return config_lib.load_sibling_config(TEST_CONFIG, 'test')


def test_with_shallow_model_keeps_the_dtype_reference():
  config = config_lib.with_shallow_model(_config())
  assert config.model.texture_res_blocks == 1
  config.dtype = 'bfloat16'
  assert config.model.dtype == 'bfloat16'


@pytest.mark.parametrize('value', ['False', 'True', 'false', 'no', 1, None])
def test_cpm_project_first_rejects_flag_strings_and_other_types(value):
  config = _config()
  with config.model.ignore_type():
    config.model.cpm_project_first = value
  with pytest.raises(ValueError, match='cpm_project_first must be one of') as e:
    config_overrides.validate_config(config)
  assert '\n' not in str(e.value)
  if value == 'False':
    assert "did you mean 'never'" in str(e.value)


@pytest.mark.parametrize('value', ['auto', 'always', 'never', True, False])
def test_cpm_project_first_accepts_choices_and_python_bools(value):
  config = _config()
  with config.model.ignore_type():
    config.model.cpm_project_first = value
  config_overrides.validate_config(config)


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
    config_overrides.validate_config(config)


def test_wrong_types_are_one_line_errors():
  config = _config()
  with config.train.ignore_type():
    config.train.steps = '5'
  with pytest.raises(ValueError, match=r"config.train.steps must be int, got "
                     r"'5' \(str\)"):
    config_overrides.validate_config(config)
  config = _config()
  config.loss.content_weight = 3   # an int is a fine float
  config_overrides.validate_config(config)


def test_unknown_key_names_the_closest_valid_keys():
  config = _config()
  assert config_overrides.unknown_key(config, 'train.steps') is None
  message = config_overrides.unknown_key(config, 'train.stepz')
  assert message.startswith("unknown config key 'train.stepz'")
  assert 'train.steps' in message
  assert 'train.steps' in config_overrides.unknown_key(config, 'trainz.steps')


def test_workdir_config_round_trip_and_overrides(tmp_path):
  config = _config()
  config.model.texture_res_blocks = 2
  (tmp_path / 'config.json').write_text(config.to_json())
  loaded = config_overrides.load_workdir_config(str(tmp_path))
  assert loaded.to_dict() == config.to_dict()
  loaded.dtype = 'bfloat16'          # the reference survives the JSON
  assert loaded.model.dtype == 'bfloat16'
  config_overrides.apply_overrides(loaded, [('eval.batch_size', '2'),
                                      ('eval.y_channel', None),
                                      ('data.scale', '2')])
  assert loaded.eval.batch_size == 2 and loaded.eval.y_channel is True
  assert loaded.data.scale == 2.0
  with pytest.raises(ValueError, match="unknown config key 'eval.batchsize'"
                     ".*eval.batch_size"):
    config_overrides.apply_overrides(loaded, [('eval.batchsize', '2')])
  with pytest.raises(ValueError, match='eval.batch_size: expected an integer'):
    config_overrides.apply_overrides(loaded, [('eval.batch_size', 'two')])
  with pytest.raises(FileNotFoundError, match='config.json does not exist'):
    config_overrides.load_workdir_config(str(tmp_path / 'nothing'))


def test_saved_config_keys_unknown_to_the_base_config_are_kept():
  values = json.loads(_config().to_json())
  values['train']['from_a_newer_version'] = 3
  loaded = config_overrides.config_from_dict(values)
  assert loaded.train.from_a_newer_version == 3


def test_cpm_project_first_strings_mean_what_they_say():
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from scsnet_jax.models import cpm, generator  # pylint: disable=g-import-not-at-top
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
