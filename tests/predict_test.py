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

from scsnet_jax import color, config_lib, predict, sharding
from scsnet_jax.export import cli as export
from scsnet_jax import loading
from scsnet_jax import image_io
from scsnet_jax.inference import predictor as predictor_lib
from scsnet_jax.train import state as train_state
from scsnet_jax.models.generator import build_generator

from tests.paths import REPO_ROOT as ROOT
from tests import helpers
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
  abstract = train_state.abstract_train_state(
      train_state.build_networks(config), config, sharding.create_mesh())
  state = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)
  generator = build_generator(config.model, nnx.Rngs(0))
  state = state.replace(generator_ema=nnx.split(generator)[1].to_pure_dict())
  path = str(tmp_path_factory.mktemp('workdir'))
  helpers.save_train_state(path, state, config)
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
  bundle = loading.load_generator(workdir)
  gray = color.rgb8_to_gray(image_io.read_image(inputs / 'colour.png'))
  nlab, _ = predictor_lib.Predictor(bundle.params, bundle.config.model
                                ).predict_nlab(gray[None], None, (24, 32))
  np.testing.assert_array_equal(written, color.nlab_to_rgb8(nlab[0]))


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


@pytest.mark.parametrize('bad', [
    ['--scale', '0'], ['--scale', 'nan'], ['--scale', '-2'],
    ['--scale', 'big'], ['--size', '0x5'], ['--size', '12'],
    ['--scale', '2', '--tile', '20'], ['--scale', '2', '--tile', '64'],
    ['--scale', '2', '--batch-size', '0']])
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


# ------------------------------------------------ walkthrough fixes (#12) ---
SAMPLE = os.path.join(ROOT, 'docs', 'images', 'chelsea_gray_lr.png')


def test_checkpoint_may_be_any_level_of_a_workdir(workdir, tmp_path, capsys):
  """WORKDIR, WORKDIR/checkpoints, WORKDIR/checkpoints/STEP: same pixels;
  any other folder is one line naming what was expected."""
  Image.fromarray(_rgb(12, 16, 3)).save(tmp_path / 'a.png')
  (step,) = os.listdir(os.path.join(workdir, 'checkpoints'))
  outputs = []
  for index, checkpoint in enumerate([
      workdir, os.path.join(workdir, 'checkpoints'),
      os.path.join(workdir, 'checkpoints', step)]):
    code, _, err = _run(capsys, '--checkpoint', checkpoint, '--input',
                        tmp_path / 'a.png', '--output', tmp_path / str(index),
                        '--scale', 2)
    assert code == 0, err
    assert 'read only' not in err
    outputs.append(np.asarray(Image.open(tmp_path / str(index) / 'a.png')))
  for other in outputs[1:]:
    np.testing.assert_array_equal(other, outputs[0])
  (tmp_path / 'logs').mkdir()
  code, _, err = _run(capsys, '--checkpoint', tmp_path / 'logs', '--input',
                      tmp_path / 'a.png', '--output', tmp_path / 'x',
                      '--scale', 2)
  assert code == 1 and err.count('\n') == 1, err
  assert err.startswith(f'error: {tmp_path / "logs"}: no checkpoints under it')
  assert 'checkpoints/STEP' in err and 'export' in err


def test_shipped_sample_image_runs(workdir, tmp_path, capsys):
  """The gray sample the README's predict example uses ships with the repo."""
  assert os.path.getsize(SAMPLE) < 30_000
  image = Image.open(SAMPLE)
  assert image.mode == 'L' and image.size == (112, 75)
  code, stdout, err = _run(capsys, '--checkpoint', workdir, '--input', SAMPLE,
                           '--output', tmp_path / 'out', '--scale', 4)
  assert code == 0, err
  assert 'done: 1 written' in stdout
  out = np.asarray(Image.open(tmp_path / 'out' / 'chelsea_gray_lr.png'))
  assert out.shape == (300, 448, 3)


def test_gray_reference_warns_once(workdir, tmp_path, capsys):
  gray = _rgb(16, 16, 11)[..., :1].repeat(3, axis=-1)
  Image.fromarray(gray[..., 0]).save(tmp_path / 'gray_ref.png')
  colour_ref = tmp_path / 'colour_ref.png'
  Image.fromarray(_rgb(16, 16, 12)).save(colour_ref)
  for name in ('a', 'b'):
    Image.fromarray(_rgb(12, 16, 13)).save(tmp_path / f'{name}.png')
  code, _, err = _run(capsys, '--checkpoint', workdir, '--input',
                      tmp_path / 'a.png', tmp_path / 'b.png', '--output',
                      tmp_path / 'out', '--scale', 2, '--reference',
                      tmp_path / 'gray_ref.png')
  assert code == 0, err
  warnings = [l for l in err.splitlines() if l.startswith('warning:')]
  assert len(warnings) == 1, err
  assert 'gray_ref.png' in warnings[0] and 'no colour' in warnings[0]
  assert _outputs(tmp_path / 'out') == ['a.png', 'b.png']
  code, _, err = _run(capsys, '--checkpoint', workdir, '--input',
                      tmp_path / 'a.png', '--output', tmp_path / 'out2',
                      '--scale', 2, '--reference', colour_ref)
  assert code == 0 and 'warning' not in err, err


def test_corrupt_reference_is_one_error_before_any_input(
    workdir, tmp_path, capsys, monkeypatch):
  (tmp_path / 'ref.jpg').write_bytes(b'\xff\xd8\xff not really a jpeg')
  (tmp_path / 'in').mkdir()
  for name in ('a', 'b', 'c'):
    Image.fromarray(_rgb(12, 16)).save(tmp_path / 'in' / f'{name}.png')
  read = []
  real_read = image_io.read_image_and_alpha
  monkeypatch.setattr(image_io, 'read_image_and_alpha',
                      lambda path: read.append(path) or real_read(path))
  code, _, err = _run(capsys, '--checkpoint', workdir, '--input',
                      tmp_path / 'in', '--output', tmp_path / 'out',
                      '--scale', 2, '--reference', tmp_path / 'ref.jpg')
  assert code == 1
  assert err.count('\n') == 1, err
  assert err.startswith('error: reference ') and 'ref.jpg' in err
  assert 'cannot decode' in err
  assert read == [] and _outputs(tmp_path / 'out') == []


def test_output_that_is_a_file_names_the_problem_and_fix(workdir, tmp_path,
                                                         capsys):
  Image.fromarray(_rgb(12, 16)).save(tmp_path / 'a.png')
  (tmp_path / 'result.png').write_bytes(b'an earlier result')
  code, _, err = _run(capsys, '--checkpoint', workdir, '--input',
                      tmp_path / 'a.png', '--output', tmp_path / 'result.png',
                      '--scale', 2)
  assert code == 1 and err.count('\n') == 1, err
  assert f'{tmp_path / "result.png"}: --output is an existing file' in err
  assert 'must be a folder' in err and 'give a folder path' in err
  assert (tmp_path / 'result.png').read_bytes() == b'an earlier result'


@pytest.mark.parametrize('mode', ['RGBA', 'LA'])
def test_alpha_channel_is_kept_and_resized(workdir, tmp_path, capsys, mode):
  """RGBA/LA in -> RGBA PNG out: the colour of the same image without
  alpha, and the alpha resized bicubically to the output size."""
  yy, xx = np.mgrid[0:12, 0:16]
  alpha = np.clip(xx * 16 + yy * 4, 0, 255).astype(np.uint8)
  alpha[3:6, 4:9] = 0
  colour = _rgb(12, 16, 21)
  if mode == 'LA':
    colour = colour[..., :1].repeat(3, axis=-1)
  with_alpha = Image.fromarray(np.dstack([colour, alpha]), 'RGBA')
  with_alpha = with_alpha.convert(mode)
  with_alpha.save(tmp_path / 'cut.png')
  with_alpha.convert('RGB').save(tmp_path / 'plain.png')
  code, _, err = _run(capsys, '--checkpoint', workdir, '--input',
                      tmp_path / 'cut.png', tmp_path / 'plain.png',
                      '--output', tmp_path / 'out', '--scale', 2.5)
  assert code == 0, err
  out = Image.open(tmp_path / 'out' / 'cut.png')
  assert out.mode == 'RGBA' and out.size == (40, 30)
  out = np.asarray(out)
  plain = np.asarray(Image.open(tmp_path / 'out' / 'plain.png'))
  assert plain.shape == (30, 40, 3)
  np.testing.assert_array_equal(out[..., :3], plain)   # colour unchanged
  source_alpha = np.asarray(with_alpha.getchannel('A'))
  want = np.asarray(Image.fromarray(source_alpha).resize(
      (40, 30), Image.Resampling.BICUBIC))
  np.testing.assert_array_equal(out[..., 3], want)
  assert out[..., 3].min() == 0 and out[..., 3].max() > 200


@pytest.mark.parametrize('module', ['predict', 'export'])
def test_every_flag_has_help_and_help_exits_0(module, capsys):
  cli = {'predict': predict, 'export': export}[module]
  with pytest.raises(SystemExit) as exit_info:
    cli.main(['--help'])
  assert exit_info.value.code == 0
  text = capsys.readouterr().out
  flags = [a for a in cli.build_parser()._actions if a.option_strings]
  assert len(flags) > 5
  for action in flags:
    assert action.help, f'{module} {action.option_strings} has no help'
    assert action.option_strings[-1] in text
