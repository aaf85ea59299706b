"""Any magnification: a scale drawn per batch from [1, 4], quantised to 7
values (1, 1.5, ..., 4) so the step compiles at most 7 x 2 times.

All processes draw the same scale for a batch (seeded by batch number), so
shapes agree across hosts.
"""

from scsnet_jax import config_lib


def get_config():
  config = config_lib.load_sibling_config(__file__, 'x4')
  config.data.scale = (1.0, 4.0)
  config.data.scale_choices = 7
  config.data.eval_scale = 4.0
  return config
