"""export/cli.py (``python -m scsnet_jax.export``): one-line errors, and
re-exporting an export folder."""

import json
import os

import jax
import pytest

from scsnet_jax import hashing
from scsnet_jax.export import cli


def test_bad_scales_are_an_argparse_error(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(['--checkpoint', 'w', '--output', 'o', '--scales', '2,x'])
  assert exit_info.value.code == 2
  assert "expected integers like 2,4, got '2,x'" in capsys.readouterr().err


def test_a_missing_checkpoint_is_one_line_and_exit_1(tmp_path, capsys):
  assert cli.main(['--checkpoint', str(tmp_path / 'none'), '--output',
                   str(tmp_path / 'out')]) == 1
  err = capsys.readouterr().err
  assert err.startswith('error: ') and err.count('\n') == 1
  assert 'no such folder' in err
  assert not (tmp_path / 'out').exists()


def test_an_export_folder_is_re_exported_at_its_own_step(exported, tmp_path,
                                                         capsys):
  _, _, path, _ = exported
  assert cli.main(['--checkpoint', path, '--output', str(tmp_path / 'a'),
                   '--step', '4', '--modes', 'automatic']) == 1
  assert 'holds step 3 only; drop --step' in capsys.readouterr().err
  out = str(tmp_path / 'b')
  assert cli.main(['--checkpoint', path, '--output', out, '--scales', '3',
                   '--modes', 'automatic', '--platforms', 'cpu']) == 0
  with open(os.path.join(out, 'manifest.json')) as f:
    manifest = json.load(f)
  assert manifest['step'] == 3
  assert [a['file'] for a in manifest['artifacts']] == [
      'generator_automatic_x3.jax_export']
  assert 'exported step 3 to' in capsys.readouterr().out


def test_a_several_line_error_is_printed_as_its_first_line(tmp_path, capsys,
                                                           monkeypatch):
  from scsnet_jax.errors import UserError

  def fails(checkpoint, step):
    raise UserError(f'{checkpoint}: unreadable manifest\n  line 3\n  line 4')
  monkeypatch.setattr(cli, '_load', fails)
  assert cli.main(['--checkpoint', 'ckpt', '--output',
                   str(tmp_path / 'out')]) == 1
  assert capsys.readouterr().err == 'error: ckpt: unreadable manifest\n'


def test_every_command_says_the_same_about_checkpoint():
  from scsnet_jax import app, predict
  from scsnet_jax import workdir as workdir_lib

  def checkpoint_help(parser):
    return next(a.help for a in parser._actions  # pylint: disable=protected-access
                if '--checkpoint' in a.option_strings)
  helps = {checkpoint_help(module.build_parser())
           for module in (cli, predict, app)}
  # predict and the app add their default: the starter weights.
  assert {h.split(' (default: the starter')[0] for h in helps} == {
      workdir_lib.CHECKPOINT_HELP}
  assert len(helps) == 2
  assert 'scsnet_jax.export' in workdir_lib.CHECKPOINT_HELP


def test_a_parameters_only_npz_export_loads_and_runs_like_the_original(
    exported, tmp_path, capsys):
  """--params-format npz --scales none: one float16 params.npz, its SHA-256
  in the manifest (the starter weights' form); the runner loads it, runs it
  through the model code within float16 storage error of the float32
  export, and a changed byte or a mistyped digest is one line."""
  import numpy as np
  from scsnet_jax.errors import UserError
  from scsnet_jax.export import reader
  from scsnet_jax.inference import runner as runner_lib
  _, params, path, _ = exported
  out = str(tmp_path / 'npz')
  assert cli.main(['--checkpoint', path, '--output', out, '--scales', 'none',
                   '--params-format', 'npz']) == 0
  assert 'params.npz' in capsys.readouterr().out
  assert sorted(os.listdir(out)) == ['manifest.json', 'model_config.json',
                                     'params.npz']
  with open(os.path.join(out, 'manifest.json')) as f:
    manifest = json.load(f)
  assert manifest['artifacts'] == [] and manifest['params'] == 'params.npz'
  assert manifest['params_sha256'] == hashing.file_sha256(
      os.path.join(out, 'params.npz'))
  loaded, _ = reader.load_params(out)
  leaves = jax.tree.leaves(params)
  for got, want in zip(jax.tree.leaves(loaded), leaves):
    np.testing.assert_allclose(got, np.float16(want), rtol=0, atol=0)
  rng = np.random.default_rng(0)
  gray = rng.uniform(-1, 1, (1, 16, 16, 1)).astype(np.float32)
  outputs = [runner_lib.load_runner(p, dtype='float32', tile=0,
                                    tile_overlap=32).predict_nlab(
                                        gray, None, (32, 32))[0]
             for p in (path, out)]
  assert np.abs(outputs[0] - outputs[1]).max() < 2e-2
  with open(os.path.join(out, 'params.npz'), 'r+b') as f:   # one byte
    f.seek(100)
    byte = f.read(1)
    f.seek(100)
    f.write(bytes([byte[0] ^ 1]))
  with pytest.raises(UserError, match='SHA-256 differs'):
    reader.load_params(out)
  manifest['params_sha256'] = 'abc'
  with open(os.path.join(out, 'manifest.json'), 'w') as f:
    json.dump(manifest, f)
  with pytest.raises(UserError, match='params_sha256'):
    reader.read_manifest(out)
