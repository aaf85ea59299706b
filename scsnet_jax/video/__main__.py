"""``python -m scsnet_jax.video``: runs ``cli.main``."""

import sys

from scsnet_jax.video import cli

sys.exit(cli.main())
