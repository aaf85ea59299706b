"""convert_vgg16: torchvision layout -> our HWIO .npz, and its CLI errors."""

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from tests.paths import REPO_ROOT
from scsnet_jax.pretrained import vgg
from scsnet_jax.pretrained import convert_vgg16
from tests import torch_pickle_writer

# torchvision vgg16().features: (index, out, in) of each 3x3 conv.
TORCHVISION_CONVS = ((0, 64, 3), (2, 64, 64), (5, 128, 64), (7, 128, 128),
                     (10, 256, 128), (12, 256, 256), (14, 256, 256),
                     (17, 512, 256), (19, 512, 512), (21, 512, 512),
                     (24, 512, 512), (26, 512, 512), (28, 512, 512))
OUR_NAMES = ('conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2',
             'conv3_3', 'conv4_1', 'conv4_2', 'conv4_3', 'conv5_1', 'conv5_2',
             'conv5_3')


def torchvision_state_dict(seed=0):
  """A random state dict with torchvision's vgg16 names and OIHW shapes."""
  rng = np.random.default_rng(seed)
  state = {}
  for index, cout, cin in TORCHVISION_CONVS:
    state[f'features.{index}.weight'] = rng.standard_normal(
        (cout, cin, 3, 3), dtype=np.float32)
    state[f'features.{index}.bias'] = rng.standard_normal(cout,
                                                          dtype=np.float32)
  # The classifier is ignored (real: 4096x25088; kept small here).
  state['classifier.0.weight'] = np.ones((8, 16), np.float32)
  state['classifier.0.bias'] = np.ones(8, np.float32)
  return state


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('vgg')
  state = torchvision_state_dict()
  pth = tmp / 'vgg16-397923af.pth'
  # The 2017 torchvision file predates torch's zip format.
  torch_pickle_writer.save_torch_state_dict(state, pth, legacy=True)
  out = tmp / 'out' / 'vgg16.npz'
  assert convert_vgg16.main(['--input', str(pth), '--output', str(out)]) == 0
  return state, out


def test_names_and_kernel_transpose_elementwise(converted):
  state, out = converted
  params = vgg.load_vgg16_params(out)
  assert tuple(params) == OUR_NAMES
  rng = np.random.default_rng(1)
  for name, (index, cout, cin) in zip(OUR_NAMES, TORCHVISION_CONVS):
    weight = state[f'features.{index}.weight']
    kernel = params[name]['kernel']
    assert kernel.shape == (3, 3, cin, cout)
    for _ in range(50):  # kernel[h, w, i, o] == weight[o, i, h, w]
      o, i = rng.integers(cout), rng.integers(cin)
      h, w = rng.integers(3), rng.integers(3)
      assert kernel[h, w, i, o] == weight[o, i, h, w]
    np.testing.assert_array_equal(params[name]['bias'],
                                  state[f'features.{index}.bias'])
  with np.load(out) as npz:
    assert not any('classifier' in key for key in npz.files)


def test_converted_conv_computes_what_torch_computes(converted):
  """relu1_1 == ReLU(bias + sum_i xcorr(x_i, W[o, i])): torch's Conv2d."""
  state, out = converted
  params = vgg.load_vgg16_params(out)
  image = np.random.default_rng(2).normal(size=(3, 6, 5)).astype(np.float32)
  weight, bias = state['features.0.weight'], state['features.0.bias']
  padded = np.pad(image, ((0, 0), (1, 1), (1, 1)))  # CHW, as torch sees it.
  expected = np.stack([
      sum(scipy.signal.correlate(padded[i], weight[o, i], mode='valid')
          for i in range(3)) + bias[o] for o in range(64)])
  expected = np.maximum(expected, 0).transpose(1, 2, 0)
  got = vgg.vgg16_features(params, jnp.asarray(image.transpose(1, 2, 0)[None]),
                           layers=('relu1_1',))['relu1_1'][0]
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)


def test_zip_format_input_and_shape_errors(tmp_path):
  small = {'features.0.weight': np.zeros((64, 3, 3, 3), np.float32),
           'features.0.bias': np.zeros(64, np.float32)}
  pth = tmp_path / 'partial.pth'
  torch_pickle_writer.save_torch_state_dict(small, pth)
  with pytest.raises(convert_vgg16.ConversionError, match='features.2.weight'):
    convert_vgg16.convert_file(str(pth), str(tmp_path / 'x.npz'))
  state = torchvision_state_dict()
  state['features.10.weight'] = state['features.10.weight'][:, :64]
  with pytest.raises(convert_vgg16.ConversionError, match='features.10.weight'):
    convert_vgg16.convert_state_dict(state)


def test_user_mistakes_give_one_line_and_exit_status_1(tmp_path, capsys):
  out = tmp_path / 'vgg16.npz'
  assert convert_vgg16.main(['--input', str(tmp_path / 'nope.pth'),
                             '--output', str(out)]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and 'nope.pth' in err
  not_torch = tmp_path / 'image.pth'
  not_torch.write_bytes(b'\x89PNG....')
  assert convert_vgg16.main(['--input', str(not_torch), '--output',
                             str(out)]) == 1
  assert 'image.pth' in capsys.readouterr().err
  assert os.listdir(tmp_path) == ['image.pth']  # No output, no temp file.


def test_cli_entry_point_without_traceback(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'scsnet_jax.pretrained.convert_vgg16', '--input',
       str(tmp_path / 'missing.pth'), '--output', str(tmp_path / 'o.npz')],
      capture_output=True, text=True, check=False, timeout=120,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
      cwd=REPO_ROOT)
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  assert 'missing.pth' in result.stderr
