"""x4's recipe at magnification 2: 256 px gray inputs -> 512 px colour."""

from scsnet_jax import config_lib


def get_config():
  config = config_lib.load_sibling_config(__file__, 'x4')
  config.data.scale = 2.0
  return config
