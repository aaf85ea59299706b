"""InceptionV3 pool features (2048-d) for FID, as pytorch-fid computes them.

This is the "FID Inception" (the TF 2015-12-05 graph that pytorch-fid ports):
torchvision's InceptionV3 with the patched blocks FIDInceptionA/C/E_1 (3x3
average pool, stride 1, padding 1, that ignores the padded zeros) and
FIDInceptionE_2 (3x3 max pool instead). Every torchvision ``BasicConv2d``
(conv without bias + BatchNorm eps 1e-3 + ReLU) is one ``FoldedConv`` here: the
converter folds the inference-mode BatchNorm into the kernel and a bias.
Attribute names copy torchvision's (``Mixed_5b.branch1x1``) so the weight
file's names map one to one. Layout NHWC; weights are loaded with
``load_fid_inception`` from the npz written by
``python -m scsnet_jax.pretrained.convert_inception``.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

FID_INPUT_SIZE = 299
FEATURE_DIM = 2048
_PRECISION = jax.lax.Precision.HIGHEST  # no TF32/bf16 passes: FID is touchy


def _pair(value):
  return (value, value) if isinstance(value, int) else tuple(value)


class FoldedConv(nnx.Module):
  """Conv (HWIO kernel) + bias + ReLU: a BasicConv2d with BatchNorm folded."""

  def __init__(self, in_channels, out_channels, kernel_size, *, strides=1,
               padding=0, rngs: nnx.Rngs):
    kh, kw = _pair(kernel_size)
    ph, pw = _pair(padding)
    self.strides = _pair(strides)
    self.padding = ((ph, ph), (pw, pw))
    init = nnx.initializers.lecun_normal()
    self.kernel = nnx.Param(init(rngs.params(),
                                 (kh, kw, in_channels, out_channels)))
    self.bias = nnx.Param(jnp.zeros((out_channels,)))

  def __call__(self, x):
    """(B, H, W, Cin) -> (B, H', W', Cout)."""
    y = jax.lax.conv_general_dilated(
        x, self.kernel[...], self.strides, self.padding,
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'), precision=_PRECISION)
    return jax.nn.relu(y + self.bias[...])


def max_pool(x, window, stride, padding=0):
  """Max pool over H, W; padding counts as -inf (as torch)."""
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                               (1, stride, stride, 1), pad)


def avg_pool_exclude_pad(x, window=3, padding=1):
  """Stride-1 average pool that divides by the count of real pixels only.

  torch's ``avg_pool2d(..., count_include_pad=False)``, i.e. TF's SAME pool.
  """
  pad = ((padding, padding), (padding, padding))
  return nnx.avg_pool(x, (window, window), strides=(1, 1), padding=pad,
                      count_include_pad=False).astype(x.dtype)


class InceptionA(nnx.Module):
  """FIDInceptionA: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool(excl. pad)-1x1."""

  def __init__(self, in_channels, pool_features, *, rngs):
    conv = functools.partial(FoldedConv, rngs=rngs)
    self.branch1x1 = conv(in_channels, 64, 1)
    self.branch5x5_1 = conv(in_channels, 48, 1)
    self.branch5x5_2 = conv(48, 64, 5, padding=2)
    self.branch3x3dbl_1 = conv(in_channels, 64, 1)
    self.branch3x3dbl_2 = conv(64, 96, 3, padding=1)
    self.branch3x3dbl_3 = conv(96, 96, 3, padding=1)
    self.branch_pool = conv(in_channels, pool_features, 1)

  def __call__(self, x):
    five = self.branch5x5_2(self.branch5x5_1(x))
    double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    pool = self.branch_pool(avg_pool_exclude_pad(x))
    return jnp.concatenate([self.branch1x1(x), five, double, pool], axis=-1)


class InceptionB(nnx.Module):
  """Grid reduction 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | maxpool 3x3/2."""

  def __init__(self, in_channels, *, rngs):
    conv = functools.partial(FoldedConv, rngs=rngs)
    self.branch3x3 = conv(in_channels, 384, 3, strides=2)
    self.branch3x3dbl_1 = conv(in_channels, 64, 1)
    self.branch3x3dbl_2 = conv(64, 96, 3, padding=1)
    self.branch3x3dbl_3 = conv(96, 96, 3, strides=2)

  def __call__(self, x):
    double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return jnp.concatenate([self.branch3x3(x), double, max_pool(x, 3, 2)],
                           axis=-1)


class InceptionC(nnx.Module):
  """FIDInceptionC: factorised 7x7 branches, avgpool (excl. pad) branch."""

  def __init__(self, in_channels, channels_7x7, *, rngs):
    conv = functools.partial(FoldedConv, rngs=rngs)
    c7 = channels_7x7
    self.branch1x1 = conv(in_channels, 192, 1)
    self.branch7x7_1 = conv(in_channels, c7, 1)
    self.branch7x7_2 = conv(c7, c7, (1, 7), padding=(0, 3))
    self.branch7x7_3 = conv(c7, 192, (7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = conv(in_channels, c7, 1)
    self.branch7x7dbl_2 = conv(c7, c7, (7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = conv(c7, c7, (1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = conv(c7, c7, (7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = conv(c7, 192, (1, 7), padding=(0, 3))
    self.branch_pool = conv(in_channels, 192, 1)

  def __call__(self, x):
    seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    double = self.branch7x7dbl_1(x)
    for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3,
                  self.branch7x7dbl_4, self.branch7x7dbl_5):
      double = layer(double)
    pool = self.branch_pool(avg_pool_exclude_pad(x))
    return jnp.concatenate([self.branch1x1(x), seven, double, pool], axis=-1)


class InceptionD(nnx.Module):
  """Grid reduction 17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool 3x3/2."""

  def __init__(self, in_channels, *, rngs):
    conv = functools.partial(FoldedConv, rngs=rngs)
    self.branch3x3_1 = conv(in_channels, 192, 1)
    self.branch3x3_2 = conv(192, 320, 3, strides=2)
    self.branch7x7x3_1 = conv(in_channels, 192, 1)
    self.branch7x7x3_2 = conv(192, 192, (1, 7), padding=(0, 3))
    self.branch7x7x3_3 = conv(192, 192, (7, 1), padding=(3, 0))
    self.branch7x7x3_4 = conv(192, 192, 3, strides=2)

  def __call__(self, x):
    three = self.branch3x3_2(self.branch3x3_1(x))
    seven = self.branch7x7x3_1(x)
    for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
      seven = layer(seven)
    return jnp.concatenate([three, seven, max_pool(x, 3, 2)], axis=-1)


class InceptionE(nnx.Module):
  """FIDInceptionE_1 (``pool='avg'``, excl. pad) or FIDInceptionE_2 (``'max'``)."""

  def __init__(self, in_channels, *, pool: str, rngs):
    if pool not in ('avg', 'max'):
      raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}.")
    self.pool = pool
    conv = functools.partial(FoldedConv, rngs=rngs)
    self.branch1x1 = conv(in_channels, 320, 1)
    self.branch3x3_1 = conv(in_channels, 384, 1)
    self.branch3x3_2a = conv(384, 384, (1, 3), padding=(0, 1))
    self.branch3x3_2b = conv(384, 384, (3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = conv(in_channels, 448, 1)
    self.branch3x3dbl_2 = conv(448, 384, 3, padding=1)
    self.branch3x3dbl_3a = conv(384, 384, (1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = conv(384, 384, (3, 1), padding=(1, 0))
    self.branch_pool = conv(in_channels, 192, 1)

  def __call__(self, x):
    three = self.branch3x3_1(x)
    three = jnp.concatenate(
        [self.branch3x3_2a(three), self.branch3x3_2b(three)], axis=-1)
    double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    double = jnp.concatenate(
        [self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double)], axis=-1)
    pooled = (avg_pool_exclude_pad(x) if self.pool == 'avg' else
              max_pool(x, 3, 1, padding=1))
    return jnp.concatenate(
        [self.branch1x1(x), three, double, self.branch_pool(pooled)], axis=-1)


def bilinear_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out, in) weights of torch's bilinear resize, align_corners=False.

  Source coordinate (i + 0.5) * in/out - 0.5, clamped below at 0; no
  antialiasing, so downsampling samples (as ``F.interpolate`` does).
  """
  source = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
  source = np.maximum(source, 0.0)
  lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
  upper = np.minimum(lower + 1, in_size - 1)
  frac = source - lower
  matrix = np.zeros((out_size, in_size), np.float64)
  np.add.at(matrix, (np.arange(out_size), lower), 1.0 - frac)
  np.add.at(matrix, (np.arange(out_size), upper), frac)
  return matrix


def resize_like_pytorch_fid(images, size=FID_INPUT_SIZE):
  """(B, H, W, C) -> (B, size, size, C), bilinear as pytorch-fid resizes."""
  rows = jnp.asarray(bilinear_resize_matrix(images.shape[1], size),
                     images.dtype)
  cols = jnp.asarray(bilinear_resize_matrix(images.shape[2], size),
                     images.dtype)
  return jnp.einsum('ih,bhwc,jw->bijc', rows, images, cols,
                    precision=_PRECISION)


class FIDInceptionV3(nnx.Module):
  """Images (B, H, W, 3) sRGB in [0, 1] -> pool features (B, 2048)."""

  def __init__(self, *, rngs: nnx.Rngs):
    conv = functools.partial(FoldedConv, rngs=rngs)
    self.Conv2d_1a_3x3 = conv(3, 32, 3, strides=2)
    self.Conv2d_2a_3x3 = conv(32, 32, 3)
    self.Conv2d_2b_3x3 = conv(32, 64, 3, padding=1)
    self.Conv2d_3b_1x1 = conv(64, 80, 1)
    self.Conv2d_4a_3x3 = conv(80, 192, 3)
    self.Mixed_5b = InceptionA(192, 32, rngs=rngs)
    self.Mixed_5c = InceptionA(256, 64, rngs=rngs)
    self.Mixed_5d = InceptionA(288, 64, rngs=rngs)
    self.Mixed_6a = InceptionB(288, rngs=rngs)
    self.Mixed_6b = InceptionC(768, 128, rngs=rngs)
    self.Mixed_6c = InceptionC(768, 160, rngs=rngs)
    self.Mixed_6d = InceptionC(768, 160, rngs=rngs)
    self.Mixed_6e = InceptionC(768, 192, rngs=rngs)
    self.Mixed_7a = InceptionD(768, rngs=rngs)
    self.Mixed_7b = InceptionE(1280, pool='avg', rngs=rngs)
    self.Mixed_7c = InceptionE(2048, pool='max', rngs=rngs)

  def trunk(self, x):
    """(B, 299, 299, 3) in [-1, 1] -> (B, 8, 8, 2048) before the pool."""
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = max_pool(x, 3, 2)
    x = max_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, 2)
    for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                  self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                  self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
      x = block(x)
    return x

  def __call__(self, images):
    x = resize_like_pytorch_fid(images.astype(jnp.float32))
    x = 2.0 * x - 1.0
    return jnp.mean(self.trunk(x), axis=(1, 2))


def folded_conv_shapes(model: nnx.Module | None = None) -> dict[str, tuple]:
  """Torch-style prefix ('Mixed_5b.branch1x1') -> kernel shape (HWIO)."""
  if model is None:
    model = nnx.eval_shape(lambda: FIDInceptionV3(rngs=nnx.Rngs(0)))
  shapes = {}
  for path, node in nnx.iter_graph(model):
    if isinstance(node, FoldedConv):
      shapes['.'.join(str(p) for p in path)] = tuple(node.kernel.shape)
  return shapes


def load_fid_inception(weights_path: str | os.PathLike) -> FIDInceptionV3:
  """Builds the model from a converted npz (keys '<prefix>.kernel'/'.bias')."""
  if not os.path.exists(weights_path):
    raise FileNotFoundError(
        f'no Inception weights at {weights_path}; convert pytorch-fid\'s '
        'pt_inception-2015-12-05-6726825d.pth with python -m '
        'scsnet_jax.pretrained.convert_inception.')
  model = nnx.eval_shape(lambda: FIDInceptionV3(rngs=nnx.Rngs(0)))
  with np.load(weights_path, allow_pickle=False) as arrays:
    weights = {k: arrays[k] for k in arrays.files}
  modules = {'.'.join(str(p) for p in path): node
             for path, node in nnx.iter_graph(model)
             if isinstance(node, FoldedConv)}
  expected = {f'{prefix}.{name}' for prefix in modules
              for name in ('kernel', 'bias')}
  if set(weights) != expected:
    missing = sorted(expected - set(weights))[:3]
    extra = sorted(set(weights) - expected)[:3]
    raise ValueError(f'{weights_path} is not a converted FID Inception: '
                     f'missing {missing}, unexpected {extra}.')
  for prefix, module in modules.items():
    for name in ('kernel', 'bias'):
      variable = getattr(module, name)
      value = weights[f'{prefix}.{name}']
      if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(f'{prefix}.{name}: shape {value.shape}, expected '
                         f'{variable.shape}.')
      variable.set_value(jnp.asarray(value, jnp.float32))
  return model


def make_feature_fn(model: FIDInceptionV3):
  """A jitted function uint8 or [0,1] images (B,H,W,3) -> (B, 2048) float32."""
  graphdef, state = nnx.split(model)

  @jax.jit
  def features(state, images):
    if images.dtype == jnp.uint8:
      images = images.astype(jnp.float32) / 255.0
    return nnx.merge(graphdef, state)(images)

  feature_fn = lambda images: features(state, images)
  feature_fn.feature_dim = FEATURE_DIM
  return feature_fn
