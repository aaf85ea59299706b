"""tests/helpers.py: the shallow test model keeps the config's references."""

from scsnet_jax import config_lib
from tests import helpers
from tests.paths import TEST_CONFIG


def test_with_shallow_model_keeps_the_dtype_reference():
  config = helpers.with_shallow_model(
      config_lib.load_sibling_config(TEST_CONFIG, 'test'))
  assert config.model.texture_res_blocks == 1
  config.dtype = 'bfloat16'
  assert config.model.dtype == 'bfloat16'
  assert helpers.shallow_model_flags()[0] == (
      '--config.model.texture_res_blocks=1')
