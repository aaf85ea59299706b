"""scsnet_jax/video/motion.py: shift and zoom estimates against known
motion."""

import numpy as np
import pytest

from scsnet_jax.video import motion, synthetic


def test_estimate_shift_recovers_a_roll():
  image = np.random.default_rng(0).random((40, 48))
  moved = np.roll(image, (2, -3), axis=(0, 1))
  assert motion.estimate_shift(image, moved) == (2, -3)
  shifted, valid = motion.shift_image(image[..., None], 2, -3)
  assert valid.sum() == (40 - 2) * (48 - 3)
  inside = valid[..., 0]
  assert np.array_equal(shifted[inside], moved[..., None][inside])


def test_zoom_image_closed_form():
  ramp = np.tile(np.arange(9, dtype=np.float32), (9, 1))[..., None]
  zoomed, inside = motion.zoom_image(ramp, 2.0)
  # magnified about the centre (4): x -> 4 + (x - 4) / 2
  assert zoomed[0, :, 0] == pytest.approx(4 + (np.arange(9) - 4) / 2)
  assert inside.all()
  same, _ = motion.zoom_image(ramp, 1.0)
  assert same is ramp


@pytest.mark.parametrize('kind, frame', [('pan', 3), ('zoom', 10)])
def test_estimate_motion_on_synthetic_clips(kind, frame):
  clip = synthetic.make_clip(kind, frames=16, size=128, scale=2)
  before, after = (synthetic.lab(clip.truth[t])[..., 0]
                   for t in (frame - 1, frame))
  zoom, dy, dx = motion.estimate_motion(before, after)
  true_zoom = clip.boxes[frame - 1][2] / clip.boxes[frame][2]
  if kind == 'pan':
    assert (zoom, dy, dx) == (1.0, 0, -2)   # one input pixel at x2
  else:
    assert zoom == pytest.approx(true_zoom, abs=0.006) and (dy, dx) == (0, 0)
  moved, valid = motion.warp(before[..., None], zoom, dy, dx)
  error = np.abs(moved[..., 0] - after)[valid[..., 0]].mean()
  assert error < 0.5 * np.abs(before - after).mean()
