"""scsnet_jax/video/scenes.py: the cut detector on a synthetic cut."""

import numpy as np
import pytest

from scsnet_jax import color
from scsnet_jax.video import scenes, synthetic
from tests.video.conftest import gradient_frame

CUT = 5


def _grays(count=10):
  return [color.rgb8_to_gray(gradient_frame(t, 32, cut_at=CUT))
          for t in range(count)]


def test_cut_found_at_the_exact_frame():
  detector = scenes.CutDetector()
  found = [t for t, gray in enumerate(_grays()) if detector.update(gray)]
  assert found == [0, CUT]


def test_threshold_both_ways():
  """Just below the cut's change it is found; just above it is not."""
  grays = _grays()
  at_cut = scenes.change(scenes.histogram(grays[CUT - 1]),
                         scenes.histogram(grays[CUT]))
  within = max(scenes.change(scenes.histogram(a), scenes.histogram(b))
               for a, b in zip(grays[:CUT - 1], grays[1:CUT]))
  assert within < scenes.DEFAULT_THRESHOLD < at_cut
  for threshold, expected in ((at_cut - 1e-6, [0, CUT]),
                              (min(1.0, at_cut + 1e-6), [0])):
    detector = scenes.CutDetector(threshold)
    assert [t for t, g in enumerate(grays) if detector.update(g)] == expected


def test_synthetic_cut_clip_and_pan_zoom_have_no_false_cuts():
  for kind in synthetic.KINDS:
    clip = synthetic.make_clip(kind, frames=16, size=64, scale=2)
    detector = scenes.CutDetector()
    found = [t for t, g in enumerate(clip.gray) if detector.update(g)]
    assert found == [0] + clip.cuts, kind


def test_histogram_is_a_distribution_and_change_is_bounded():
  gray = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8, 1)
  hist = scenes.histogram(gray)
  assert hist.shape == (scenes.BINS,) and hist.sum() == pytest.approx(1.0)
  assert scenes.change(hist, hist) == 0.0
  black = scenes.histogram(np.full((8, 8, 1), -1.0, np.float32))
  white = scenes.histogram(np.full((8, 8, 1), 1.0, np.float32))
  assert scenes.change(black, white) == pytest.approx(1.0)
  with pytest.raises(ValueError):
    scenes.CutDetector(0.0)
