"""EfficientNet-Lite0 (ImageNet classifier) as a pure function of its params.

Used by ``scsnet_jax.retrieval`` to describe what is in a photo, so that a
gray input can find colour photos of the same kind of scene. Like VGG16
(``vgg.py``), a frozen network is a plain function of a params pytree, not an
NNX module: it is only ever run, jitted, on batches.

Architecture (Tan & Le 2019, "Lite" variant of the TF TPU repository, as
ported by lukemelas/ml-illustrated ``efficientnet_lite_pytorch``):
- stem: 3x3 conv stride 2 -> 32, BatchNorm, ReLU6;
- 16 MBConv blocks (``BLOCKS``): 1x1 expand (ratio 6, none in block 0),
  BatchNorm, ReLU6; kxk depthwise (stride 1 or 2), BatchNorm, ReLU6; 1x1
  project, BatchNorm, no activation; identity skip where stride is 1 and
  widths match. Lite drops squeeze-and-excitation and uses ReLU6, not swish;
- head: 1x1 conv 320 -> 1280, BatchNorm, ReLU6; global average pool; fc to
  the 1000 ImageNet classes.
Every BatchNorm (eps 1e-3, inference mode) is folded into its conv's kernel
and a bias by ``efficientnet_weights``. Convolutions use TF "SAME" padding
(more padding after than before when the total is odd): the weights were
converted from TF and the PyTorch port pads the same way
(``Conv2dStaticSamePadding``); torch's symmetric padding would shift every
strided layer by one pixel.

Input: sRGB in [0, 1], (B, H, W, 3); normalised here as the TF Lite models
were trained, ``(255 x - 127) / 128`` (``INPUT_MEAN``, ``INPUT_STD``).
Params layout (HWIO kernels, NHWC activations)::

  {'stem': {'kernel': (3, 3, 3, 32), 'bias': (32,)},
   'blocks': [{'expand': {...} (absent in block 0), 'depthwise':
               {'kernel': (k, k, 1, C), 'bias': (C,)}, 'project': {...}}, ...],
   'head': {'kernel': (1, 1, 320, 1280), 'bias': (1280,)},
   'fc': {'kernel': (1280, 1000), 'bias': (1000,)}}
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# TF Lite models' input convention: 8-bit value v -> (v - 127) / 128.
INPUT_MEAN = 127.0 / 255.0
INPUT_STD = 128.0 / 255.0
INPUT_SIZE = 224          # the resolution Lite0 was trained at
STEM_WIDTH = 32
HEAD_WIDTH = 1280
NUM_CLASSES = 1000
BN_EPSILON = 1e-3


class Block(NamedTuple):
  """One MBConv block: depthwise kernel size, stride, expansion ratio,
  input and output channels."""
  kernel: int
  stride: int
  expand: int
  cin: int
  cout: int


def _stage(repeats, kernel, stride, expand, cin, cout):
  first = Block(kernel, stride, expand, cin, cout)
  return [first] + [Block(kernel, 1, expand, cout, cout)] * (repeats - 1)


# Lite0: width and depth multipliers 1.0 (the 7 stages of B0, no SE).
BLOCKS: tuple[Block, ...] = tuple(
    _stage(1, 3, 1, 1, 32, 16) + _stage(2, 3, 2, 6, 16, 24) +
    _stage(2, 5, 2, 6, 24, 40) + _stage(3, 3, 2, 6, 40, 80) +
    _stage(3, 5, 1, 6, 80, 112) + _stage(4, 5, 2, 6, 112, 192) +
    _stage(1, 3, 1, 6, 192, 320))
LAST_BLOCK_WIDTH = BLOCKS[-1].cout   # 320: the spatial features' width


def expected_shapes() -> dict:
  """The params pytree's shapes (what ``efficientnet_weights`` must make)."""
  def conv(k, cin, cout):
    return {'kernel': (k, k, cin, cout), 'bias': (cout,)}
  blocks = []
  for block in BLOCKS:
    hidden = block.cin * block.expand
    entry = {}
    if block.expand != 1:
      entry['expand'] = conv(1, block.cin, hidden)
    entry['depthwise'] = conv(block.kernel, 1, hidden)
    entry['project'] = conv(1, hidden, block.cout)
    blocks.append(entry)
  return {'stem': conv(3, 3, STEM_WIDTH), 'blocks': blocks,
          'head': conv(1, LAST_BLOCK_WIDTH, HEAD_WIDTH),
          'fc': {'kernel': (HEAD_WIDTH, NUM_CLASSES), 'bias': (NUM_CLASSES,)}}


def _conv(x, layer, stride=1, groups=1):
  y = jax.lax.conv_general_dilated(
      x, layer['kernel'], (stride, stride), 'SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=groups)
  return y + layer['bias']


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
  """TF "SAME": (before, after, output size); the odd pixel goes after."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2, out


def _depthwise(x, layer, stride=1):
  """Depthwise kxk conv (kernel (k, k, 1, C)) as k*k shifted multiply-adds.

  The same sums as ``conv_general_dilated(feature_group_count=C)`` (to
  float32 rounding; tested), but XLA fuses them into one loop: 6x faster
  on CPU (12 vs 72 ms per 224 px image, 2 cores), where the grouped conv
  was most of the network's time."""
  k = layer['kernel'].shape[0]
  top, bottom, out_h = _same_padding(x.shape[1], k, stride)
  left, right, out_w = _same_padding(x.shape[2], k, stride)
  padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  kernel = layer['kernel'][:, :, 0, :]
  total = 0.0
  for i in range(k):
    for j in range(k):
      window = padded[:, i:i + (out_h - 1) * stride + 1:stride,
                      j:j + (out_w - 1) * stride + 1:stride, :]
      total = total + window * kernel[i, j]
  return total + layer['bias']


def _relu6(x):
  return jnp.clip(x, 0.0, 6.0)


def _block(x, layer, block: Block):
  y = x
  if 'expand' in layer:
    y = _relu6(_conv(y, layer['expand']))
  y = _relu6(_depthwise(y, layer['depthwise'], block.stride))
  y = _conv(y, layer['project'])
  if block.stride == 1 and block.cin == block.cout:
    y = y + x
  return y


def efficientnet_lite0(params, images) -> dict[str, jax.Array]:
  """sRGB in [0, 1], (B, H, W, 3) -> features and logits.

  Returns (for H = W = 224; any size works, strides total 32):
    'blocks': (B, H/32, W/32, 320), the last MBConv block's output (no
      activation; spatial layout features);
    'head': (B, H/32, W/32, 1280), after the head conv's ReLU6;
    'pooled': (B, 1280), 'head' averaged over space (the classifier's input);
    'logits': (B, 1000), ImageNet class scores (softmax not applied).
  """
  x = (images - INPUT_MEAN) / INPUT_STD
  x = _relu6(_conv(x, params['stem'], stride=2))
  for layer, block in zip(params['blocks'], BLOCKS):
    x = _block(x, layer, block)
  blocks = x
  head = _relu6(_conv(x, params['head']))
  pooled = jnp.mean(head, axis=(1, 2))
  logits = pooled @ params['fc']['kernel'] + params['fc']['bias']
  return {'blocks': blocks, 'head': head, 'pooled': pooled, 'logits': logits}
