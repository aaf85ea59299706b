"""models/bicubic.py against jax.image.resize and a numpy Keys derivation."""

import jax
import numpy as np
import pytest

from scsnet_jax.models import bicubic


def _keys_numpy(x, a=-0.5):
  x = np.abs(x)
  return np.where(x <= 1, (a + 2) * x**3 - (a + 3) * x**2 + 1,
                  np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a,
                           0.0))


def _resize_numpy(image, out_h, out_w):
  """Separable Keys resampling, half-pixel centres, border renormalised."""
  def matrix(n_in, n_out):
    centres = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    taps = _keys_numpy(centres[:, None] - np.arange(n_in)[None, :])
    return taps / taps.sum(1, keepdims=True)
  return np.einsum('yh,hwc,xw->yxc', matrix(image.shape[0], out_h), image,
                   matrix(image.shape[1], out_w))


@pytest.mark.parametrize('out_size', [(32, 48), (21, 29), (8, 12)])
def test_resize_matches_jax_image_and_numpy(out_size):
  images = np.random.default_rng(0).uniform(-1, 1, (2, 8, 12, 1))
  images = images.astype(np.float32)
  ours = np.asarray(bicubic.resize(images, out_size))
  theirs = np.asarray(jax.image.resize(images, (2, *out_size, 1), 'cubic'))
  np.testing.assert_allclose(ours, theirs, atol=2e-6)
  np.testing.assert_allclose(ours[1], _resize_numpy(images[1], *out_size),
                             atol=2e-6)


def test_points_equal_grid_and_interpolate_constants():
  images = np.random.default_rng(1).uniform(-1, 1, (1, 6, 10)).astype(
      np.float32)
  out_h, out_w = 15, 25
  y = (np.arange(out_h) + 0.5) / out_h
  x = (np.arange(out_w) + 0.5) / out_w
  yy, xx = np.meshgrid(y, x, indexing='ij')
  coords = np.stack([xx.ravel(), yy.ravel()], -1)[None].astype(np.float32)
  points = np.asarray(bicubic.sample_points(images, coords)).reshape(
      1, out_h, out_w)
  grid = np.asarray(bicubic.resize(images[..., None], (out_h, out_w)))[..., 0]
  np.testing.assert_allclose(points, grid, atol=2e-6)
  constant = np.full((1, 6, 10), 0.3, np.float32)
  np.testing.assert_allclose(bicubic.sample_points(constant, coords), 0.3,
                             atol=1e-6)


def test_resize_host_is_resize_in_numpy():
  """The predictor's enlargement (issue 32: no compilation per size pair)."""
  images = np.random.default_rng(4).uniform(-1, 1, (2, 13, 17, 3)).astype(
      np.float32)
  for out_size in ((31, 40), (13, 17), (7, 9)):
    host = bicubic.resize_host(images, out_size)
    assert host.dtype == np.float32 and host.shape == (2, *out_size, 3)
    np.testing.assert_allclose(host, np.asarray(bicubic.resize(
        images, out_size)), atol=1e-5)
