"""CPM: sampling, local coordinates, MLP and chunking vs numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scsnet_jax.models import cpm as cpm_lib


def grid_sample_align_corners(feature, x, y):
  """numpy re-derivation of torch grid_sample(align_corners=True), bilinear.

  feature (H, W, C); x, y in [0, 1] (the CPM's coordinates).
  """
  h, w, _ = feature.shape
  u, v = x * (w - 1), y * (h - 1)
  out = np.zeros((len(x), feature.shape[-1]))
  for n in range(len(x)):
    for yi in range(h):
      for xi in range(w):
        weight = max(0, 1 - abs(u[n] - xi)) * max(0, 1 - abs(v[n] - yi))
        out[n] += weight * feature[yi, xi]
  return out


def numpy_cpm(module, feature, x, y):
  """The spec's CPM written out in numpy (no shared code with the module)."""
  h, w, _ = feature.shape
  sampled = grid_sample_align_corners(feature, x, y)
  z = np.stack([2 * np.modf(x * w)[0] - 1, 2 * np.modf(y * h)[0] - 1], -1)
  act = np.concatenate([sampled, z], -1)
  for layer in module.hidden_layers:
    act = np.maximum(act @ np.asarray(layer.kernel[...]) +
                     np.asarray(layer.bias[...]), 0)
  out = module.output_layer
  return act @ np.asarray(out.kernel[...]) + np.asarray(out.bias[...])


def _sample_all(feature, x, y):
  sample = jax.vmap(cpm_lib.bilinear_sample_point, in_axes=(None, 0))
  return np.asarray(sample(jnp.asarray(feature), jnp.stack([x, y], -1)))


def _points(rng, n):
  x, y = rng.random(n), rng.random(n)
  border = np.array([0.0, 1.0, 0.0, 1.0, 0.5])
  return (np.concatenate([x, border]).astype(np.float32),
          np.concatenate([y, border[::-1]]).astype(np.float32))


@pytest.mark.parametrize('h,w', [(4, 6), (1, 5), (3, 1)])
def test_bilinear_sampling_matches_grid_sample(h, w):
  rng = np.random.default_rng(0)
  feature = rng.normal(size=(h, w, 3)).astype(np.float32)
  x, y = _points(rng, 40)
  got = _sample_all(feature, x, y)
  np.testing.assert_allclose(got, grid_sample_align_corners(feature, x, y),
                             atol=1e-5)


def test_local_coordinate_formula():
  rng = np.random.default_rng(1)
  x, y = _points(rng, 50)
  got = np.asarray(jax.vmap(lambda p: cpm_lib.local_coordinate(p, 5, 7))(
      jnp.stack([x, y], -1)))
  expected = np.stack([2 * (x * 7 - np.floor(x * 7)) - 1,
                       2 * (y * 5 - np.floor(y * 5)) - 1], -1)
  np.testing.assert_allclose(got, expected, atol=1e-5)
  assert got.min() >= -1 and got.max() < 1


def test_grid_coordinates_are_pixel_centres():
  coords = np.asarray(cpm_lib.grid_coordinates(2, 4))
  np.testing.assert_allclose(coords[:4, 0], [0.125, 0.375, 0.625, 0.875])
  np.testing.assert_allclose(coords[::4, 1], [0.25, 0.75])


@pytest.fixture(scope='module')
def small_cpm():
  return cpm_lib.ContinuousPixelMapping(6, (16, 8, 8), chunk_size=0,
                                        project_first=False, rngs=nnx.Rngs(0))


def test_cpm_matches_numpy_reference(small_cpm):
  rng = np.random.default_rng(2)
  feature = rng.normal(size=(2, 3, 4, 6)).astype(np.float32)
  x, y = _points(rng, 20)
  coords = np.stack([x, y], -1)
  got = small_cpm.render_points(jnp.asarray(feature),
                                jnp.asarray(np.stack([coords, coords[::-1]])))
  np.testing.assert_allclose(np.asarray(got[0]),
                             numpy_cpm(small_cpm, feature[0], x, y), atol=1e-4)
  np.testing.assert_allclose(np.asarray(got[1]),
                             numpy_cpm(small_cpm, feature[1], x[::-1], y[::-1]),
                             atol=1e-4)


def test_constant_features_give_constant_mlp_feature_input():
  feature = np.full((3, 5, 4), 0.37, np.float32)
  x, y = _points(np.random.default_rng(3), 30)
  sampled = _sample_all(feature, x, y)
  np.testing.assert_allclose(sampled, 0.37, atol=1e-6)


@pytest.mark.parametrize('chunk,project', [(7, False), (7, True), (0, True),
                                            (64, 'auto')])
def test_chunked_and_projected_paths_equal_plain(small_cpm, chunk, project):
  feature = jnp.asarray(np.random.default_rng(4).normal(size=(2, 4, 4, 6)),
                        jnp.float32)
  plain = small_cpm(feature, (9, 11))
  variant = cpm_lib.ContinuousPixelMapping(6, (16, 8, 8), chunk_size=chunk,
                                           project_first=project,
                                           rngs=nnx.Rngs(0))
  nnx.update(variant, nnx.state(small_cpm))
  np.testing.assert_allclose(np.asarray(variant(feature, (9, 11))),
                             np.asarray(plain), atol=1e-5)
  coords = jnp.broadcast_to(cpm_lib.grid_coordinates(9, 11), (2, 99, 2))
  np.testing.assert_allclose(
      np.asarray(variant.render_points(feature, coords)).reshape(2, 9, 11, 3),
      np.asarray(plain), atol=1e-5)
