"""scsnet_jax/video/propagate.py: keyframes, references, the hold, and one
compiled shape per clip."""

import numpy as np
import pytest

from scsnet_jax import color
from scsnet_jax.video import propagate
from tests.video.conftest import gradient_frame


class FakeRunner:
  """The model's contract: gray -> nlab with ab = (0.1, -0.1), or the
  reference's mean ab; records the reference shapes."""
  referential = True

  def __init__(self):
    self.references = []

  def predict_nlab(self, gray, reference, out_size):
    self.references.append(None if reference is None else reference.shape)
    out = np.zeros((gray.shape[0], *out_size, 3), np.float32)
    out[..., 1:] = ((0.1, -0.1) if reference is None else
                    reference[..., 1:].mean(axis=(1, 2))[:, None, None])
    return out, []


def _grays(count, cut_at):
  return [color.rgb8_to_gray(gradient_frame(t, 32, cut_at))
          for t in range(count)]


@pytest.mark.parametrize('source', propagate.SOURCES)
def test_keyframes_at_cuts_and_one_reference_shape(source):
  runner = FakeRunner()
  colourer = propagate.Propagator(runner, (64, 64), source=source)
  flags = [colourer.colour(g)[1] for g in _grays(9, cut_at=5)]
  assert colourer.keyframes == [0, 5] and flags[0] and flags[5]
  refs = runner.references
  assert refs[0] is None and refs[5] is None   # automatic keyframes
  shapes = {r for r in refs if r is not None}
  wide = 2 if source == 'both' else 1
  assert shapes == {(1, 32, 32 * wide, 3)}


def test_per_frame_colours_each_frame_alone():
  runner = FakeRunner()
  colourer = propagate.Propagator(runner, (64, 64), per_frame=True)
  for gray in _grays(4, cut_at=0):
    colourer.colour(gray)
  assert runner.references == [None] * 4


def test_keyframe_reference_photo_is_resized_to_the_clip_shape():
  runner = FakeRunner()
  photo = np.zeros((50, 70, 3), np.uint8)
  photo[..., 0] = 200
  colourer = propagate.Propagator(runner, (64, 64),
                                  keyframe_reference=lambda gray: photo)
  out, _ = colourer.colour(_grays(1, 0)[0])
  assert runner.references == [(1, 32, 32, 3)]
  assert out[0, 0, 1] > 0.2   # the red photo's a


def test_hold_closed_form():
  out = np.zeros((8, 8, 3), np.float32)
  last = out.copy()
  last[..., 1:] = 0.5
  held = propagate.hold_still(out, last, 0.8)
  assert held[..., 1:] == pytest.approx(np.full((8, 8, 2), 0.4))
  last[..., 0] = 1.0   # lightness changed by 50: the new colour is kept
  assert propagate.hold_still(out, last, 0.8)[..., 1:] == pytest.approx(
      np.zeros((8, 8, 2)), abs=1e-6)


def test_no_recompilation_after_the_first_frames(starter_runner):
  """Starter weights: after the first two frames (the automatic keyframe
  and the first referential frame) nothing compiles, cut included."""
  predictor = starter_runner.predictor
  colourer = propagate.Propagator(starter_runner, (64, 64))
  grays = _grays(7, cut_at=4)
  colourer.colour(grays[0])
  colourer.colour(grays[1])
  compiled = list(predictor._compiled)
  for gray in grays[2:]:
    colourer.colour(gray)
  assert list(predictor._compiled) == compiled and len(compiled) <= 2
  assert colourer.keyframes == [0, 4]
