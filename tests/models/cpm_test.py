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


# ------------------------------------------------- sampling geometry -------
def _identity_cpm(sampling, channels=1):
  """A CPM whose MLP passes non-negative features through unchanged (z is
  ignored), so its output is the bilinear sample itself."""
  head = cpm_lib.ContinuousPixelMapping(
      channels, (channels,) * 3, channels, chunk_size=0, project_first=False,
      sampling=sampling, rngs=nnx.Rngs(0))
  for layer in [*head.hidden_layers, head.output_layer]:
    n_in = layer.kernel[...].shape[0]
    layer.kernel.value = jnp.eye(n_in, channels, dtype=jnp.float32)
    layer.bias.value = jnp.zeros((channels,), jnp.float32)
  return head


def _photo_pair(name, lr_size, scale=4):
  """(LR, HR) gray float64 in [0, 1]: a centre crop of a scikit-image photo
  and its area-average downsampling (half-pixel geometry, like the data)."""
  from skimage import color as skcolor, data
  image = getattr(data, name)()
  gray = skcolor.rgb2gray(image) if image.ndim == 3 else image / 255.0
  hr_size = lr_size * scale
  top = (gray.shape[0] - hr_size) // 2
  left = (gray.shape[1] - hr_size) // 2
  hr = gray[top:top + hr_size, left:left + hr_size]
  lr = hr.reshape(lr_size, scale, lr_size, scale).mean(axis=(1, 3))
  return lr, hr


def test_centres_sampling_is_half_pixel_bilinear_upsampling():
  from skimage import transform
  lr, _ = _photo_pair('astronaut', 24)
  head = _identity_cpm('centres')
  for out_size in [(96, 96), (61, 83)]:   # x4, and a fractional scale
    got = np.asarray(head(jnp.asarray(lr[None, ..., None], jnp.float32),
                          out_size))[0, ..., 0]
    expected = transform.resize(lr, out_size, order=1, mode='edge',
                                anti_aliasing=False)
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_corners_sampling_is_the_spec_grid_sample():
  lr, _ = _photo_pair('chelsea', 12)
  got = np.asarray(_identity_cpm('corners')(
      jnp.asarray(lr[None, ..., None], jnp.float32), (48, 48)))[0, ..., 0]
  x = (np.arange(48) + 0.5) / 48
  xx, yy = np.meshgrid(x, x)
  expected = grid_sample_align_corners(lr[..., None], xx.ravel(), yy.ravel())
  np.testing.assert_allclose(got.ravel(), expected[:, 0], atol=1e-5)


@pytest.mark.parametrize('name', ['astronaut', 'chelsea', 'coffee'])
def test_centres_beat_corners_on_a_photo(name):
  lr, hr = _photo_pair(name, 64)
  def psnr(sampling):
    out = np.asarray(_identity_cpm(sampling)(
        jnp.asarray(lr[None, ..., None], jnp.float32), hr.shape))[0, ..., 0]
    return 10 * np.log10(1.0 / np.mean((out - hr) ** 2))
  assert psnr('centres') > psnr('corners') + 0.3


@pytest.mark.parametrize('sampling', cpm_lib.SAMPLINGS)
def test_sample_position_inverts_source_coordinate(sampling):
  t = np.linspace(0.1, 0.9, 17)
  u = cpm_lib.source_coordinate(t, 7, sampling)
  np.testing.assert_allclose(cpm_lib.sample_position(u, 7, sampling), t,
                             atol=1e-12)


def test_points_equal_grid_in_centres_mode():
  head = cpm_lib.ContinuousPixelMapping(6, (16, 8, 8), chunk_size=0,
                                        sampling='centres', rngs=nnx.Rngs(5))
  feature = jnp.asarray(np.random.default_rng(6).normal(size=(1, 4, 5, 6)),
                        jnp.float32)
  coords = cpm_lib.grid_coordinates(9, 11)[None]
  np.testing.assert_allclose(
      np.asarray(head.render_points(feature, coords)).reshape(1, 9, 11, 3),
      np.asarray(head(feature, (9, 11))), atol=1e-5)


def test_unknown_sampling_is_refused():
  with pytest.raises(ValueError, match='cpm_sampling'):
    cpm_lib.ContinuousPixelMapping(4, (4,), sampling='center',
                                   rngs=nnx.Rngs(0))
