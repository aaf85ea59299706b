"""Fixtures of the video tests: tiny clips written with PyAV, and one
runner on the starter weights shared by the whole folder (its compiled
programs with it)."""

import fractions
import os

import numpy as np
import pytest

av = pytest.importorskip('av')

FRAMES, SIDE, RATE = 12, 32, 12
AUDIO_RATE = 8000


def gradient_frame(t: int, side: int = SIDE, cut_at: int = 0) -> np.ndarray:
  """uint8 RGB (side, side, 3): a diagonal gray ramp moving one pixel per
  frame; from ``cut_at`` on (if > 0) a coloured checkerboard instead."""
  y, x = np.mgrid[:side, :side]
  if cut_at and t >= cut_at:
    board = ((y // 8 + x // 8) % 2).astype(np.float32)
    rgb = np.stack([200 * board + 30, 60 + 0 * board, 220 - 180 * board], -1)
    return rgb.astype(np.uint8)
  level = (40 + 170 * ((x + y + t) % side) / side).astype(np.uint8)
  return np.repeat(level[..., None], 3, axis=-1)


def write_clip(path: str, *, frames: int = FRAMES, side: int = SIDE,
               audio: bool = True, rotation: int = 0, cut_at: int = 0,
               codec: str = 'libx264') -> str:
  """An mp4 (or the extension's container) of ``frames`` frames at RATE
  fps, with a mono AAC track of the same length if ``audio``."""
  with av.open(path, 'w') as out:
    video = out.add_stream(codec, rate=RATE)
    video.width = video.height = side
    video.pix_fmt = 'yuv420p'
    if rotation:
      video.set_display_rotation(rotation)
    sound = out.add_stream('aac', rate=AUDIO_RATE, layout='mono') \
        if audio else None
    for t in range(frames):
      frame = av.VideoFrame.from_ndarray(gradient_frame(t, side, cut_at),
                                         format='rgb24')
      out.mux(video.encode(frame))
    out.mux(video.encode(None))
    if sound is not None:
      samples = AUDIO_RATE * frames // RATE
      tone = np.sin(np.arange(samples) * 2 * np.pi * 440 / AUDIO_RATE)
      for start in range(0, samples, 1024):
        chunk = tone[start:start + 1024].astype(np.float32)[None]
        piece = av.AudioFrame.from_ndarray(chunk, format='fltp',
                                           layout='mono')
        piece.sample_rate, piece.pts = AUDIO_RATE, start
        piece.time_base = fractions.Fraction(1, AUDIO_RATE)
        out.mux(sound.encode(piece))
      out.mux(sound.encode(None))
  return path


@pytest.fixture(scope='session')
def clip_path(tmp_path_factory) -> str:
  folder = tmp_path_factory.mktemp('clips')
  return write_clip(str(folder / 'clip.mp4'))


@pytest.fixture(scope='session')
def starter_runner():
  from scsnet_jax import starter
  from scsnet_jax.inference import runner as runner_lib
  return runner_lib.load_runner(starter.STARTER_DIR, dtype='float32',
                                tile=256, tile_overlap=32)


def files_in(folder) -> list[str]:
  return sorted(os.listdir(folder))
