"""export/onnx_writer.py (--format onnx): onnxruntime equals the live JAX
model (two sizes, both modes), the CLI path, refusals, and
examples/onnx_colorize.py (the README's no-JAX script) in a venv that has
only onnxruntime, numpy and Pillow."""

import dataclasses
import json
import os
import subprocess
import sys
import venv

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from scsnet_jax import color
from scsnet_jax.export import cli, writer
from scsnet_jax.export import format as export_format
from scsnet_jax.models import geometry
from scsnet_jax.models.generator import Generator
from tests.export.tiny import TINY, config_dict
from tests.paths import REPO_ROOT

onnxruntime = pytest.importorskip('onnxruntime')
pytest.importorskip('jax2onnx')
from scsnet_jax.export import onnx_writer  # pylint: disable=g-import-not-at-top

# The luminance residual path (bicubic base) too; its CPM output layer starts
# at zero, so it gets random weights here to make the CPM's part visible.
# Two pyramid levels (pooled and resized back) keep the conversion quick.
CONFIG = dataclasses.replace(TINY, luminance_residual=True, pyramid_levels=2)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  gen = Generator(CONFIG, rngs=nnx.Rngs(1))
  out = gen.cpm.output_layer
  out.kernel.value = jax.random.normal(jax.random.key(2),
                                       out.kernel.value.shape) * 0.3
  graphdef, state = nnx.split(gen)
  params = state.to_pure_dict()
  path = str(tmp_path_factory.mktemp('onnx') / 'export')
  manifest = writer.export_generator(graphdef, params, config_dict(CONFIG),
                                     path, scales=(2,), step=5, format='onnx')
  return gen, path, manifest


def _random(shape, seed):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _session(path, name):
  return onnxruntime.InferenceSession(os.path.join(path, name),
                                      providers=['CPUExecutionProvider'])


@pytest.mark.parametrize('mode', ['automatic', 'referential'])
def test_onnxruntime_matches_live_model_on_two_sizes(exported, mode):
  gen, path, manifest = exported
  (entry,) = [e for e in manifest[export_format.ONNX_KEY] if e['mode'] == mode]
  assert entry['file'] == f'generator_{mode}_x2.onnx'
  # Symbolic batch and spatial sizes, as the jax.export artifacts.
  assert entry['inputs']['gray'] == ['b', '4*h', '4*w', 1]
  assert entry['output']['lab'] == ['b', '8*h', '8*w', 3]
  session = _session(path, entry['file'])
  live = jax.jit(lambda g, r: gen(g, r, scale=2))
  for batch, (h, w) in [(1, (8, 12)), (2, (28, 16))]:
    feed = {'gray': _random((batch, h, w, 1), h)}
    if mode == 'referential':
      feed['reference'] = _random((batch, 12, 8, 3), w)
    got = session.run(None, feed)[0]
    want = np.asarray(live(feed['gray'], feed.get('reference')))
    assert got.shape == (batch, 2 * h, 2 * w, 3)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert np.std(want[..., 1:]) > 1e-2  # chroma is there to compare


def test_folder_and_manifest(exported):
  _, path, manifest = exported
  assert sorted(os.listdir(path)) == sorted(
      ['manifest.json', 'model_config.json', 'params',
       'generator_automatic_x2.onnx', 'generator_referential_x2.onnx'])
  with open(os.path.join(path, 'manifest.json')) as f:
    assert json.load(f) == manifest
  assert manifest['artifacts'] == []  # no jax.export files in this format
  for entry in manifest[export_format.ONNX_KEY]:
    assert 0 <= entry['probe_max_abs_diff'] <= onnx_writer.TOLERANCE
    assert entry['converter'].startswith('jax2onnx ')


def test_cli_exports_another_scale_from_an_export_folder(exported, tmp_path):
  gen, path, _ = exported
  out = str(tmp_path / 'x3')
  assert cli.main(['--checkpoint', path, '--output', out, '--format',
                      'onnx', '--scales', '3', '--modes', 'automatic']) == 0
  with open(os.path.join(out, 'manifest.json')) as f:
    (entry,) = json.load(f)[export_format.ONNX_KEY]
  assert (entry['file'], entry['scale']) == ('generator_automatic_x3.onnx', 3)
  gray = _random((1, 12, 8, 1), 3)
  got = _session(out, entry['file']).run(None, {'gray': gray})[0]
  np.testing.assert_allclose(got, gen(gray, scale=3), rtol=0, atol=1e-4)


def test_without_the_extra_one_line_error(exported, tmp_path, monkeypatch,
                                          capsys):
  _, path, _ = exported
  monkeypatch.setitem(sys.modules, 'jax2onnx', None)  # import fails
  out = tmp_path / 'none'
  assert cli.main(['--checkpoint', path, '--output', str(out),
                      '--format', 'onnx']) == 1
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'pip install -e .[onnx]' in err
  assert not out.exists()


def test_refuses_a_model_that_differs(exported, tmp_path, monkeypatch):
  """With the converter's reshape-folding pass left on, the converted
  attention is wrong: the export must refuse and leave nothing."""
  gen, _, _ = exported
  monkeypatch.setattr(onnx_writer, '_without_broken_pass',
                      onnx_writer.contextlib.nullcontext)
  graphdef, state = nnx.split(gen)
  out = tmp_path / 'bad'
  with pytest.raises(onnx_writer.OnnxMismatchError, match='generator_automatic_x2.onnx: .*not written'):
    writer.export_generator(graphdef, state.to_pure_dict(),
                            config_dict(CONFIG), str(out), scales=(2,),
                            modes=('automatic',), format='onnx')
  assert os.listdir(tmp_path) == []


# The shipped no-JAX script (README, "ONNX"): run as a user runs it.
COLORIZE = os.path.join(REPO_ROOT, 'examples', 'onnx_colorize.py')


@pytest.mark.slow
def test_shipped_onnx_colorize_runs_without_jax(exported, tmp_path):
  gen, path, _ = exported
  env_dir = tmp_path / 'venv'
  venv.create(env_dir, with_pip=False, system_site_packages=False)
  python = str(env_dir / 'bin' / 'python')
  install = subprocess.run(  # this pip installs into that venv (no ensurepip)
      [sys.executable, '-m', 'pip', '--python', python, 'install', '-q',
       'onnxruntime', 'numpy', 'pillow'],
      capture_output=True, text=True, timeout=600)
  if install.returncode:
    pytest.skip('pip could not install onnxruntime, numpy, pillow into a '
                f'fresh venv: {install.stderr.strip()[-300:]}')
  script = COLORIZE
  # A colour photo-like input whose sides are not multiples of 4.
  yy, xx = np.mgrid[0:18, 0:22]
  pixels = np.stack([xx * 11, yy * 13, (xx + yy) * 6], -1).astype(np.uint8)
  Image.fromarray(pixels).save(tmp_path / 'in.png')
  result = subprocess.run(
      [python, str(script), os.path.join(path, 'generator_automatic_x2.onnx'),
       str(tmp_path / 'in.png'), str(tmp_path / 'out.png')],
      capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
      env={'PATH': os.environ.get('PATH', ''), 'PYTHONNOUSERSITE': '1'})
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == (f"wrote {tmp_path / 'out.png'} (44x36, x2 "
                                   f"of {tmp_path / 'in.png'})")
  no_jax = subprocess.run([python, '-c', 'import jax'], capture_output=True)
  assert no_jax.returncode != 0  # the venv really has no JAX
  got = np.asarray(Image.open(tmp_path / 'out.png'))
  # The project's own path: gray L, reflection pad, live model, crop, sRGB.
  gray = geometry.reflect_pad(color.rgb8_to_gray(pixels)[None])
  nlab = np.asarray(gen(gray, scale=2))[0, :36, :44]
  want = color.nlab_to_rgb8(nlab)
  assert got.shape == want.shape == (36, 44, 3)
  assert np.abs(got.astype(int) - want).max() <= 1
  assert np.abs(got.astype(int) - want).mean() < 0.05
