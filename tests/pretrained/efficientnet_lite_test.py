"""EfficientNet-Lite0: BatchNorm folding and TF padding against numpy
re-derivations, and the real ImageNet weights against recognisable photos
(top-5 class names), colour and gray."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from scsnet_jax import image_io
from scsnet_jax.pretrained import efficientnet_lite as lite
from scsnet_jax.pretrained import efficientnet_weights as weights
from tests import helpers

# Debian 12 photos (shared/corpus/photos-debian12.md): puzzle-jigsaw, a
# KDE wallpaper (plasma-workspace-wallpapers), palapeli-data.
CAT = '/usr/share/puzzle-jigsaw/samples/cat-animal-cat-portrait-mackerel.jpg'
CUPS = '/usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg'
BEE = '/usr/share/palapeli/collection/european-honey-bee.jpg'
LEMONS = '/usr/share/palapeli/collection/citrus-fruits.jpg'


def _conv_nchw_numpy(x, w, stride, pad):
  """Plain loops: x (C, H, W), w (O, C/groups... ) depthwise only here:
  w (C, 1, k, k); pad ((top, bottom), (left, right))."""
  x = np.pad(x, ((0, 0),) + pad)
  k = w.shape[-1]
  out_h = (x.shape[1] - k) // stride + 1
  out_w = (x.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], out_h, out_w))
  for i in range(out_h):
    for j in range(out_w):
      patch = x[:, i * stride:i * stride + k, j * stride:j * stride + k]
      out[:, i, j] = (patch * w[:, 0]).sum(axis=(1, 2))
  return out


def test_folded_batchnorm_and_tf_same_padding_match_numpy():
  rng = np.random.default_rng(0)
  channels, k = 3, 3
  x = rng.normal(size=(channels, 8, 8))
  w = rng.normal(size=(channels, 1, k, k))
  state = {'bn.weight': rng.uniform(0.5, 2, channels),
           'bn.bias': rng.normal(size=channels),
           'bn.running_mean': rng.normal(size=channels),
           'bn.running_var': rng.uniform(0.1, 3, channels)}
  # TF SAME, stride 2 on 8 px: total padding 1, all of it after.
  conv = _conv_nchw_numpy(x, w, 2, ((0, 1), (0, 1)))
  assert lite._same_padding(8, 3, 2) == (0, 1, 4)
  assert lite._same_padding(7, 5, 1) == (2, 2, 7)
  want = ((conv - state['bn.running_mean'][:, None, None])
          / np.sqrt(state['bn.running_var'] + 1e-3)[:, None, None]
          * state['bn.weight'][:, None, None] + state['bn.bias'][:, None, None])
  kernel, bias = weights.fold_batchnorm(w, state, 'bn')
  layer = {'kernel': jnp.asarray(np.transpose(kernel, (2, 3, 1, 0)),
                                 jnp.float32),
           'bias': jnp.asarray(bias, jnp.float32)}
  inputs = jnp.asarray(x.transpose(1, 2, 0)[None], jnp.float32)
  for got in (lite._depthwise(inputs, layer, stride=2),
              lite._conv(inputs, layer, stride=2, groups=channels)):
    np.testing.assert_allclose(np.asarray(got[0]).transpose(2, 0, 1), want,
                               rtol=1e-4, atol=1e-4)
  # torch's symmetric padding (1, 1) would give another answer.
  symmetric = _conv_nchw_numpy(x, w, 2, ((1, 1), (1, 1)))
  assert not np.allclose(symmetric[:, :4, :4], conv)


@pytest.fixture(scope='module')
def classify():
  params = jax.tree.map(jnp.asarray, helpers.efficientnet_lite0_params_or_skip())
  names = weights.imagenet_class_names()
  forward = jax.jit(lite.efficientnet_lite0)

  def top5(path, gray=False):
    if not os.path.exists(path):
      pytest.skip(f'{path} absent (apt-get install the Debian package)')
    image = Image.fromarray(image_io.read_image(path, draft_size=(448, 448)))
    scale = 256 / min(image.size)   # resize 256, centre crop 224
    image = image.resize((round(image.width * scale),
                          round(image.height * scale)), Image.BICUBIC)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    x = np.asarray(image.crop((left, top, left + 224, top + 224)),
                   np.float32) / 255
    if gray:
      x = np.repeat(x.mean(-1, keepdims=True), 3, -1)
    logits = np.asarray(forward(params, jnp.asarray(x[None]))['logits'][0])
    return [names[i] for i in np.argsort(-logits)[:5]]
  return top5


@pytest.mark.parametrize('gray', [False, True])
def test_top5_classes_of_recognisable_photos(classify, gray):
  assert {'tabby cat', 'tiger cat'} <= set(classify(CAT, gray))
  assert classify(CUPS, gray)[0] == 'cup'
  assert classify(BEE, gray)[0] == 'bee'
  assert classify(LEMONS, gray)[0] == 'lemon'
  assert 'orange' in classify(LEMONS, gray)
