"""jax.export artifacts: same numbers as the live generator, any input size
and batch, loadable without the model code."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from scsnet_jax import export
from scsnet_jax.inference import tiling as inference
from scsnet_jax.models.generator import Generator, GeneratorConfig

TINY = GeneratorConfig(
    referential=True, init_width=8, encoder_widths=(8, 16),
    source_res_blocks=0, reference_res_blocks=0, cross_attention_qk=8,
    self_attention_qk=8, decoder_res_blocks=(0, 0, 0), texture_res_blocks=0,
    fusion_width=8, cpm_hidden=(8, 8, 8), cpm_chunk_size=64)


def _config_dict(config):
  return {k: list(v) if isinstance(v, tuple) else v
          for k, v in vars(config).items()}


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  gen = Generator(TINY, rngs=nnx.Rngs(1))
  graphdef, state = nnx.split(gen)
  params = state.to_pure_dict()
  path = str(tmp_path_factory.mktemp('x') / 'export')
  manifest = export.export_generator(graphdef, params, _config_dict(TINY), path,
                                     scales=(2,), step=3)
  return gen, params, path, manifest


def _random(shape, seed):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.parametrize('mode', ['automatic', 'referential'])
def test_artifacts_match_live_model(exported, mode):
  gen, _, path, manifest = exported
  (entry,) = [a for a in manifest['artifacts'] if a['mode'] == mode]
  m = entry['input_multiple']
  assert m == 4  # any multiple-of-4 size, both modes
  with open(os.path.join(path, entry['file']), 'rb') as f:
    artifact = jax.export.deserialize(bytearray(f.read()))
  live = jax.jit(lambda g, r: gen(g, r, scale=2))
  for batch, (h, w) in [(1, (2 * m, 3 * m)), (2, (3 * m, m))]:
    gray = _random((batch, h, w, 1), h + batch)
    reference = (_random((batch, m, 2 * m, 3), w) if mode == 'referential'
                 else None)
    args = (gray,) if reference is None else (gray, reference)
    got = np.asarray(artifact.call(*args))
    assert got.shape == (batch, 2 * h, 2 * w, 3)
    np.testing.assert_allclose(got, live(gray, reference), atol=1e-5)


def test_exported_generator_pads_and_crops_like_the_predictor(exported):
  _, params, path, _ = exported
  gray = _random((1, 10, 14, 1), 0)
  runner = export.ExportedGenerator(path)
  assert runner.supports(False, 10, 14, (20, 28))
  assert not runner.supports(False, 10, 14, (15, 21))
  got, _ = runner.predict_nlab(gray, None, (20, 28))
  want, _ = inference.Predictor(params, TINY).predict_nlab(gray, None, (20, 28))
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_folder_contents_and_parameters_round_trip(exported):
  _, params, path, manifest = exported
  assert sorted(os.listdir(path)) == sorted(
      ['manifest.json', 'model_config.json', 'params',
       'generator_automatic_x2.jax_export',
       'generator_referential_x2.jax_export'])
  with open(os.path.join(path, 'manifest.json')) as f:
    assert json.load(f) == manifest
  assert manifest['step'] == 3
  loaded, model_config = export.load_params(path)
  assert GeneratorConfig.from_mapping(model_config) == TINY
  jax.tree.map(np.testing.assert_array_equal, loaded, params)


def test_artifact_runs_without_model_code(exported):
  _, _, path, _ = exported
  script = (
      'import sys, numpy as np, jax\n'
      'data = bytearray(open(sys.argv[1], "rb").read())\n'
      'exp = jax.export.deserialize(data)\n'
      'out = exp.call(np.zeros((3, 8, 4, 1), np.float32))\n'
      'assert out.shape == (3, 16, 8, 3), out.shape\n'
      'assert not [m for m in sys.modules if m.split(".")[0] in '
      '("flax", "scsnet_jax")]\n'
      'print("ok")\n')
  result = subprocess.run(
      [sys.executable, '-c', script,
       os.path.join(path, 'generator_automatic_x2.jax_export')],
      capture_output=True, text=True, timeout=300, cwd='/',
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == 'ok'


def test_refuses_bad_requests_and_leaves_nothing(exported, tmp_path):
  _, params, path, _ = exported
  graphdef = nnx.split(Generator(TINY, rngs=nnx.Rngs(0)))[0]
  with pytest.raises(FileExistsError, match='not an empty folder'):
    export.export_generator(graphdef, params, _config_dict(TINY), path)
  automatic_only = dict(_config_dict(TINY), referential=False)
  with pytest.raises(ValueError, match='no referential mode'):
    export.export_generator(graphdef, params, automatic_only,
                            str(tmp_path / 'a'))
  with pytest.raises(ValueError, match='positive integers'):
    export.export_generator(graphdef, params, _config_dict(TINY),
                            str(tmp_path / 'b'), scales=(1.5,))
  assert os.listdir(tmp_path) == []


def test_centres_sampling_is_exported(tmp_path):
  """An export of a ``cpm_sampling='centres'`` generator renders what the
  live predictor renders with that geometry (not the spec's corners)."""
  import dataclasses
  centres = dataclasses.replace(TINY, referential=False,
                                cpm_sampling='centres')
  graphdef, state = nnx.split(Generator(centres, rngs=nnx.Rngs(2)))
  params = state.to_pure_dict()
  path = str(tmp_path / 'export')
  export.export_generator(graphdef, params, _config_dict(centres), path,
                          scales=(2,), step=1, modes=('automatic',))
  gray = _random((1, 12, 16, 1), 3)
  got, _ = export.ExportedGenerator(path).predict_nlab(gray, None, (24, 32))
  want, _ = inference.Predictor(params, centres).predict_nlab(gray, None,
                                                              (24, 32))
  np.testing.assert_allclose(got, want, atol=1e-5)
  corners, _ = inference.Predictor(params, dataclasses.replace(
      centres, cpm_sampling='corners')).predict_nlab(gray, None, (24, 32))
  assert np.abs(corners - want).max() > 1e-3


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
    export.ExportedGenerator(_copy(path, tmp_path, edit))


def test_params_outside_the_folder_are_refused(exported, tmp_path):
  from scsnet_jax.errors import UserError
  _, _, path, _ = exported
  def edit(manifest):
    manifest['params'] = os.path.abspath(os.path.join(path, 'params'))
  with pytest.raises(UserError, match='params'):
    export.load_params(_copy(path, tmp_path, edit))


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
  runner = export.ExportedGenerator(copy)
  gray = _random((1, 8, 8, 1), 0)
  with pytest.raises(UserError, match='custom call.*lapack'):
    runner.predict_nlab(gray, None, (16, 16))
  with open(os.path.join(copy, 'generator_referential_x2.jax_export'),
            'wb') as f:
    f.write(b'\x00junk' * 20)
  with pytest.raises(UserError, match='not a readable jax.export artifact'):
    runner.predict_nlab(gray, _random((1, 4, 8, 3), 1), (16, 16))


def test_custom_call_scan_reads_both_syntaxes_and_fails_closed():
  from scsnet_jax import export_trust
  text = ('%0 = stablehlo.custom_call @shape_assertion(%a)\n'
          '%1 = "stablehlo.custom_call"(%b) <{call_target_name = "evil"}>\n')
  assert export_trust.custom_calls(text) == {'shape_assertion', 'evil'}
  assert '?' in export_trust.custom_calls('%2 = custom_call weird syntax')
