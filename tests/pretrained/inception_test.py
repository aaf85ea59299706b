"""FID Inception building blocks vs scipy/numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from flax import nnx

from scsnet_jax.pretrained import inception


def test_bilinear_resize_matches_torch_closed_form():
  # F.interpolate([0, 1], size=4, mode='bilinear', align_corners=False).
  matrix = inception.bilinear_resize_matrix(2, 4)
  np.testing.assert_allclose(matrix @ np.array([0.0, 1.0]),
                             [0.0, 0.25, 0.75, 1.0])
  # Downsampling 4 -> 2 samples at 1.5 * i + 0.5 (no antialias).
  np.testing.assert_allclose(
      inception.bilinear_resize_matrix(4, 2) @ np.array([0.0, 1, 2, 3]),
      [0.5, 2.5])


@pytest.mark.parametrize('height,width', [(5, 7), (13, 40), (299, 299)])
def test_resize_matches_scipy_half_pixel_linear(height, width):
  rng = np.random.default_rng(height)
  images = rng.uniform(0, 1, (1, height, width, 2)).astype(np.float32)
  got = np.asarray(inception.resize_like_pytorch_fid(jnp.asarray(images)))
  assert got.shape == (1, 299, 299, 2)
  want = np.stack([
      scipy.ndimage.zoom(images[0, ..., c].astype(np.float64),
                         (299 / height, 299 / width), order=1, mode='nearest',
                         grid_mode=True) for c in range(2)], axis=-1)
  np.testing.assert_allclose(got[0], want, atol=1e-5)


def test_pools_match_numpy_loops():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 4, 5, 3)).astype(np.float32)
  avg = np.asarray(inception.avg_pool_exclude_pad(jnp.asarray(x)))
  mx = np.asarray(inception.max_pool(jnp.asarray(x), 3, 1, padding=1))
  strided = np.asarray(inception.max_pool(jnp.asarray(x), 3, 2))
  for i in range(4):
    for j in range(5):
      window = x[0, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
      np.testing.assert_allclose(avg[0, i, j], window.mean((0, 1)), rtol=1e-5)
      np.testing.assert_allclose(mx[0, i, j], window.max((0, 1)))
  assert strided.shape == (1, 1, 2, 3)
  np.testing.assert_allclose(strided[0, 0, 1], x[0, :3, 2:5].max((0, 1)))
  # The corner average divides by 4 real pixels, not 9 (count_include_pad=False).
  assert not np.allclose(avg[0, 0, 0], x[0, :2, :2].sum((0, 1)) / 9)


def test_model_layout_and_feature_shape():
  shapes = inception.folded_conv_shapes()
  assert len(shapes) == 94
  assert shapes['Mixed_7c.branch_pool'] == (1, 1, 2048, 192)
  assert shapes['Mixed_6e.branch7x7dbl_5'] == (1, 7, 192, 192)
  n_params = sum(int(np.prod(s)) + s[-1] for s in shapes.values())
  # torchvision's FID Inception minus fc and BN running stats, BN folded.
  assert n_params == 21_768_352
  model = nnx.eval_shape(lambda: inception.FIDInceptionV3(rngs=nnx.Rngs(0)))
  out = nnx.eval_shape(lambda m, x: m(x), model,
                       jax.ShapeDtypeStruct((3, 64, 48, 3), jnp.float32))
  assert out.shape == (3, inception.FEATURE_DIM)


@pytest.mark.slow  # a full 299x299 forward: ~1 min on 2 CPU cores
def test_uint8_and_unit_float_inputs_give_same_features():
  # A reduced-cost check of the wrapper: jit + uint8 scaling, random weights.
  model = inception.FIDInceptionV3(rngs=nnx.Rngs(0))
  features = inception.make_feature_fn(model)
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (1, 20, 24, 3), dtype=np.uint8)
  from_uint8 = np.asarray(features(images))
  from_float = np.asarray(features(images.astype(np.float32) / 255.0))
  assert from_uint8.shape == (1, 2048)
  np.testing.assert_allclose(from_uint8, from_float, rtol=1e-5, atol=1e-6)
