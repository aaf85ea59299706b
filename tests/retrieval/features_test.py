"""Descriptors: histogram and grid cells against numpy re-derivations, the
gray domain (a colour photo and its gray describe alike)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from scsnet_jax import color
from scsnet_jax.pretrained import efficientnet_lite as lite
from scsnet_jax.retrieval import features as features_lib
from tests import helpers


def test_histogram_matches_numpy():
  light = np.random.default_rng(0).uniform(0, 1, (2, 9, 11)).astype(np.float32)
  light[0, 0, 0] = 1.0   # the top edge goes in the last bin, as np.histogram
  got = features_lib.histogram(light)
  for row in range(2):
    want, _ = np.histogram(light[row], bins=features_lib.HIST_BINS,
                           range=(0, 1))
    np.testing.assert_allclose(got[row], want / light[row].size, atol=1e-7)


def test_cells_are_torch_adaptive_pool_bins():
  assert features_lib._cells(7) == [(0, 3), (2, 5), (4, 7)]
  assert features_lib._cells(6) == [(0, 2), (2, 4), (4, 6)]


def test_lightness_of_colour_equals_lightness_of_its_gray():
  rng = np.random.default_rng(1)
  pixels = rng.integers(0, 256, (60, 80, 3), np.uint8)
  gray = color.gray_to_rgb8(color.rgb8_to_gray(pixels))   # same L, a = b = 0
  np.testing.assert_allclose(features_lib.lightness(pixels),
                             features_lib.lightness(gray), atol=0.01)
  light = features_lib.lightness(pixels)
  assert light.shape == (224, 224) and 0 <= light.min() <= light.max() <= 1


def test_every_image_is_seen_at_the_describe_side():
  # A sharp 256 px gray and its 4x4 block average (64 px) describe alike
  # (both seen at 64 px), where a direct bicubic of the sharp one differs.
  rng = np.random.default_rng(3)
  sharp = rng.uniform(-1, 1, (256, 256, 1)).astype(np.float32)
  small = sharp.reshape(64, 4, 64, 4, 1).mean(axis=(1, 3))
  assert features_lib.DESCRIBE_SIDE == 64
  seen_sharp = features_lib.lightness_from_gray(sharp)
  assert np.abs(seen_sharp - features_lib.lightness_from_gray(small)
                ).mean() < 0.03   # bicubic vs box: 0.021 on noise
  direct = Image.fromarray((sharp[..., 0] + 1) / 2, 'F').resize(
      (224, 224), Image.Resampling.BICUBIC)
  assert np.abs(seen_sharp - np.asarray(direct)).mean() > 0.1   # 0.16


@pytest.fixture(scope='module')
def embedder():
  return features_lib.Embedder(helpers.efficientnet_lite0_params_or_skip(),
                               weights_id='test', batch_size=2)


def test_descriptors_re_derived_from_the_network(embedder):
  rng = np.random.default_rng(2)
  light = rng.uniform(0, 1, (3, 224, 224)).astype(np.float32)
  got = embedder.embed_light(light)             # batches of 2, one padded
  assert got.pooled.shape == (3, 320) and got.grid.shape == (3, 2880)
  out = jax.jit(lite.efficientnet_lite0)(
      embedder.params, jnp.asarray(np.repeat(light[..., None], 3, -1)))
  blocks = np.asarray(out['blocks'], np.float64)   # (3, 7, 7, 320)
  pooled = blocks.mean(axis=(1, 2))
  np.testing.assert_allclose(
      got.pooled, pooled / np.linalg.norm(pooled, axis=1, keepdims=True),
      atol=1e-5)
  cell = blocks[:, 2:5, 4:7].mean(axis=(1, 2))     # row 1, column 2
  cell /= np.linalg.norm(cell, axis=1, keepdims=True)
  np.testing.assert_allclose(got.grid.reshape(3, 9, 320)[:, 5], cell,
                             atol=1e-5)
  np.testing.assert_allclose(got.hist, features_lib.histogram(light))
  one = embedder.embed_light(light[1:2])           # the batch-1 program
  np.testing.assert_allclose(one.pooled, got.pooled[1:2], atol=1e-5)
