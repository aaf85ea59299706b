"""predict --reference-gallery: the flags, the printed choices,
references.json, and the errors (a stand-in model: no SCSNet compile)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from scsnet_jax import predict
from scsnet_jax.inference import runner as runner_lib
from tests import helpers


class FakeRunner:
  """Records the references it is given; returns mid-gray outputs."""

  def __init__(self, referential=True):
    self.referential = referential
    self.references = []

  def predict_nlab(self, gray, reference, out_size, interrupt=None):
    self.references.append(None if reference is None else reference.shape)
    return np.zeros((len(gray),) + tuple(out_size) + (3,), np.float32), []


def _pattern(seed, size=(72, 96)):
  """A colour picture with a distinct layout per seed."""
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (3, 4, 3), np.uint8)
  return np.asarray(Image.fromarray(small).resize(size[::-1],
                                                  Image.Resampling.NEAREST))


@pytest.fixture
def setup(tmp_path, monkeypatch):
  helpers.efficientnet_lite0_params_or_skip()
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  gallery, inputs = tmp_path / 'gallery', tmp_path / 'in'
  gallery.mkdir()
  inputs.mkdir()
  for seed in range(4):
    Image.fromarray(_pattern(seed)).save(gallery / f'photo{seed}.png')
  (gallery / 'broken.jpg').write_bytes(b'no')
  Image.fromarray(_pattern(2)).convert('L').save(inputs / 'old.png')
  Image.fromarray(_pattern(3)[:48, :64]).convert('L').save(inputs / 'scan.png')
  runner = FakeRunner()
  monkeypatch.setattr(runner_lib, 'load_runner', lambda *a, **k: runner)
  return tmp_path, runner


def _run(capsys, *argv):
  code = predict.main([str(a) for a in argv])
  out = capsys.readouterr()
  return code, out.out, out.err


def test_each_input_gets_a_reference_and_a_record(setup, capsys):
  tmp_path, runner = setup
  code, out, err = _run(capsys, '--checkpoint', tmp_path, '--input',
                        tmp_path / 'in', '--output', tmp_path / 'out',
                        '--scale', 2, '--reference-gallery',
                        tmp_path / 'gallery', '--top-k', 3)
  assert code == 0, err
  lines = [l for l in out.splitlines() if ' -> ' in l]
  assert lines[0].startswith(f'{tmp_path / "in" / "old.png"} -> '
                             f'{tmp_path / "gallery" / "photo2.png"} '
                             '(similarity ')
  assert f'-> {tmp_path / "gallery" / "photo3.png"}' in lines[1]
  assert 'broken.jpg: cannot decode' in err    # one line, the run went on
  assert runner.references == [(1, 72, 96, 3)] * 2
  with open(tmp_path / 'out' / 'references.json') as f:
    record = json.load(f)
  assert [e['choice']['name'] for e in record['inputs']] == ['photo2.png',
                                                             'photo3.png']
  assert all(len(e['runners_up']) == 2 for e in record['inputs'])
  assert sorted(os.listdir(tmp_path / 'out')) == ['old.png',
                                                  'references.json',
                                                  'scan.png']


def test_reference_and_gallery_together_is_a_usage_error(setup, capsys):
  tmp_path, _ = setup
  with pytest.raises(SystemExit) as exit_info:
    _run(capsys, '--input', tmp_path / 'in', '--output', tmp_path / 'out',
         '--scale', 2, '--reference', tmp_path / 'gallery' / 'photo1.png',
         '--reference-gallery', tmp_path / 'gallery')
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.splitlines()[-1]
  assert 'not allowed with argument' in err and '--reference' in err


def test_top_k_alone_is_a_usage_error(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    predict.main(['--input', str(tmp_path), '--output', str(tmp_path / 'o'),
                  '--scale', '2', '--top-k', '3'])
  assert exit_info.value.code == 2
  assert '--top-k needs --reference-gallery' in capsys.readouterr().err


@pytest.mark.parametrize('problem', ['not referential', 'no folder', 'top-k'])
def test_problems_are_one_line(setup, capsys, monkeypatch, problem):
  tmp_path, _ = setup
  gallery = tmp_path / 'gallery'
  extra = []
  if problem == 'not referential':
    monkeypatch.setattr(runner_lib, 'load_runner',
                        lambda *a, **k: FakeRunner(referential=False))
  elif problem == 'no folder':
    gallery = tmp_path / 'nowhere'
  else:
    extra = ['--top-k', '0']
  argv = ['--checkpoint', tmp_path, '--input', tmp_path / 'in', '--output',
          tmp_path / 'out', '--scale', 2, '--reference-gallery', gallery,
          *extra]
  if problem == 'top-k':
    with pytest.raises(SystemExit):
      _run(capsys, *argv)
    assert 'expected a positive integer' in capsys.readouterr().err
    return
  code, _, err = _run(capsys, *argv)
  assert code == 1
  want = ('no referential mode; run without --reference-gallery'
          if problem == 'not referential' else 'is not a folder')
  assert want in err and not os.path.exists(tmp_path / 'out' / 'old.png')
