"""export/writer.py (and its --format jax): the folder's contents, artifacts with
the live generator's numbers at any input size and batch, loadable without
the model code; refused requests leave nothing."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from scsnet_jax.export import format as export_format
from scsnet_jax.export import reader, writer
from scsnet_jax.inference import predictor as predictor_lib
from scsnet_jax.models.generator import Generator, GeneratorConfig
from tests.export.tiny import TINY, config_dict


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


def test_folder_contents_and_parameters_round_trip(exported):
  _, params, path, manifest = exported
  assert sorted(os.listdir(path)) == sorted(
      ['manifest.json', 'model_config.json', 'params',
       'generator_automatic_x2.jax_export',
       'generator_referential_x2.jax_export'])
  with open(os.path.join(path, 'manifest.json')) as f:
    assert json.load(f) == manifest
  assert manifest['step'] == 3
  loaded, model_config = reader.load_params(path)
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
    writer.export_generator(graphdef, params, config_dict(TINY), path)
  automatic_only = dict(config_dict(TINY), referential=False)
  with pytest.raises(ValueError, match='no referential mode'):
    writer.export_generator(graphdef, params, automatic_only,
                            str(tmp_path / 'a'))
  with pytest.raises(ValueError, match='positive integers'):
    writer.export_generator(graphdef, params, config_dict(TINY),
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
  writer.export_generator(graphdef, params, config_dict(centres), path,
                          scales=(2,), step=1, modes=('automatic',))
  gray = _random((1, 12, 16, 1), 3)
  got, _ = reader.ExportedGenerator(path).predict_nlab(gray, None, (24, 32))
  want, _ = predictor_lib.Predictor(params, centres).predict_nlab(gray, None,
                                                              (24, 32))
  np.testing.assert_allclose(got, want, atol=1e-5)
  corners, _ = predictor_lib.Predictor(params, dataclasses.replace(
      centres, cpm_sampling='corners')).predict_nlab(gray, None, (24, 32))
  assert np.abs(corners - want).max() > 1e-3


def test_the_format_picks_its_writer_from_the_table(exported, tmp_path):
  _, params, _, manifest = exported
  assert set(writer.WRITERS) == {'jax', 'onnx'}
  assert writer.WRITERS['jax'].manifest_key == export_format.JAX_KEY
  assert writer.WRITERS['onnx'].manifest_key == export_format.ONNX_KEY
  assert [a['file'] for a in manifest[export_format.JAX_KEY]] == [
      'generator_automatic_x2.jax_export',
      'generator_referential_x2.jax_export']
  with pytest.raises(ValueError, match="unknown format 'tflite'; use jax, "
                     'onnx'):
    writer.export_generator(None, params, config_dict(TINY),
                            str(tmp_path / 'c'), format='tflite')
  assert os.listdir(tmp_path) == []
