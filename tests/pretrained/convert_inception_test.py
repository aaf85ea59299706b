"""The converter vs a synthetic state dict in pytorch-fid's layout.

The layout below is written out from torchvision's InceptionV3 (the names and
OIHW shapes pytorch-fid's file holds), independently of the Flax model; one
converted block is then run against a numpy re-derivation that uses the
unfolded torch tensors (OIHW conv, BatchNorm eps 1e-3, torch pooling).
"""

import numpy as np
import pytest

from scsnet_jax.pretrained import inception
from scsnet_jax.pretrained import convert_inception
from tests import torch_pickle_writer


def _block_a(name, cin, pool):
  return [(f'{name}.branch1x1', 64, cin, 1, 1),
          (f'{name}.branch5x5_1', 48, cin, 1, 1),
          (f'{name}.branch5x5_2', 64, 48, 5, 5),
          (f'{name}.branch3x3dbl_1', 64, cin, 1, 1),
          (f'{name}.branch3x3dbl_2', 96, 64, 3, 3),
          (f'{name}.branch3x3dbl_3', 96, 96, 3, 3),
          (f'{name}.branch_pool', pool, cin, 1, 1)]


def _block_c(name, c7):
  return [(f'{name}.branch1x1', 192, 768, 1, 1),
          (f'{name}.branch7x7_1', c7, 768, 1, 1),
          (f'{name}.branch7x7_2', c7, c7, 1, 7),
          (f'{name}.branch7x7_3', 192, c7, 7, 1),
          (f'{name}.branch7x7dbl_1', c7, 768, 1, 1),
          (f'{name}.branch7x7dbl_2', c7, c7, 7, 1),
          (f'{name}.branch7x7dbl_3', c7, c7, 1, 7),
          (f'{name}.branch7x7dbl_4', c7, c7, 7, 1),
          (f'{name}.branch7x7dbl_5', 192, c7, 1, 7),
          (f'{name}.branch_pool', 192, 768, 1, 1)]


def _block_e(name, cin):
  return [(f'{name}.branch1x1', 320, cin, 1, 1),
          (f'{name}.branch3x3_1', 384, cin, 1, 1),
          (f'{name}.branch3x3_2a', 384, 384, 1, 3),
          (f'{name}.branch3x3_2b', 384, 384, 3, 1),
          (f'{name}.branch3x3dbl_1', 448, cin, 1, 1),
          (f'{name}.branch3x3dbl_2', 384, 448, 3, 3),
          (f'{name}.branch3x3dbl_3a', 384, 384, 1, 3),
          (f'{name}.branch3x3dbl_3b', 384, 384, 3, 1),
          (f'{name}.branch_pool', 192, cin, 1, 1)]


# (prefix, out, in, kh, kw) of every BasicConv2d in pytorch-fid's InceptionV3.
TORCH_LAYOUT = (
    [('Conv2d_1a_3x3', 32, 3, 3, 3), ('Conv2d_2a_3x3', 32, 32, 3, 3),
     ('Conv2d_2b_3x3', 64, 32, 3, 3), ('Conv2d_3b_1x1', 80, 64, 1, 1),
     ('Conv2d_4a_3x3', 192, 80, 3, 3)] + _block_a('Mixed_5b', 192, 32) +
    _block_a('Mixed_5c', 256, 64) + _block_a('Mixed_5d', 288, 64) +
    [('Mixed_6a.branch3x3', 384, 288, 3, 3),
     ('Mixed_6a.branch3x3dbl_1', 64, 288, 1, 1),
     ('Mixed_6a.branch3x3dbl_2', 96, 64, 3, 3),
     ('Mixed_6a.branch3x3dbl_3', 96, 96, 3, 3)] + _block_c('Mixed_6b', 128) +
    _block_c('Mixed_6c', 160) + _block_c('Mixed_6d', 160) +
    _block_c('Mixed_6e', 192) +
    [('Mixed_7a.branch3x3_1', 192, 768, 1, 1),
     ('Mixed_7a.branch3x3_2', 320, 192, 3, 3),
     ('Mixed_7a.branch7x7x3_1', 192, 768, 1, 1),
     ('Mixed_7a.branch7x7x3_2', 192, 192, 1, 7),
     ('Mixed_7a.branch7x7x3_3', 192, 192, 7, 1),
     ('Mixed_7a.branch7x7x3_4', 192, 192, 3, 3)] +
    _block_e('Mixed_7b', 1280) + _block_e('Mixed_7c', 2048))


def synthetic_pytorch_fid_state_dict(seed=0):
  rng = np.random.default_rng(seed)
  state = {}
  for prefix, cout, cin, kh, kw in TORCH_LAYOUT:
    fan_in = cin * kh * kw
    state[f'{prefix}.conv.weight'] = (rng.standard_normal(
        (cout, cin, kh, kw), np.float32) / np.sqrt(fan_in)).astype(np.float32)
    state[f'{prefix}.bn.weight'] = rng.uniform(0.5, 1.5, cout).astype(
        np.float32)
    state[f'{prefix}.bn.bias'] = rng.normal(0, 0.1, cout).astype(np.float32)
    state[f'{prefix}.bn.running_mean'] = rng.normal(0, 0.1, cout).astype(
        np.float32)
    state[f'{prefix}.bn.running_var'] = rng.uniform(0.001, 2, cout).astype(
        np.float32)
    state[f'{prefix}.bn.num_batches_tracked'] = np.array(0, np.int64)
  state['fc.weight'] = np.zeros((1008, 2048), np.float32)
  state['fc.bias'] = np.zeros((1008,), np.float32)
  return state


@pytest.fixture(scope='module')
def torch_state():
  return synthetic_pytorch_fid_state_dict()


@pytest.fixture(scope='module')
def converted_file(tmp_path_factory, torch_state):
  state = torch_state
  directory = tmp_path_factory.mktemp('inception')
  pth = directory / convert_inception.PYTORCH_FID_FILENAME
  torch_pickle_writer.save_torch_state_dict(state, pth)
  npz = directory / 'inception.npz'
  assert convert_inception.main(['--input', str(pth), '--output',
                                 str(npz)]) == 0
  return state, npz


def _torch_basic_conv(x, state, prefix, stride=1, padding=(0, 0)):
  """Numpy BasicConv2d on (H, W, Cin): OIHW cross-correlation, BN, ReLU."""
  weight = state[f'{prefix}.conv.weight'].astype(np.float64)
  cout, _, kh, kw = weight.shape
  ph, pw = padding
  padded = np.pad(x, ((ph, ph), (pw, pw), (0, 0)))
  out_h = (padded.shape[0] - kh) // stride + 1
  out_w = (padded.shape[1] - kw) // stride + 1
  out = np.zeros((out_h, out_w, cout))
  for i in range(out_h):
    for j in range(out_w):
      patch = padded[i * stride:i * stride + kh, j * stride:j * stride + kw]
      out[i, j] = np.einsum('hwc,ochw->o', patch, weight)
  bn = {f: state[f'{prefix}.bn.{f}'].astype(np.float64)
        for f in ('weight', 'bias', 'running_mean', 'running_var')}
  out = (out - bn['running_mean']) / np.sqrt(bn['running_var'] + 1e-3)
  return np.maximum(out * bn['weight'] + bn['bias'], 0.0)


def _torch_pool_3x3_same(x, kind):
  """avg_pool2d(3, 1, 1, count_include_pad=False) or max_pool2d(3, 1, 1)."""
  h, w, _ = x.shape
  out = np.zeros_like(x)
  for i in range(h):
    for j in range(w):
      window = x[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].reshape(-1, x.shape[2])
      out[i, j] = window.mean(0) if kind == 'avg' else window.max(0)
  return out


def _torch_inception_e(x, state, name, pool):
  conv = lambda t, n, p=(0, 0): _torch_basic_conv(t, state, f'{name}.{n}',
                                                  padding=p)
  three = conv(x, 'branch3x3_1')
  double = conv(conv(x, 'branch3x3dbl_1'), 'branch3x3dbl_2', (1, 1))
  return np.concatenate([
      conv(x, 'branch1x1'),
      conv(three, 'branch3x3_2a', (0, 1)), conv(three, 'branch3x3_2b', (1, 0)),
      conv(double, 'branch3x3dbl_3a', (0, 1)),
      conv(double, 'branch3x3dbl_3b', (1, 0)),
      conv(_torch_pool_3x3_same(x, pool), 'branch_pool')], axis=-1)


def _torch_inception_a(x, state, name):
  conv = lambda t, n, p=(0, 0): _torch_basic_conv(t, state, f'{name}.{n}',
                                                  padding=p)
  five = conv(conv(x, 'branch5x5_1'), 'branch5x5_2', (2, 2))
  double = conv(conv(conv(x, 'branch3x3dbl_1'), 'branch3x3dbl_2', (1, 1)),
                'branch3x3dbl_3', (1, 1))
  pool = conv(_torch_pool_3x3_same(x, 'avg'), 'branch_pool')
  return np.concatenate([conv(x, 'branch1x1'), five, double, pool], axis=-1)


def _torch_max_pool_3x3_stride2(x):
  out_h, out_w = (x.shape[0] - 3) // 2 + 1, (x.shape[1] - 3) // 2 + 1
  return np.array([[x[2 * i:2 * i + 3, 2 * j:2 * j + 3].max((0, 1))
                    for j in range(out_w)] for i in range(out_h)])


def _torch_inception_b(x, state, name):
  conv = lambda t, n, **kw: _torch_basic_conv(t, state, f'{name}.{n}', **kw)
  double = conv(conv(conv(x, 'branch3x3dbl_1'), 'branch3x3dbl_2',
                     padding=(1, 1)), 'branch3x3dbl_3', stride=2)
  return np.concatenate([conv(x, 'branch3x3', stride=2), double,
                         _torch_max_pool_3x3_stride2(x)], axis=-1)


def _torch_inception_c(x, state, name):
  conv = lambda t, n, p=(0, 0): _torch_basic_conv(t, state, f'{name}.{n}',
                                                  padding=p)
  seven = conv(conv(conv(x, 'branch7x7_1'), 'branch7x7_2', (0, 3)),
               'branch7x7_3', (3, 0))
  double = conv(x, 'branch7x7dbl_1')
  for layer, pad in (('2', (3, 0)), ('3', (0, 3)), ('4', (3, 0)),
                     ('5', (0, 3))):
    double = conv(double, f'branch7x7dbl_{layer}', pad)
  pool = conv(_torch_pool_3x3_same(x, 'avg'), 'branch_pool')
  return np.concatenate([conv(x, 'branch1x1'), seven, double, pool], axis=-1)


def _torch_inception_d(x, state, name):
  conv = lambda t, n, **kw: _torch_basic_conv(t, state, f'{name}.{n}', **kw)
  three = conv(conv(x, 'branch3x3_1'), 'branch3x3_2', stride=2)
  seven = conv(conv(conv(x, 'branch7x7x3_1'), 'branch7x7x3_2',
                    padding=(0, 3)), 'branch7x7x3_3', padding=(3, 0))
  seven = conv(seven, 'branch7x7x3_4', stride=2)
  return np.concatenate([three, seven, _torch_max_pool_3x3_stride2(x)],
                        axis=-1)


def test_grid_and_factorised_blocks_match_numpy_rederivation(converted_file):
  """Mixed_6a (B), Mixed_6b (C, 1x7/7x1) and Mixed_7a (D): orders and pads."""
  state, npz = converted_file
  model = inception.load_fid_inception(npz)
  rng = np.random.default_rng(4)
  x_b = rng.uniform(0, 1, (1, 5, 7, 288)).astype(np.float32)
  x_cd = rng.uniform(0, 1, (1, 5, 7, 768)).astype(np.float32)
  cases = [(model.Mixed_6a, _torch_inception_b, x_b, 'Mixed_6a', 768),
           (model.Mixed_6b, _torch_inception_c, x_cd, 'Mixed_6b', 768),
           (model.Mixed_7a, _torch_inception_d, x_cd, 'Mixed_7a', 1280)]
  for block, reference, x, name, channels in cases:
    got = np.asarray(block(x))[0]
    want = reference(x[0].astype(np.float64), state, name)
    assert got.shape == want.shape and got.shape[-1] == channels, name
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=name)


def test_convert_state_dict_names_transposes_and_folding(torch_state):
  state = torch_state
  converted = convert_inception.convert_state_dict(state)
  assert len(converted) == 2 * len(TORCH_LAYOUT) == 188
  prefix = 'Mixed_6b.branch7x7_2'  # a (1, 7) kernel: transposes show up
  weight = state[f'{prefix}.conv.weight']
  scale = state[f'{prefix}.bn.weight'] / np.sqrt(
      state[f'{prefix}.bn.running_var'] + 1e-3)
  kernel = converted[f'{prefix}.kernel']
  assert kernel.shape == (1, 7, 128, 128)
  for o, i, kx in [(0, 0, 0), (5, 17, 6), (127, 3, 2)]:
    assert np.isclose(kernel[0, kx, i, o], weight[o, i, 0, kx] * scale[o],
                      rtol=1e-6)
  want_bias = state[f'{prefix}.bn.bias'] - state[
      f'{prefix}.bn.running_mean'] * scale
  np.testing.assert_allclose(converted[f'{prefix}.bias'], want_bias, rtol=1e-5,
                             atol=1e-7)


def test_convert_state_dict_rejects_wrong_files(torch_state):
  state = torch_state
  missing = dict(state)
  del missing['Mixed_7c.branch_pool.bn.running_var']
  with pytest.raises(ValueError, match='missing'):
    convert_inception.convert_state_dict(missing)
  extra = dict(state, **{'Mixed_8a.conv.weight': np.zeros(1, np.float32)})
  with pytest.raises(ValueError, match='unexpected'):
    convert_inception.convert_state_dict(extra)
  wrong = dict(state)
  wrong['Mixed_5b.branch_pool.conv.weight'] = np.zeros((64, 192, 1, 1),
                                                       np.float32)
  with pytest.raises(ValueError, match='does not match'):
    convert_inception.convert_state_dict(wrong)


def test_converted_blocks_match_numpy_rederivation(converted_file):
  state, npz = converted_file
  model = inception.load_fid_inception(npz)
  rng = np.random.default_rng(3)
  # FIDInceptionE_2 (max pool branch) and FIDInceptionA (avg pool excl. pad).
  x_e = rng.uniform(0, 1, (2, 4, 3, 2048)).astype(np.float32)
  got_e = np.asarray(model.Mixed_7c(x_e))
  x_a = rng.uniform(0, 1, (1, 4, 5, 192)).astype(np.float32)
  got_a = np.asarray(model.Mixed_5b(x_a))
  want_e = np.stack([_torch_inception_e(x.astype(np.float64), state,
                                        'Mixed_7c', 'max') for x in x_e])
  want_a = _torch_inception_a(x_a[0].astype(np.float64), state, 'Mixed_5b')
  assert got_e.shape == (2, 4, 3, 2048) and got_a.shape == (1, 4, 5, 256)
  np.testing.assert_allclose(got_e, want_e, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(got_a[0], want_a, rtol=1e-4, atol=1e-4)
  # The E_1 variant (avg pool) must differ from E_2 on the same input.
  avg_variant = _torch_inception_e(x_e[0].astype(np.float64), state,
                                   'Mixed_7c', 'avg')
  assert np.abs(avg_variant - want_e[0]).max() > 1e-3
  # A stem conv with stride 2 and no padding (Conv2d_1a_3x3).
  image = rng.uniform(-1, 1, (1, 7, 8, 3)).astype(np.float32)
  np.testing.assert_allclose(
      np.asarray(model.Conv2d_1a_3x3(image))[0],
      _torch_basic_conv(image[0].astype(np.float64), state, 'Conv2d_1a_3x3',
                        stride=2), rtol=1e-4, atol=1e-5)


def test_load_rejects_incomplete_npz(converted_file, tmp_path):
  _, npz = converted_file
  with np.load(npz) as arrays:
    partial = {k: arrays[k] for k in arrays.files if 'Mixed_7c' not in k}
  broken = tmp_path / 'broken.npz'
  np.savez(broken, **partial)
  with pytest.raises(ValueError, match='missing'):
    inception.load_fid_inception(broken)
  with pytest.raises(FileNotFoundError, match='convert_inception'):
    inception.load_fid_inception(tmp_path / 'absent.npz')


def test_cli_reports_bad_files_in_one_line(tmp_path, capsys):
  not_a_checkpoint = tmp_path / 'weights.pth'
  not_a_checkpoint.write_bytes(b'definitely not a torch file')
  assert convert_inception.main(['--input', str(not_a_checkpoint),
                                 '--output', str(tmp_path / 'o.npz')]) == 1
  message = capsys.readouterr().err.strip()
  assert message.startswith('convert_inception: error:') and '\n' not in message
  # A readable .pth that is not the FID Inception (e.g. another network).
  other = tmp_path / 'other.pth'
  torch_pickle_writer.save_torch_state_dict(
      {'features.0.weight': np.zeros((4, 3, 3, 3), np.float32)}, other)
  assert convert_inception.main(['--input', str(other), '--output',
                                 str(tmp_path / 'o.npz')]) == 1
  assert 'missing' in capsys.readouterr().err
  assert not (tmp_path / 'o.npz').exists()
