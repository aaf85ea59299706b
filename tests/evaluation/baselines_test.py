"""evaluation/baselines.py: the two baselines against hand-built colours."""

import numpy as np

from scsnet_jax import color
from scsnet_jax.evaluation import baselines


def _random(shape, seed, low=-1.0, high=1.0):
  return np.random.default_rng(seed).uniform(low, high, shape).astype(
      np.float32)


def test_bicubic_gray_at_the_input_size_is_the_gray_itself_in_srgb():
  gray = _random((2, 5, 7, 1), 0)
  got = np.asarray(baselines.bicubic_gray(gray, (5, 7)))
  want = color.nlab_to_rgb01(np.concatenate(
      [gray, np.zeros_like(gray), np.zeros_like(gray)], -1), np)
  np.testing.assert_allclose(got, want, atol=1e-5)
  # Zero chroma is neutral gray: R = G = B.
  np.testing.assert_allclose(got[..., 0], got[..., 2], atol=1e-3)


def test_a_flat_photo_stays_flat_at_any_size_and_l_is_clipped():
  gray = np.full((1, 4, 4, 1), 0.3, np.float32)
  up = np.asarray(baselines.upsampled_luminance(gray, (12, 8)))
  assert up.shape == (1, 12, 8, 1)
  np.testing.assert_allclose(up, 0.3, atol=1e-6)
  # A bicubic overshoot past white is clipped to the LAB range.
  edge = np.concatenate([np.full((1, 4, 2, 1), -1.0), np.ones((1, 4, 2, 1))],
                        axis=2).astype(np.float32)
  up = np.asarray(baselines.upsampled_luminance(edge, (8, 16)))
  assert up.max() == 1.0 and up.min() == -1.0


def test_color_copy_takes_l_from_gray_and_chroma_from_the_reference():
  gray = _random((1, 6, 6, 1), 1)
  reference = _random((1, 6, 6, 3), 2, -0.5, 0.5)
  got = np.asarray(baselines.color_copy(gray, reference, (6, 6)))
  want = color.nlab_to_rgb01(np.concatenate([gray, reference[..., 1:]], -1), np)
  np.testing.assert_allclose(got, want, atol=1e-5)
