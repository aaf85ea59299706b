"""scsnet_jax/video/cli.py: the command end to end on a tiny clip (starter
weights, shared runner), each bad input as one line, interrupts."""

import pytest
from PIL import Image

from scsnet_jax.inference import runner as runner_lib
from scsnet_jax.video import cli, propagate
from tests.video.conftest import FRAMES, RATE, SIDE, av, files_in, write_clip


@pytest.fixture
def shared_runner(monkeypatch, starter_runner):
  """cli loads the session's runner (its compiled programs) instead of a
  new one."""
  monkeypatch.setattr(runner_lib, 'load_runner',
                      lambda *args, **kwargs: starter_runner)
  return starter_runner


def _streams(path):
  with av.open(path) as container:
    video, audio = container.streams.video[0], container.streams.audio[0]
    rate, size = video.average_rate, (video.width, video.height)
    seconds = float(video.duration * video.time_base)
    packets = [bytes(p) for p in container.demux(audio) if p.dts is not None]
  with av.open(path) as container:
    frames = sum(1 for _ in container.decode(video=0))
  return rate, size, seconds, frames, packets


def test_colours_and_enlarges_keeping_rate_count_audio(
    tmp_path, clip_path, shared_runner, capsys):
  out = str(tmp_path / 'out.mp4')
  assert cli.main(['--input', clip_path, '--output', out, '--scale', '2']) == 0
  err = capsys.readouterr().err
  assert 'starter weights' in err and 'frame/s' in err   # note, progress
  rate, size, seconds, frames, audio = _streams(out)
  rate_in, _, seconds_in, frames_in, audio_in = _streams(clip_path)
  assert (rate, size, frames) == (rate_in, (2 * SIDE, 2 * SIDE), FRAMES)
  assert frames_in == FRAMES and seconds == pytest.approx(seconds_in)
  assert audio == audio_in   # copied packet for packet
  assert files_in(tmp_path) == ['out.mp4']
  # One compiled shape per clip: automatic keyframe + referential frames.
  assert len(shared_runner.predictor._compiled) <= 2


def test_existing_output_needs_overwrite(tmp_path, clip_path, capsys):
  out = tmp_path / 'out.mp4'
  out.write_bytes(b'old')
  assert cli.main(['--input', clip_path, '--output', str(out), '--scale',
                   '2']) == 1
  assert 'pass --overwrite' in capsys.readouterr().err
  assert out.read_bytes() == b'old'


def _bad_inputs(folder):
  missing = str(folder / 'missing.mp4')
  image = str(folder / 'photo.png')
  Image.new('RGB', (32, 32), 'gray').save(image)
  whole = write_clip(str(folder / 'whole.mp4'), frames=6)
  truncated = str(folder / 'truncated.mp4')
  with open(whole, 'rb') as f:
    data = f.read()
  with open(truncated, 'wb') as f:
    f.write(data[:len(data) // 2])
  empty = str(folder / 'empty.mkv')
  with av.open(empty, 'w') as out:
    video = out.add_stream('libx264', rate=RATE)
    video.width = video.height = SIDE
    video.pix_fmt = 'yuv420p'
    out.start_encoding()
  text = str(folder / 'notes.mp4')
  with open(text, 'w') as f:
    f.write('not a video\n')
  return {'missing': (missing, 'no such file'),
          'image': (image, 'is an image, not a video'),
          'truncated': (truncated, 'truncated'),
          'zero frames': (empty, 'empty or truncated'),
          'garbage': (text, 'cannot read the video'),
          'folder': (str(folder), 'is a folder')}


def test_each_bad_input_is_one_line_and_leaves_nothing(tmp_path, capsys):
  inputs = tmp_path / 'in'
  inputs.mkdir()
  cases = _bad_inputs(inputs)
  out_dir = tmp_path / 'out'
  out_dir.mkdir()
  for name, (path, expected) in cases.items():
    code = cli.main(['--input', path, '--output', str(out_dir / 'o.mp4'),
                     '--scale', '2'])
    lines = [l for l in capsys.readouterr().err.splitlines()
             if not l.startswith('note:')]
    assert code == 1, name
    assert len(lines) == 1 and lines[0].startswith('error: '), (name, lines)
    assert expected in lines[0], (name, lines)
  assert files_in(out_dir) == []


def test_unsupported_codec_is_one_line(tmp_path, clip_path, capsys):
  code = cli.main(['--input', clip_path, '--output', str(tmp_path / 'o.mp4'),
                   '--scale', '2', '--codec', 'no-such-codec'])
  lines = capsys.readouterr().err.strip().splitlines()
  assert code == 1 and lines[-1].startswith('error: --codec no-such-codec')
  assert files_in(tmp_path) == []


def test_interrupt_leaves_no_half_written_file(tmp_path, clip_path,
                                               shared_runner, monkeypatch,
                                               capsys):
  real = propagate.Propagator.colour

  def colour_then_stop(self, gray):
    if self.frames == 3:
      raise KeyboardInterrupt
    return real(self, gray)
  monkeypatch.setattr(propagate.Propagator, 'colour', colour_then_stop)
  assert cli.main(['--input', clip_path, '--output',
                   str(tmp_path / 'out.mp4'), '--scale', '2']) == 130
  assert 'interrupted' in capsys.readouterr().err
  assert files_in(tmp_path) == []


def test_reference_photo_and_gallery_colour_the_keyframes(
    tmp_path, clip_path, shared_runner, capsys):
  photos = tmp_path / 'photos'
  photos.mkdir()
  Image.new('RGB', (48, 40), (200, 40, 40)).save(photos / 'red.png')
  out = str(tmp_path / 'ref.mp4')
  assert cli.main(['--input', clip_path, '--output', out, '--scale', '2',
                   '--reference', str(photos / 'red.png')]) == 0
  assert _streams(out)[3] == FRAMES
  from tests import helpers
  helpers.efficientnet_lite0_params_or_skip()
  out = str(tmp_path / 'gallery.mp4')
  assert cli.main(['--input', clip_path, '--output', out, '--scale', '2',
                   '--reference-gallery', str(photos)]) == 0
  assert _streams(out)[3] == FRAMES
  err = capsys.readouterr().err
  assert 'gallery' in err and 'keyframe reference: ' in err
  assert 'red.png' in err
