"""scsnet_jax/video/io.py: probing, streaming frames, the atomic writer."""

import fractions
import os

import numpy as np
import pytest

from scsnet_jax.errors import UserError
from scsnet_jax.video import io as video_io
from tests.video.conftest import FRAMES, RATE, SIDE, files_in, write_clip


def test_probe_reads_size_rate_count_audio(clip_path):
  clip = video_io.probe(clip_path)
  assert (clip.width, clip.height) == (SIDE, SIDE)
  assert clip.rate == fractions.Fraction(RATE)
  assert clip.frame_count == FRAMES
  assert clip.has_audio and clip.rotation == 0 and clip.codec == 'h264'


def test_frames_stream_every_frame_and_the_audio(clip_path):
  clip = video_io.probe(clip_path)
  audio = []
  got = list(video_io.frames(clip, audio.append))
  assert [i for i, _, _ in got] == list(range(FRAMES))
  assert all(rgb.shape == (SIDE, SIDE, 3) and rgb.dtype == np.uint8
             for _, rgb, _ in got)
  assert audio and all(p.dts is not None for p in audio)


def test_writer_keeps_rotation_and_renames_only_at_close(tmp_path):
  source = write_clip(str(tmp_path / 'rotated.mp4'), frames=3, audio=False,
                      rotation=90)
  clip = video_io.probe(source)
  assert clip.rotation == 90
  out = str(tmp_path / 'out.mp4')
  writer = video_io.Writer(out, clip, (64, 64))
  for _, rgb, pts in video_io.frames(clip, writer.mux_audio):
    writer.write(np.repeat(np.repeat(rgb, 2, 0), 2, 1), pts)
  assert not os.path.exists(out)   # only the temporary file so far
  writer.close()
  written = video_io.probe(out)
  assert written.rotation == 90 and written.frame_count == 3
  assert files_in(tmp_path) == ['out.mp4', 'rotated.mp4']


def test_writer_abort_leaves_nothing(tmp_path, clip_path):
  writer = video_io.Writer(str(tmp_path / 'out.mp4'),
                           video_io.probe(clip_path), (64, 64))
  writer.write(np.zeros((64, 64, 3), np.uint8), 0)
  writer.abort()
  writer.abort()
  assert files_in(tmp_path) == []


def test_unknown_codec_is_one_line():
  with pytest.raises(UserError, match='no such video encoder'):
    video_io.check_codec('no-such-codec')


def test_audio_the_container_cannot_hold_is_one_line(tmp_path):
  av = pytest.importorskip('av')
  source = str(tmp_path / 'pcm.mkv')
  with av.open(source, 'w') as out:
    video = out.add_stream('libx264', rate=RATE)
    video.width = video.height = SIDE
    video.pix_fmt = 'yuv420p'
    sound = out.add_stream('pcm_u8', rate=8000, layout='mono')
    for t in range(3):
      out.mux(video.encode(av.VideoFrame.from_ndarray(
          np.full((SIDE, SIDE, 3), 60 * t, np.uint8), format='rgb24')))
      piece = av.AudioFrame.from_ndarray(np.full((1, 800), 128, np.uint8),
                                         format='u8', layout='mono')
      piece.sample_rate, piece.pts = 8000, 800 * t
      out.mux(sound.encode(piece))
    out.mux(video.encode(None))
  clip = video_io.probe(source)
  with pytest.raises(UserError, match=r'\.mkv holds any audio codec'):
    video_io.Writer(str(tmp_path / 'out.mp4'), clip, (64, 64))
  assert files_in(tmp_path) == ['pcm.mkv']
  writer = video_io.Writer(str(tmp_path / 'out.mkv'), clip, (64, 64))
  for _, rgb, pts in video_io.frames(clip, writer.mux_audio):
    writer.write(np.zeros((64, 64, 3), np.uint8), pts)
  writer.close()
  assert video_io.probe(str(tmp_path / 'out.mkv')).has_audio


def test_colour_and_gray_as_rgb_frames_decode_as_rgb(tmp_path):
  """Both reach the model through CIE L (``color.rgb8_to_gray``): equal
  channels stay equal after decoding, colour stays colour."""
  from scsnet_jax import color
  gray = write_clip(str(tmp_path / 'gray.mp4'), frames=2, audio=False)
  colour = write_clip(str(tmp_path / 'colour.mp4'), frames=2, audio=False,
                      cut_at=1)
  for path, coloured in ((gray, False), (colour, True)):
    clip = video_io.probe(path)
    rgb = [f for i, f, _ in video_io.frames(clip, lambda p: None)][-1]
    spread = np.abs(rgb[..., 0].astype(int) - rgb[..., 2].astype(int)).max()
    assert (spread > 40) == coloured, (path, spread)
    assert color.rgb8_to_gray(rgb).shape == (SIDE, SIDE, 1)
