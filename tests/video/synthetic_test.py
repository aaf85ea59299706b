"""scsnet_jax/video/synthetic.py: the clips and the flicker metric against
closed forms."""

import numpy as np
import pytest

from scsnet_jax.video import synthetic


def test_flicker_of_a_constant_shift_is_its_length():
  rng = np.random.default_rng(0)
  base = rng.normal(0, 20, (16, 16, 2))
  step = np.array([3.0, 4.0])   # |step| = 5
  ab = np.stack([base + t * step for t in range(4)])
  boxes = np.tile([0.0, 0.0, 16.0], (4, 1))
  pairs = synthetic.flicker_pairs(ab, boxes, np.zeros(4, int))
  assert np.isnan(pairs[0]) and pairs[1:] == pytest.approx([5.0] * 3)


def test_flicker_undoes_a_known_pan():
  """Frames that are one picture seen through a moving window: 0."""
  rng = np.random.default_rng(1)
  scene = rng.normal(0, 20, (16, 40, 2))
  ab = np.stack([scene[:, t:t + 16] for t in range(5)])
  boxes = np.array([(t, 0.0, 16.0) for t in range(5)])
  pairs = synthetic.flicker_pairs(ab, boxes, np.zeros(5, int))
  assert pairs[1:] == pytest.approx([0.0] * 4, abs=1e-9)
  # ... and not across a cut
  photo = np.array([0, 0, 1, 1, 1])
  assert np.isnan(synthetic.flicker_pairs(ab, boxes, photo)[2])


def test_pixels_in_view_in_both_frames():
  rows, cols, inside = synthetic.previous_coordinates(
      (2.0, 0.0, 8.0), (0.0, 0.0, 8.0), 8, 8)
  assert cols[0] == pytest.approx(np.arange(8) + 2.0)
  assert inside.sum() == 8 * 6   # two columns left the view


def test_clips_have_truth_gray_and_cuts():
  clip = synthetic.make_clip('cut', frames=8, size=32, scale=2)
  assert clip.truth.shape == (8, 32, 32, 3) and clip.gray.shape == (
      8, 16, 16, 1)
  assert clip.cuts == [4] and list(clip.photo) == [2] * 4 + [0] * 4
  pan = synthetic.make_clip('pan', frames=6, size=32, scale=2)
  assert synthetic.flicker(pan.truth, pan.boxes, pan.photo) == pytest.approx(
      0.0, abs=1e-6)
  with pytest.raises(ValueError):
    synthetic.make_clip('spin')
