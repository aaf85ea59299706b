"""The starter weights: an export folder shipped inside the package.

``predict`` and the app use it when ``--checkpoint`` is not given
(``inference.runner.check_model_arguments``), so a new user can colourise
a photo without training first. The folder is what ``scsnet_jax.export
--params-format npz --scales none`` writes (manifest.json, model_config.json,
params.npz as float16 with its SHA-256 in the manifest); PROVENANCE.md says
which run made it (config, commit, steps, data, wall time, quality), and
docs/results.md shows what it does on photos it never saw.
"""

import os

STARTER_DIR = os.path.dirname(os.path.abspath(__file__))

NOTE = ('note: no --checkpoint given; using the starter weights shipped with '
        'scsnet_jax (a small CPU-trained model, docs/results.md)')
