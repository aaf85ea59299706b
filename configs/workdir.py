"""A training workdir's own config: ``--config=configs/workdir.py:WORKDIR``.

``WORKDIR/config.json`` (written by training) on the base config. ``python -m
scsnet_jax.main --mode=eval --workdir=W`` without ``--config`` uses this file
for ``W``, so ``--config.eval.batch_size=2`` overrides the saved config as it
overrides any config file.
"""

from scsnet_jax import config_lib
from scsnet_jax.errors import UserError


def get_config(workdir):
  try:
    return config_lib.load_workdir_config(workdir)
  except OSError as error:
    # ml_collections would hold an OSError back until the config is read,
    # wrapped; a UserError is reported while flags are parsed, in one line.
    raise UserError(str(error)) from None
