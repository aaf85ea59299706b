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


# ------------------------------------------------------------ issue 32 ---
def test_artifacts_and_json_files_are_regular_files_of_capped_size(
    exported, tmp_path, monkeypatch):
  """An artifact (or the manifest, or the model config) that is a link to
  /dev/zero, or larger than the cap, is one line: never read to the end."""
  from scsnet_jax.errors import UserError
  _, _, path, _ = exported
  copy = _copy(path, tmp_path)
  artifact = os.path.join(copy, 'generator_automatic_x2.jax_export')
  os.remove(artifact)
  os.symlink('/dev/zero', artifact)
  runner = reader.ExportedGenerator(copy)
  gray = _random((1, 8, 8, 1), 0)
  with pytest.raises(UserError, match='not a regular file') as error:
    runner.predict_nlab(gray, None, (16, 16))
  assert 'generator_automatic_x2.jax_export' in str(error.value)
  # A regular file over the (lowered) cap: refused from its size.
  size = os.path.getsize(os.path.join(path, 'generator_automatic_x2'
                                      '.jax_export'))
  os.remove(artifact)
  with open(artifact, 'wb') as f:
    f.truncate(size + 1)
  monkeypatch.setattr(reader, 'MAX_ARTIFACT_BYTES', size)
  with pytest.raises(UserError, match=f'more than the limit of {size}'):
    reader.ExportedGenerator(copy).predict_nlab(gray, None, (16, 16))
  for name in ('manifest.json', 'model_config.json'):
    other = _copy(path, tmp_path / name)
    os.remove(os.path.join(other, name))
    os.symlink('/dev/zero', os.path.join(other, name))
    with pytest.raises(UserError, match=f'{name}: not a regular file'):
      reader.load_params(other)


@pytest.mark.parametrize('edit, words', [
    (lambda m: m['artifacts'][0].pop('mode'), "artifacts[0].mode"),
    (lambda m: m['artifacts'][0].update(input_multiple=0),
     'artifacts[0].input_multiple = 0'),
    (lambda m: m['artifacts'][0].update(scale='2'), "artifacts[0].scale = '2'"),
    (lambda m: m['artifacts'][0].update(scale=True), 'artifacts[0].scale'),
    (lambda m: m['artifacts'][0].update(mode='sepia'),
     "artifacts[0].mode = 'sepia'"),
    (lambda m: m.pop('artifacts'), 'artifacts'),
    (lambda m: m.update(step='3'), "step = '3'"),
])
def test_manifest_schema_is_checked_in_one_line(exported, tmp_path, edit,
                                                words):
  """A missing mode (a KeyError per image), input_multiple 0 (a
  ZeroDivisionError), a string scale (silently never matched): each is one
  line from read_manifest, before any image."""
  from scsnet_jax.errors import UserError
  _, _, path, _ = exported
  with pytest.raises(UserError) as error:
    reader.read_manifest(_copy(path, tmp_path, edit))
  message = str(error.value)
  assert words in message and 'manifest.json' in message, message
  assert '\n' not in message
