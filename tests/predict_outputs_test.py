"""predict never overwrites what it reads, and streams its inputs
(issue 19, items 2 and 3). The CLI runs in-process on the tiny referential
generator of ``predict_test``.
"""

import numpy as np
import pytest
from PIL import Image

from scsnet_jax import predict
from scsnet_jax.inference import runner as runner_lib
from scsnet_jax import image_files, image_io
from scsnet_jax import planning
from tests.predict_test import _outputs, _rgb, _run
from tests.predict_test import workdir  # noqa: F401 (a fixture)


def _errors(stderr):
  return [line for line in stderr.splitlines() if line.startswith('error:')]


def _spy_reads(monkeypatch):
  read, real = [], image_io.read_image_and_alpha
  monkeypatch.setattr(image_io, 'read_image_and_alpha',
                      lambda path: read.append(str(path)) or real(path))
  return read


def test_output_that_is_an_input_is_refused(workdir, tmp_path, capsys,
                                            monkeypatch):
  """--input d --output d with a.jpg and a.png: a.jpg's output would be the
  input a.png, a.png's its own file; both are refused before anything is
  decoded, a.png stays byte-identical, c.jpg is still processed."""
  folder = tmp_path / 'd'
  folder.mkdir()
  Image.fromarray(_rgb(12, 16, 1)).save(folder / 'a.jpg')
  Image.fromarray(_rgb(12, 16, 2)).save(folder / 'a.png')
  Image.fromarray(_rgb(12, 16, 3)).save(folder / 'c.jpg')
  original = (folder / 'a.png').read_bytes()
  read = _spy_reads(monkeypatch)
  code, stdout, err = _run(capsys, '--checkpoint', workdir, '--input', folder,
                           '--output', folder, '--scale', 2)
  assert code == 1
  assert (folder / 'a.png').read_bytes() == original
  assert _outputs(folder) == ['a.jpg', 'a.png', 'c.jpg', 'c.png']
  errors = _errors(err)
  assert len(errors) == 2, err
  assert errors[0].startswith(f'error: {folder / "a.jpg"}: output ')
  assert f'is the input {folder / "a.png"}' in errors[0]
  assert errors[1].startswith(f'error: {folder / "a.png"}: output ')
  assert 'is this input itself' in errors[1]
  assert read == [str(folder / 'c.jpg')]
  assert 'done: 1 written' in stdout and '2 failed' in stdout
  assert 'Traceback' not in err


def test_same_output_name_and_references_are_refused(workdir, tmp_path,
                                                     capsys):
  for name in ('x', 'y'):
    (tmp_path / name).mkdir()
    Image.fromarray(_rgb(12, 16)).save(tmp_path / name / 'a.png')
  code, _, err = _run(capsys, '--checkpoint', workdir, '--input',
                      tmp_path / 'x' / 'a.png', tmp_path / 'y' / 'a.png',
                      '--output', tmp_path / 'out', '--scale', 2)
  assert code == 1 and _outputs(tmp_path / 'out') == []
  errors = _errors(err)
  assert len(errors) == 2 and all('would also be written' in e
                                  for e in errors), err
  # The output folder is the reference folder: b.png's output is its
  # reference b.png (refused even with --overwrite).
  refs = tmp_path / 'refs'
  refs.mkdir()
  Image.fromarray(_rgb(12, 16, 5)).save(refs / 'b.png')
  Image.fromarray(_rgb(12, 16, 6)).save(tmp_path / 'b.jpg')
  original = (refs / 'b.png').read_bytes()
  code, _, err = _run(capsys, '--checkpoint', workdir, '--input',
                      tmp_path / 'b.jpg', '--output', refs, '--scale', 2,
                      '--reference', refs, '--overwrite')
  assert code == 1 and (refs / 'b.png').read_bytes() == original
  assert f'is the reference {refs / "b.png"}' in err, err


def test_existing_output_needs_overwrite(workdir, tmp_path, capsys,
                                         monkeypatch):
  Image.fromarray(_rgb(12, 16, 4)).save(tmp_path / 'a.png')
  args = ['--checkpoint', workdir, '--input', tmp_path / 'a.png',
          '--output', tmp_path / 'out', '--scale', 2]
  assert _run(capsys, *args)[0] == 0
  result = tmp_path / 'out' / 'a.png'
  first = np.asarray(Image.open(result))
  result.write_bytes(b'an earlier result')
  code, _, err = _run(capsys, *args)
  assert code == 1 and result.read_bytes() == b'an earlier result'
  (line,) = _errors(err)
  assert str(tmp_path / 'a.png') in line and 'already exists' in line
  assert '--overwrite' in line
  code, _, err = _run(capsys, *args, '--overwrite')
  assert code == 0, err
  np.testing.assert_array_equal(np.asarray(Image.open(result)), first)
  # An output that appears after the check (another program) is kept too.
  real_read = image_io.read_image_and_alpha

  def read_and_race(path):
    (tmp_path / 'out2').mkdir(exist_ok=True)
    (tmp_path / 'out2' / 'a.png').write_bytes(b'racing')
    return real_read(path)

  monkeypatch.setattr(image_io, 'read_image_and_alpha', read_and_race)
  code, _, err = _run(capsys, *args[:-3], tmp_path / 'out2', '--scale', 2)
  assert code == 1 and 'appeared during the run' in err, err
  assert (tmp_path / 'out2' / 'a.png').read_bytes() == b'racing'


SHAPES = {'a': (10, 14), 'b': (14, 12), 'c': (12, 16), 'd': (12, 16)}


def test_batches_stream_reads_and_writes(workdir, tmp_path, capsys,
                                         monkeypatch):
  """Four inputs (c and d of one shape), --batch-size 2: c and d run as one
  batch; at most 2 decoded inputs are held at any time (the old code held
  a, b and c, and would hold any number of distinct shapes until the end);
  the pixels equal those of --batch-size 1."""
  (tmp_path / 'in').mkdir()
  for seed, (name, shape) in enumerate(SHAPES.items()):
    Image.fromarray(_rgb(*shape, seed)).save(tmp_path / 'in' / f'{name}.png')
  events, batches = [], []
  real_read = image_io.read_image_and_alpha
  real_write = image_files.write_png_atomic
  real_predict = runner_lib.Runner.predict_nlab
  monkeypatch.setattr(image_io, 'read_image_and_alpha', lambda path: (
      events.append('read') or real_read(path)))
  monkeypatch.setattr(image_files, 'write_png_atomic', lambda path, pixels: (
      events.append('write') or real_write(path, pixels)))

  def spy_predict(self, gray, *args):
    batches.append(gray.shape[0])
    return real_predict(self, gray, *args)

  monkeypatch.setattr(runner_lib.Runner, 'predict_nlab', spy_predict)
  code, _, err = _run(capsys, '--checkpoint', workdir, '--input',
                      tmp_path / 'in', '--output', tmp_path / 'batched',
                      '--scale', 2, '--batch-size', 2)
  assert code == 0, err
  assert events.count('read') == 4 and events.count('write') == 4
  held = np.cumsum([1 if e == 'read' else -1 for e in events])
  assert held.max() <= 2, events
  assert events.index('write') < len(events) - 1 - events[::-1].index('read')
  assert sorted(batches) == [1, 1, 2]
  code, _, err = _run(capsys, '--checkpoint', workdir, '--input',
                      tmp_path / 'in', '--output', tmp_path / 'single',
                      '--scale', 2)
  assert code == 0, err
  for name in SHAPES:
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / 'batched' / f'{name}.png')),
        np.asarray(Image.open(tmp_path / 'single' / f'{name}.png')))


# ------------------------------------------------------------ issue 32 ---
def test_control_characters_in_names_are_escaped_and_cannot_forge_lines(
    workdir, tmp_path, capsys):
  """A failing file named 't\\ndone: 5 written to out, 0 failed\\n.png' once
  printed a forged 'done:' line and lost its own reason; a long name lost
  the reason too (the whole line was cut)."""
  folder = tmp_path / 'in'
  folder.mkdir()
  forged = 't\ndone: 5 written to out, 0 failed\n.png'
  (folder / forged).write_text('not an image')
  deep = tmp_path / ('x' * 200) / ('y' * 200)   # a path of 400+ characters
  deep.mkdir(parents=True)
  (deep / 'z\x1b[2J.png').write_text('not an image')   # a terminal escape
  Image.fromarray(_rgb(12, 16)).save(folder / 'good.png')
  code, out, err = _run(capsys, '--checkpoint', workdir, '--input',
                        deep / 'z\x1b[2J.png', folder,
                        '--output', tmp_path / 'out', '--scale', 2)
  assert code == 1
  lines = (out + err).replace('\r', '\n').splitlines()   # tqdm's bar: \r
  assert [line for line in lines if line.startswith('done:')] == [
      f'done: 1 written to {tmp_path / "out"}, 2 failed'], lines
  errors = [line for line in lines if line.startswith('error:')]
  assert len(errors) == 2, err
  reason = ('cannot decode image (not a recognised image format; allowed: '
            'PNG, JPEG, WEBP, BMP, TIFF, GIF)')
  assert errors[0] == f'error: {deep}/z\\x1b[2J.png: {reason}', errors[0]
  assert errors[1] == (f'error: {folder}/t\\ndone: 5 written to out, 0 '
                       f'failed\\n.png: {reason}'), errors[1]
  assert '\x1b' not in err


def test_skip_existing_counts_existing_outputs_as_done(workdir, tmp_path,
                                                       capsys):
  """Re-running after an interrupt: existing outputs are skipped (not
  read, not rewritten, not failures), the rest are written, exit 0."""
  folder = tmp_path / 'in'
  folder.mkdir()
  for seed, name in enumerate(('a', 'b', 'c')):
    Image.fromarray(_rgb(12, 16, seed)).save(folder / f'{name}.png')
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'a.png').write_bytes(b'an earlier result')
  args = ['--checkpoint', workdir, '--input', folder, '--output', out,
          '--scale', 2]
  code, stdout, err = _run(capsys, *args)
  assert code == 1 and 'already exists' in err   # without the flag
  (out / 'b.png').unlink()
  (out / 'c.png').unlink()
  code, stdout, err = _run(capsys, *args, '--skip-existing')
  assert code == 0, err
  assert (out / 'a.png').read_bytes() == b'an earlier result'
  assert _outputs(out) == ['a.png', 'b.png', 'c.png']
  assert f'done: 2 written to {out}, 1 skipped (already there), 0 failed' in (
      stdout), stdout
  assert _errors(err) == []
  with pytest.raises(SystemExit):
    predict.parse_args([*map(str, args), '--skip-existing', '--overwrite'])
