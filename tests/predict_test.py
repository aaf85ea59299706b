"""The predict CLI on real files: good and bad inputs, sizes, modes, export.

``main()`` runs in-process (one compilation cache for the module); one
subprocess test checks that user mistakes never show a traceback.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image
from skimage import color as skcolor

from scsnet_jax import (checkpointing, config_lib, export, image_files,
                        inference, predict, sharding, train_state)
from scsnet_jax.models.generator import build_generator

ROOT = os.path.join(os.path.dirname(__file__), '..')
TINY_MODEL = dict(
    referential=True, init_width=8, encoder_widths=[8, 16],
    source_res_blocks=0, reference_res_blocks=0, cross_attention_qk=8,
    self_attention_qk=8, decoder_res_blocks=[0, 0, 0], texture_res_blocks=0,
    fusion_width=8, cpm_hidden=[8, 8, 8], cpm_chunk_size=256)


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """A real training workdir (orbax) holding a tiny referential generator."""
  config = config_lib.load_sibling_config(
      os.path.join(ROOT, 'configs', 'test.py'), 'test')
  config.model.update(TINY_MODEL)
  # Shapes from eval_shape, zeros for the parts inference never reads, a real
  # tiny generator as the EMA weights: no compilation of the initialisers.
  abstract = train_state.abstract_train_state(config, sharding.create_mesh())
  state = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)
  generator = build_generator(config.model, nnx.Rngs(0))
  state = state.replace(generator_ema=nnx.split(generator)[1].to_pure_dict())
  path = str(tmp_path_factory.mktemp('workdir'))
  checkpointing.save_train_state(path, state, config)
  return path


def _rgb(height, width, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3),
                                              np.uint8)


def _run(capsys, *argv):
  code = predict.main([str(a) for a in argv])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def _outputs(folder):
  return sorted(os.listdir(folder))


def test_folder_with_good_and_bad_files(workdir, tmp_path, capsys):
  inputs = tmp_path / 'in'
  inputs.mkdir()
  Image.fromarray(_rgb(12, 16)).save(inputs / 'colour.png')
  Image.fromarray(_rgb(12, 16, 1)[..., 0]).save(inputs / 'gray.png')
  Image.fromarray(_rgb(12, 16, 2)).save(inputs / 'third.png')
  (inputs / 'notes.png').write_text('not an image at all')
  (inputs / 'empty.jpg').write_bytes(b'')
  Image.fromarray(_rgb(40, 40, 3)).save(inputs / 'cut.png')
  data = (inputs / 'cut.png').read_bytes()
  (inputs / 'cut.png').write_bytes(data[:len(data) // 2])
  out = tmp_path / 'out'
  code, stdout, stderr = _run(
      capsys, '--checkpoint', workdir, '--input', inputs,
      tmp_path / 'missing.png', '--output', out, '--scale', 2,
      '--batch-size', 2)
  assert code == 1
  assert _outputs(out) == ['colour.png', 'gray.png', 'third.png']
  errors = [line for line in stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 4, stderr
  for name in ('notes.png', 'empty.jpg', 'cut.png', 'missing.png'):
    assert sum(name in line for line in errors) == 1, (name, errors)
  assert 'Traceback' not in stderr
  assert 'done: 3 written' in stdout and '4 failed' in stdout
  written = np.asarray(Image.open(out / 'colour.png'))
  assert written.shape == (24, 32, 3) and written.dtype == np.uint8
  # The CLI's pixels are the library's result for that file.
  bundle = checkpointing.load_generator(workdir)
  gray = inference.gray_from_rgb(image_files.read_image(inputs / 'colour.png'))
  nlab, _ = inference.Predictor(bundle.params, bundle.config.model
                                ).predict_nlab(gray[None], None, (24, 32))
  np.testing.assert_array_equal(written, inference.rgb_from_nlab(nlab[0]))


@pytest.mark.parametrize('flag,value,shape', [
    ('--scale', 1.5, (15, 21)), ('--scale', 0.5, (5, 7)),
    ('--size', '20x12', (12, 20))])
def test_output_sizes(workdir, tmp_path, capsys, flag, value, shape):
  Image.fromarray(_rgb(10, 14)).save(tmp_path / 'odd.png')
  code, _, stderr = _run(capsys, '--checkpoint', workdir, '--input',
                         tmp_path / 'odd.png', '--output', tmp_path / 'out',
                         flag, value)
  assert code == 0, stderr
  assert np.asarray(Image.open(tmp_path / 'out' / 'odd.png')).shape == (
      *shape, 3)


def _skimage_l(rgb_uint8):
  return skcolor.rgb2lab(rgb_uint8 / 255.0)[..., 0] / 50.0 - 1.0


@pytest.mark.parametrize('mode', ['RGB', 'RGBA', 'LA', 'L', 'P', 'CMYK'])
def test_pil_modes_give_their_l_channel(tmp_path, mode):
  image = Image.fromarray(_rgb(9, 11, 4)).convert(mode)
  path = tmp_path / ('x.tif' if mode == 'CMYK' else 'x.png')
  image.save(path)
  got = inference.gray_from_rgb(image_files.read_image(path))[..., 0]
  want = _skimage_l(np.asarray(Image.open(path).convert('RGB')))
  np.testing.assert_allclose(got, want, atol=1e-4)


def test_16_bit_gray_keeps_its_range(tmp_path):
  wide = np.random.default_rng(5).integers(0, 65536, (9, 11), np.uint16)
  Image.fromarray(wide).save(tmp_path / 'deep.png')
  assert Image.open(tmp_path / 'deep.png').mode.startswith('I')
  got = inference.gray_from_rgb(image_files.read_image(tmp_path / 'deep.png'))
  gray = np.repeat((wide / 65535.0)[..., None], 3, axis=-1)
  want = skcolor.rgb2lab(gray)[..., 0] / 50.0 - 1.0
  np.testing.assert_allclose(got[..., 0], want, atol=0.01)  # 8-bit decode


def test_exif_orientation_is_applied(tmp_path):
  yy, xx = np.mgrid[0:8, 0:12]
  pixels = np.stack([yy * 30, xx * 20, 255 - xx * 20], -1).astype(np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 6   # stored landscape, shown rotated 90 degrees clockwise
  Image.fromarray(pixels).save(tmp_path / 'phone.jpg', exif=exif, quality=100,
                               subsampling=0)
  shown = image_files.read_image(tmp_path / 'phone.jpg')
  assert shown.shape == (12, 8, 3)
  rotated = np.rot90(pixels, k=-1)
  assert np.abs(shown.astype(int) - rotated).mean() < 8   # JPEG loss only


@pytest.mark.parametrize('bad', [
    ['--scale', '0'], ['--scale', 'nan'], ['--scale', '-2'],
    ['--scale', 'big'], ['--size', '0x5'], ['--size', '12'],
    ['--scale', '2', '--tile', '20'], ['--scale', '2', '--batch-size', '0']])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, bad):
  with pytest.raises(SystemExit) as exit_info:
    predict.main(['--checkpoint', str(tmp_path), '--input', 'x.png',
                  '--output', str(tmp_path), *bad])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.strip().splitlines()[-1].startswith('python -m scsnet_jax.predict'
                                                 ': error:')
  assert 'Traceback' not in err


def test_output_over_pixel_limit_and_unwritable_folder(workdir, tmp_path,
                                                       capsys):
  Image.fromarray(_rgb(12, 16)).save(tmp_path / 'a.png')
  code, _, err = _run(capsys, '--checkpoint', workdir, '--input',
                      tmp_path / 'a.png', '--output', tmp_path / 'out',
                      '--scale', 100, '--max-output-pixels', 10**6)
  assert code == 1 and 'a.png' in err and 'limit of 1000000' in err
  assert _outputs(tmp_path / 'out') == []
  (tmp_path / 'file').write_text('x')
  code, _, err = _run(capsys, '--checkpoint', workdir, '--input',
                      tmp_path / 'a.png', '--output', tmp_path / 'file',
                      '--scale', 2)
  assert code == 1 and err.count('\n') == 1 and 'file' in err


def test_reference_folder_is_matched_by_name(workdir, tmp_path, capsys):
  (tmp_path / 'in').mkdir()
  (tmp_path / 'refs').mkdir()
  for name in ('a', 'b'):
    Image.fromarray(_rgb(12, 16, 7)).save(tmp_path / 'in' / f'{name}.png')
  Image.fromarray(_rgb(20, 20, 8)).save(tmp_path / 'refs' / 'a.jpg')
  code, _, err = _run(capsys, '--checkpoint', workdir, '--input',
                      tmp_path / 'in', '--output', tmp_path / 'out',
                      '--scale', 2, '--reference', tmp_path / 'refs')
  assert code == 1
  assert _outputs(tmp_path / 'out') == ['a.png']
  assert 'b.png: no reference named like it' in err


def test_export_folder_gives_the_same_images(workdir, tmp_path, capsys):
  exported = tmp_path / 'export'
  assert export.main(['--checkpoint', workdir, '--output', str(exported),
                      '--scales', '2', '--modes', 'automatic']) == 0
  Image.fromarray(_rgb(12, 16, 9)).save(tmp_path / 'a.png')
  for checkpoint, out in ((workdir, 'live'), (exported, 'art')):
    code, _, err = _run(capsys, '--checkpoint', checkpoint, '--input',
                        tmp_path / 'a.png', '--output', tmp_path / out,
                        '--scale', 2)
    assert code == 0, err
  live = np.asarray(Image.open(tmp_path / 'live' / 'a.png')).astype(int)
  art = np.asarray(Image.open(tmp_path / 'art' / 'a.png')).astype(int)
  assert np.abs(live - art).max() <= 1
  # A fractional scale goes through the exported parameters.
  code, _, err = _run(capsys, '--checkpoint', exported, '--input',
                      tmp_path / 'a.png', '--output', tmp_path / 'frac',
                      '--scale', 1.5)
  assert code == 0, err
  assert np.asarray(Image.open(tmp_path / 'frac' / 'a.png')).shape == (
      18, 24, 3)


def test_command_line_shows_no_traceback(workdir, tmp_path):
  (tmp_path / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
  result = subprocess.run(
      [sys.executable, '-m', 'scsnet_jax.predict', '--checkpoint', workdir,
       '--input', str(tmp_path / 'bad.png'), str(tmp_path / 'nope'),
       '--output', str(tmp_path / 'out'), '--scale', '2'],
      capture_output=True, text=True, cwd=ROOT, timeout=300,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  lines = [l for l in result.stderr.splitlines() if l.startswith('error:')]
  assert len(lines) == 2 and 'bad.png' in lines[1] and 'nope' in lines[0]
