"""Tests for scsnet_jax.data.degradations against independent numpy re-derivations."""

import math

import numpy as np
import pytest
import scipy.ndimage

from scsnet_jax.data import degradations


def keys_reference_resize(image, out_h, out_w, a=-0.5):
  """Antialiased Keys-cubic resize written from the definition (float64).

  Output pixel i samples input position (i + 0.5) * in/out - 0.5; when
  shrinking, the kernel is stretched by in/out; taps outside the image are
  dropped and the remaining weights renormalised (PIL's border rule).
  """
  def kernel(x):
    x = abs(x)
    if x < 1:
      return (a + 2) * x**3 - (a + 3) * x**2 + 1
    if x < 2:
      return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return 0.0

  def matrix(n_in, n_out):
    ratio = n_in / n_out
    stretch = max(ratio, 1.0)
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
      position = (i + 0.5) * ratio - 0.5
      for j in range(n_in):
        m[i, j] = kernel((j - position) / stretch)
      m[i] /= m[i].sum()
    return m

  rows = matrix(image.shape[0], out_h)
  cols = matrix(image.shape[1], out_w)
  return np.einsum('hH,wW,HWc->hwc', rows, cols, image.astype(np.float64))


@pytest.mark.parametrize('in_hw,out_hw', [((32, 24), (8, 6)),      # x4 down
                                          ((37, 29), (13, 11)),    # uneven
                                          ((9, 7), (20, 15))])     # upscale
def test_resize_matches_keys_reference(in_hw, out_hw):
  rng = np.random.default_rng(0)
  image = rng.random(in_hw + (3,)).astype(np.float32)
  got = degradations.resize_bicubic(image, out_hw, clip=False)
  want = keys_reference_resize(image, *out_hw)
  assert got.shape == out_hw + (3,) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_resize_clips_overshoot_and_keeps_constants():
  step = np.zeros((16, 16, 1), np.float32)
  step[:, 8:] = 1.0
  raw = degradations.resize_bicubic(step, (24, 24), clip=False)
  assert raw.min() < 0 and raw.max() > 1  # bicubic rings at the edge
  clipped = degradations.resize_bicubic(step, (24, 24))
  assert clipped.min() == 0 and clipped.max() == 1
  flat = np.full((20, 12, 3), 0.3, np.float32)
  np.testing.assert_allclose(degradations.resize_bicubic(flat, (5, 3)), 0.3,
                             atol=1e-6)


def test_upscale_to_min_side_keeps_aspect():
  image = np.zeros((30, 45, 3), np.float32)
  assert degradations.upscale_to_min_side(image, 64).shape == (64, 96, 3)
  assert degradations.upscale_to_min_side(image, 20) is image


def test_crops_are_windows_of_the_image():
  image = np.arange(10 * 12).reshape(10, 12, 1).astype(np.float32)
  rng = np.random.default_rng(3)
  crop = degradations.random_crop(image, 4, rng)
  top, left = divmod(int(crop[0, 0, 0]), 12)
  np.testing.assert_array_equal(crop, image[top:top + 4, left:left + 4])
  np.testing.assert_array_equal(degradations.center_crop(image, 4),
                                image[3:7, 4:8])
  flips = {degradations.random_flip(image, rng)[0, 0, 0] for _ in range(20)}
  assert flips == {0.0, 11.0}


def test_lr_size_for_scale_rounds_to_multiples_of_four():
  assert degradations.lr_size_for_scale(512, 4.0) == 128
  assert degradations.lr_size_for_scale(512, 3.0) == 172  # 170.7 -> 172
  assert degradations.lr_size_for_scale(64, 1.5) == 44    # 42.7 -> 44
  assert degradations.lr_size_for_scale(16, 8.0) == 4     # never below 4


def test_draw_scale_fixed_range_and_choices():
  rng = np.random.default_rng(0)
  assert degradations.draw_scale(4, 0, rng) == 4.0
  drawn = [degradations.draw_scale((1.5, 4.0), 0, rng) for _ in range(200)]
  assert 1.5 <= min(drawn) and max(drawn) <= 4.0 and len(set(drawn)) == 200
  picked = {degradations.draw_scale([2, 4], 3, rng) for _ in range(100)}
  assert picked == {2.0, 3.0, 4.0}
  with pytest.raises(ValueError, match='data.scale'):
    degradations.draw_scale((4.0, 2.0), 0, rng)


def test_elastic_displacement_has_the_predicted_size():
  """On a linear ramp, (distorted - original) is the displacement itself."""
  size, alpha, sigma = 96, 60.0, 6.0
  ramp = np.tile(np.arange(size, dtype=np.float64)[:, None, None],
                 (1, size, 1))
  moved = degradations.elastic_distortion(ramp, alpha, sigma,
                                          np.random.default_rng(0))
  inner = slice(3 * int(sigma), size - 3 * int(sigma))
  shift = (moved - ramp)[inner, inner, 0]
  # Uniform(-1,1) noise (std 1/sqrt(3)) through a 2-D Gaussian of width sigma
  # keeps std / (2 sqrt(pi) sigma); times alpha.
  predicted = alpha / math.sqrt(3) / (2 * math.sqrt(math.pi) * sigma)
  assert 0.6 * predicted < shift.std() < 1.4 * predicted


def test_elastic_moves_pixels_but_keeps_colour_statistics():
  rng = np.random.default_rng(1)
  image = scipy.ndimage.gaussian_filter(rng.random((64, 64, 3)),
                                        (3, 3, 0)).astype(np.float32)
  image = (image - image.min()) / (image.max() - image.min())
  moved = degradations.elastic_distortion(image, 120.0, 8.0,
                                          np.random.default_rng(2))
  assert moved.shape == image.shape and moved.dtype == np.float32
  assert np.abs(moved - image).mean() > 0.02
  np.testing.assert_allclose(moved.mean((0, 1)), image.mean((0, 1)),
                             atol=0.03)
  np.testing.assert_allclose(moved.std((0, 1)), image.std((0, 1)), rtol=0.15)
  assert degradations.elastic_distortion(image, 0.0, 8.0, rng) is image
