"""The starter weights shipped in scsnet_jax/starter: intact, loadable, and
what predict runs when --checkpoint is not given."""

import json
import os
import re

import numpy as np
from PIL import Image

from scsnet_jax import hashing
from scsnet_jax import predict, starter
from scsnet_jax.export import reader
from tests import readme_test
from tests.paths import REPO_ROOT

MAX_SHIPPED_BYTES = 40 << 20


def test_the_shipped_file_is_the_one_the_manifest_and_provenance_name():
  """The SHA-256 recomputed here equals the manifest's and PROVENANCE.md's;
  one file of at most 40 MB; the manifest reads clean."""
  path = os.path.join(starter.STARTER_DIR, 'params.npz')
  digest = hashing.file_sha256(path)
  manifest = reader.read_manifest(starter.STARTER_DIR)
  assert manifest['params'] == 'params.npz'
  assert manifest['params_sha256'] == digest
  with open(os.path.join(starter.STARTER_DIR, 'PROVENANCE.md')) as f:
    provenance = f.read()
  assert digest in provenance
  assert re.search(r'step[s]?\D+' + str(manifest['step']), provenance)
  assert os.path.getsize(path) <= MAX_SHIPPED_BYTES
  with open(os.path.join(starter.STARTER_DIR, 'model_config.json')) as f:
    assert json.load(f)['referential'] is True   # both modes ship


def test_the_readmes_first_command_uses_them_and_says_so_once(
    tmp_path, capsys, monkeypatch):
  """README's first example as written (no --checkpoint; the shipped 112x75
  gray sample, x4): the note once on stderr, a 448x300 colour PNG whose L
  follows the bicubic enlargement of the input (correlation > 0.9) and
  which carries colour (not gray)."""
  argv = next(a for a in readme_test.readme_commands()
              if a[2] == 'scsnet_jax.predict')
  assert '--checkpoint' not in ' '.join(argv)
  monkeypatch.chdir(REPO_ROOT)
  out = str(tmp_path / 'out')
  argv = readme_test._replace(argv, readme_test._flag(argv, '--output'), out)
  assert predict.main(argv[3:]) == 0
  assert capsys.readouterr().err.count(starter.NOTE) == 1
  source = readme_test._flag(argv, '--input')
  name = os.path.splitext(os.path.basename(source))[0] + '.png'
  result = np.asarray(Image.open(os.path.join(out, name)).convert('RGB'),
                      np.float32)
  assert result.shape == (300, 448, 3)
  gray = np.asarray(Image.open(source).convert('L').resize(
      (448, 300), Image.Resampling.BICUBIC), np.float32)
  assert np.corrcoef(result.mean(-1).ravel(), gray.ravel())[0, 1] > 0.9
  assert (result.max(-1) - result.min(-1)).mean() > 2.0   # not gray
