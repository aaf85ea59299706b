"""``python -m scsnet_jax.export``: the command line of ``export.cli``."""

import sys

from scsnet_jax.export.cli import main

if __name__ == '__main__':
  sys.exit(main())
