"""Colour conversion against scikit-image and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import color as skcolor
from skimage import data as skdata

from scsnet_jax import color


def _random_rgb(n=4096, seed=0):
  rgb = np.random.default_rng(seed).random((n, 3))
  # Include the cube's corners and gray ramp (edge cases of both branches).
  corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
  ramp = np.linspace(0, 1, 64)[:, None].repeat(3, axis=1)
  return np.concatenate([rgb, corners, ramp])


def _photo_pixels():
  return skdata.astronaut()[::8, ::8].reshape(-1, 3) / 255.0


@pytest.mark.parametrize('pixels', [_random_rgb(), _photo_pixels()])
def test_rgb_to_lab_matches_skimage(pixels):
  expected = skcolor.rgb2lab(pixels)
  got = np.asarray(color.rgb01_to_lab(jnp.asarray(pixels, jnp.float32)))
  assert np.abs(got - expected).max() < 1e-3
  assert np.abs(color.rgb01_to_lab(pixels, np) - expected).max() < 1e-9


def test_lab_to_rgb_matches_skimage():
  rng = np.random.default_rng(1)
  lab = np.stack([rng.uniform(0, 100, 2000), rng.uniform(-90, 90, 2000),
                  rng.uniform(-90, 90, 2000)], axis=-1)
  expected = skcolor.lab2rgb(lab)  # clips out-of-gamut values to [0, 1]
  got = np.asarray(color.lab_to_rgb01(jnp.asarray(lab, jnp.float32)))
  assert np.abs(got - expected).max() < 1e-4


def test_srgb_round_trip_float32():
  rgb = jnp.asarray(_random_rgb(seed=3), jnp.float32)
  back = color.nlab_to_rgb01(color.rgb01_to_nlab(rgb))
  assert float(jnp.abs(back - rgb).max()) < 1e-4


def test_normalisation_closed_form():
  lab = np.array([[0.0, 0.0, 0.0], [100.0, 110.0, -110.0], [50.0, 55.0, 22.0]])
  nlab = color.normalize_lab(lab, np)
  np.testing.assert_allclose(nlab, [[-1, 0, 0], [1, 1, -1], [0, 0.5, 0.2]])
  np.testing.assert_allclose(color.denormalize_lab(nlab, np), lab)
  # White is L=100 (nL=1), black L=0 (nL=-1), both without chroma.
  gray = color.rgb01_to_gray(np.array([[1.0, 1, 1], [0, 0, 0]]), np)
  np.testing.assert_allclose(gray[:, 0], [1, -1], atol=1e-6)


@pytest.mark.parametrize('value', [0.0, 1.0])
def test_gradients_finite_at_black_and_white(value):
  rgb = jnp.full((2, 3), value, jnp.float32)
  g1 = jax.grad(lambda x: color.rgb01_to_nlab(x).sum())(rgb)
  g2 = jax.grad(lambda x: color.nlab_to_rgb01(color.rgb01_to_nlab(x)).sum())(rgb)
  nlab = color.rgb01_to_nlab(rgb)
  g3 = jax.grad(lambda x: color.nlab_to_rgb01(x, clip=False).sum())(nlab)
  for g in (g1, g2, g3):
    assert bool(jnp.all(jnp.isfinite(g)))
  # d(round trip)/d(rgb) is the identity inside the gamut (white is clipped).
  if value == 0.0:
    np.testing.assert_allclose(
        jax.jacfwd(lambda x: color.nlab_to_rgb01(color.rgb01_to_nlab(x), clip=False))(
            jnp.full((3,), 0.5)), np.eye(3), atol=1e-3)


def _colorfulness_reference(image):
  """M3 written per pixel list, with explicit means and population stds."""
  pixels = image.reshape(-1, 3).astype(np.float64)
  rg = pixels[:, 0] - pixels[:, 1]
  yb = (pixels[:, 0] + pixels[:, 1]) / 2.0 - pixels[:, 2]
  n = len(pixels)
  mean_rg, mean_yb = rg.sum() / n, yb.sum() / n
  std_rg = np.sqrt(((rg - mean_rg)**2).sum() / n)
  std_yb = np.sqrt(((yb - mean_yb)**2).sum() / n)
  return np.hypot(std_rg, std_yb) + 0.3 * np.hypot(mean_rg, mean_yb)


def test_colorfulness_matches_independent_numpy():
  rng = np.random.default_rng(5)
  images = rng.integers(0, 256, (3, 9, 7, 3), dtype=np.uint8)
  got = color.colorfulness(images)
  want = [_colorfulness_reference(im) for im in images]
  np.testing.assert_allclose(got, want, rtol=1e-12)
  assert isinstance(color.colorfulness(images[0]), float)
  assert abs(color.colorfulness(images[0]) - want[0]) < 1e-9


def test_colorfulness_closed_forms():
  gray = np.repeat(np.arange(60, dtype=np.uint8).reshape(6, 10, 1), 3, -1)
  assert color.colorfulness(gray) == 0.0
  # Constant pure red: rg = 255, yb = 127.5, no spread.
  red = np.zeros((4, 4, 3), np.uint8)
  red[..., 0] = 255
  assert abs(color.colorfulness(red) - 0.3 * np.hypot(255, 127.5)) < 1e-9


# --------------------------------------------------- uint8 image helpers ---
def _colour_cube(step=5):
  """Every step-th level of each channel, corners included, as an image."""
  levels = np.unique(np.r_[np.arange(0, 256, step), 1, 2, 254, 255])
  cube = np.stack(np.meshgrid(levels, levels, levels, indexing='ij'), -1)
  return cube.reshape(len(levels), -1, 3).astype(np.uint8)


@pytest.mark.parametrize('rows_per_block', [7, 256])
def test_gray_from_rgb_is_skimages_lightness_in_float32_blocks(
    rows_per_block):
  pixels = _colour_cube()
  want = skcolor.rgb2lab(pixels / 255.0)[..., :1] / 50.0 - 1.0   # float64
  got = color.rgb8_to_gray(pixels, rows_per_block=rows_per_block)
  assert got.dtype == np.float32 and got.shape == pixels.shape[:2] + (1,)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_gray_from_rgb_refuses_what_is_not_uint8_rgb():
  with pytest.raises(ValueError, match='uint8'):
    color.rgb8_to_gray(np.zeros((2, 2, 3), np.float32))
  with pytest.raises(ValueError, match=r'\(2, 2\)'):
    color.rgb8_to_gray(np.zeros((2, 2), np.uint8))


def test_rgb_round_trip_through_nlab():
  pixels = _colour_cube(step=15)
  nlab = color.rgb8_to_nlab(pixels)
  np.testing.assert_allclose(
      nlab, color.normalize_lab(skcolor.rgb2lab(pixels / 255.0), np),
      atol=1e-5)
  back = color.nlab_to_rgb8(nlab, rows_per_block=3)
  assert back.dtype == np.uint8 and np.abs(back.astype(int) - pixels).max() <= 1


def test_rgb_from_gray_is_gray_with_the_given_lightness():
  pixels = _colour_cube(step=15)
  shown = color.gray_to_rgb8(color.rgb8_to_gray(pixels))
  assert shown.shape == pixels.shape and shown.dtype == np.uint8
  spread = shown.max(-1).astype(int) - shown.min(-1)
  assert spread.max() <= 1   # R = G = B, to the D65 white's rounding
  lightness = skcolor.rgb2lab(shown / 255.0)[..., 0]
  want = skcolor.rgb2lab(pixels / 255.0)[..., 0]
  assert np.abs(lightness - want).max() < 0.5   # within one 8-bit level


def test_the_namespace_follows_the_input():
  rgb = np.random.default_rng(5).uniform(0, 1, (4, 3))
  from_numpy = color.rgb01_to_nlab(rgb)
  assert type(from_numpy) is np.ndarray and from_numpy.dtype == np.float64
  from_jax = color.rgb01_to_nlab(jnp.asarray(rgb, jnp.float32))
  assert isinstance(from_jax, jax.Array) and from_jax.dtype == jnp.float32
  np.testing.assert_allclose(from_jax, from_numpy, atol=2e-5)
  traced = jax.jit(color.nlab_to_rgb01)(from_jax)
  np.testing.assert_allclose(traced, rgb, atol=1e-4)
  assert type(color.nlab_to_rgb01(from_numpy)) is np.ndarray
  forced = color.rgb01_to_nlab(rgb, jnp)   # xp still overrides
  assert isinstance(forced, jax.Array)
