"""VGG16 features vs a naive numpy/scipy forward pass; weights file I/O."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from scsnet_jax.pretrained import vgg


def random_vgg_params(seed=0):
  """He-scaled random params with non-zero biases, from numpy (fast)."""
  rng = np.random.default_rng(seed)
  params = {}
  for name, _, cin, cout in vgg.VGG16_CONV_LAYERS:
    params[name] = {
        'kernel': (rng.standard_normal((3, 3, cin, cout)) *
                   np.sqrt(2.0 / (9 * cin))).astype(np.float32),
        'bias': rng.uniform(-0.1, 0.1, cout).astype(np.float32),
    }
  return params


def numpy_conv3x3_relu(x, kernel, bias):
  """(H, W, Cin) -> (H, W, Cout): zero padding 1, cross-correlation, ReLU."""
  padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
  out = np.stack([
      scipy.signal.correlate(padded, kernel[..., o], mode='valid')[..., 0]
      for o in range(kernel.shape[-1])
  ], axis=-1) + bias
  return np.maximum(out, 0.0)


def numpy_max_pool(x):
  h, w, c = x.shape
  x = x[:h // 2 * 2, :w // 2 * 2]
  return x.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))


def test_first_two_blocks_match_naive_numpy():
  params = random_vgg_params()
  rng = np.random.default_rng(1)
  image = rng.normal(size=(9, 8, 3)).astype(np.float32)  # Odd H: pool floors.
  got = vgg.vgg16_features(params, jnp.asarray(image[None]),
                           layers=('relu1_1', 'relu2_1'))
  relu1_1 = numpy_conv3x3_relu(image, **params['conv1_1'])
  relu1_2 = numpy_conv3x3_relu(relu1_1, **params['conv1_2'])
  relu2_1 = numpy_conv3x3_relu(numpy_max_pool(relu1_2), **params['conv2_1'])
  assert got['relu2_1'].shape == (1, 4, 4, 128)
  np.testing.assert_allclose(np.asarray(got['relu1_1'][0]), relu1_1,
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(got['relu2_1'][0]), relu2_1,
                             rtol=1e-4, atol=1e-4)
  assert (relu2_1 > 0).mean() > 0.2  # Not a vacuous all-zero comparison.


def test_perceptual_layer_shapes():
  params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                        random_vgg_params())
  shapes = jax.eval_shape(
      lambda p, x: vgg.vgg16_features(p, x), params,
      jax.ShapeDtypeStruct((2, 32, 48, 3), jnp.float32))
  assert {k: v.shape for k, v in shapes.items()} == {
      'relu1_1': (2, 32, 48, 64), 'relu2_1': (2, 16, 24, 128),
      'relu3_1': (2, 8, 12, 256), 'relu4_1': (2, 4, 6, 512),
      'relu5_1': (2, 2, 3, 512)}
  low = jax.eval_shape(lambda p, x: vgg.vgg16_features(p, x,
                                                       dtype=jnp.bfloat16),
                       params, jax.ShapeDtypeStruct((1, 16, 16, 3),
                                                    jnp.float32))
  assert low['relu5_1'].dtype == jnp.bfloat16
  with pytest.raises(ValueError, match='relu9_9'):
    vgg.vgg16_features(params, jnp.zeros((1, 16, 16, 3)), layers=('relu9_9',))


def test_imagenet_normalisation():
  rgb = jnp.asarray([[0.485, 0.456, 0.406], [1.0, 0.0, 0.5]])
  np.testing.assert_allclose(
      np.asarray(vgg.normalize_imagenet(rgb)),
      [[0, 0, 0], [(1 - 0.485) / 0.229, -0.456 / 0.224, (0.5 - 0.406) / 0.225]],
      atol=1e-6)


def test_layer_table_is_torchvision_vgg16():
  # torchvision vgg16 'D': 64,64,M,128,128,M,256x3,M,512x3,M,512x3,M with a
  # ReLU after every conv: indices advance by 2 per conv and 1 per pool.
  index, indices = 0, []
  for block_convs in (2, 2, 3, 3, 3):
    for _ in range(block_convs):
      indices.append(index)
      index += 2
    index += 1
  assert [i for _, i, _, _ in vgg.VGG16_CONV_LAYERS] == indices
  assert indices[-1] == 28


def test_save_and_load_round_trip(tmp_path):
  params = random_vgg_params(2)
  path = tmp_path / 'vgg16.npz'
  vgg.save_vgg16_params(params, str(path))
  loaded = vgg.load_vgg16_params(path)
  for name in params:
    for kind in ('kernel', 'bias'):
      np.testing.assert_array_equal(loaded[name][kind], params[name][kind])


def test_load_errors_name_the_file(tmp_path):
  missing = tmp_path / 'missing.npz'
  with pytest.raises(FileNotFoundError, match='missing.npz.*convert_vgg16'):
    vgg.load_vgg16_params(missing)
  garbage = tmp_path / 'garbage.npz'
  garbage.write_bytes(b'not an npz')
  with pytest.raises(ValueError, match='garbage.npz'):
    vgg.load_vgg16_params(garbage)
  params = random_vgg_params()
  params['conv3_2']['kernel'] = params['conv3_2']['kernel'][..., :10]
  wrong = tmp_path / 'wrong.npz'
  vgg.save_vgg16_params(params, str(wrong))
  with pytest.raises(ValueError, match=r'wrong.npz: conv3_2/kernel has shape'):
    vgg.load_vgg16_params(wrong)
  params = random_vgg_params()
  del params['conv5_3']
  vgg.save_vgg16_params(params, str(wrong))
  with pytest.raises(ValueError, match='wrong.npz: missing conv5_3/kernel'):
    vgg.load_vgg16_params(wrong)


def test_random_init_is_he_normal():
  params = vgg.init_vgg16_params(0)
  assert {n: {k: v.shape for k, v in layer.items()}
          for n, layer in params.items()} == vgg.expected_shapes()
  kernel = params['conv3_1']['kernel']
  np.testing.assert_allclose(kernel.std(), np.sqrt(2 / (9 * 128)), rtol=0.02)
  np.testing.assert_array_equal(vgg.init_vgg16_params(0)['conv1_1']['kernel'],
                                params['conv1_1']['kernel'])
