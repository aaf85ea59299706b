"""export/reader.py: an export folder's generator pads and crops like the
predictor; a manifest cannot point outside its folder; foreign or damaged
artifacts are refused before they run (issue 19: export folders are code)."""

import json
import os

import jax
import numpy as np
import pytest

from scsnet_jax.export import reader
from scsnet_jax.inference import predictor as predictor_lib
from tests.export.tiny import TINY


def _random(shape, seed):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_exported_generator_pads_and_crops_like_the_predictor(exported):
  _, params, path, _ = exported
  gray = _random((1, 10, 14, 1), 0)
  runner = reader.ExportedGenerator(path)
  assert runner.supports(False, 10, 14, (20, 28))
  assert not runner.supports(False, 10, 14, (15, 21))
  got, _ = runner.predict_nlab(gray, None, (20, 28))
  want, _ = predictor_lib.Predictor(params, TINY).predict_nlab(
      gray, None, (20, 28))
  np.testing.assert_allclose(got, want, atol=1e-5)


# ------------------------------------------- issue 19: export folders are code ---
def _copy(path, tmp_path, edit=None):
  import shutil
  copy = str(tmp_path / 'copy')
  shutil.copytree(path, copy)
  if edit is not None:
    manifest_path = os.path.join(copy, 'manifest.json')
    with open(manifest_path) as f:
      manifest = json.load(f)
    edit(manifest)
    with open(manifest_path, 'w') as f:
      json.dump(manifest, f)
  return copy


@pytest.mark.parametrize('bad', ['/etc/passwd', '../outside.jax_export',
                                 'sub/x.jax_export', '..', 7])
def test_manifest_file_names_must_be_plain_names(exported, tmp_path, bad):
  from scsnet_jax.errors import UserError
  _, _, path, _ = exported
  def edit(manifest):
    manifest['artifacts'][0]['file'] = bad
  with pytest.raises(UserError, match='not a plain file name'):
    reader.ExportedGenerator(_copy(path, tmp_path, edit))


def test_params_outside_the_folder_are_refused(exported, tmp_path):
  from scsnet_jax.errors import UserError
  _, _, path, _ = exported
  def edit(manifest):
    manifest['params'] = os.path.abspath(os.path.join(path, 'params'))
  with pytest.raises(UserError, match='params'):
    reader.load_params(_copy(path, tmp_path, edit))


def test_artifacts_with_foreign_custom_calls_or_junk_are_refused(exported,
                                                                 tmp_path):
  import jax.numpy as jnp
  from scsnet_jax.errors import UserError
  _, _, path, _ = exported
  copy = _copy(path, tmp_path)
  # Shape-compatible, but it calls LAPACK through a custom call.
  foreign = jax.export.export(jax.jit(
      lambda g: jnp.repeat(jnp.repeat(jnp.concatenate(
          [g, g, g], -1) * jnp.linalg.eigh(g[0, :, :, 0])[0][0], 2, 1),
          2, 2)))(jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32))
  with open(os.path.join(copy, 'generator_automatic_x2.jax_export'),
            'wb') as f:
    f.write(foreign.serialize())
  runner = reader.ExportedGenerator(copy)
  gray = _random((1, 8, 8, 1), 0)
  with pytest.raises(UserError, match='custom call.*lapack'):
    runner.predict_nlab(gray, None, (16, 16))
  with open(os.path.join(copy, 'generator_referential_x2.jax_export'),
            'wb') as f:
    f.write(b'\x00junk' * 20)
  with pytest.raises(UserError, match='not a readable jax.export artifact'):
    runner.predict_nlab(gray, _random((1, 4, 8, 3), 1), (16, 16))
