"""When things happen in a run: its length, each step's mode, and from which
step the adversarial and perceptual terms train and the spike detector
judges. Pure functions of the config (``config_lib.get_base_config``'s
``train``, ``loss`` and ``optimizer`` sections); the loop, the optimizer's
schedule and the health monitor ask here.
"""

from __future__ import annotations

import math

import ml_collections

from scsnet_jax.errors import UserError


def total_steps(config: ml_collections.ConfigDict) -> int:
  """Number of training steps this config asks for (a clear error if none)."""
  if config.train.steps > 0:
    return int(config.train.steps)
  examples = config.train.num_train_examples
  if examples <= 0:
    raise UserError('set config.train.steps, or config.train.num_epochs and '
                     'config.train.num_train_examples')
  return int(math.ceil(config.train.num_epochs * examples /
                       config.data.global_batch_size))


def mode_for_step(config: ml_collections.ConfigDict, step: int) -> bool:
  """True for a referential step, False for an automatic one."""
  schedule = config.train.mode_schedule
  if schedule == 'alternate':
    return step % 2 == 1
  return schedule == 'referential'


def gan_active(config: ml_collections.ConfigDict, step: int) -> bool:
  """Does ``step`` train with the adversarial term?

  False during the PSNR warm-up (``loss.gan_start_step`` steps without it,
  as ESRGAN trains) and whenever the adversarial weight is 0: then the
  discriminator is not run at all. The perceptual term has its own
  ``perceptual_active``.
  """
  return (bool(config.loss.adversarial_weight) and
          step >= int(config.loss.gan_start_step))


def settling_steps(config: ml_collections.ConfigDict) -> int:
  """Steps the spike detector summarises instead of judging one by one:
  ``train.spike_check_from`` - 1, or by default twice the learning-rate
  warm-up (train/health.HealthMonitor)."""
  start = int(config.train.get('spike_check_from', -1))
  if start >= 0:
    return max(0, start - 1)
  return 2 * int(config.optimizer.warmup_steps)


def perceptual_active(config: ml_collections.ConfigDict, step: int) -> bool:
  """Does ``step`` train with the perceptual term? From
  ``loss.perceptual_start_step``, or with the GAN when that is -1."""
  loss = config.loss
  start = int(loss.perceptual_start_step)
  if start < 0:
    start = int(loss.gan_start_step)
  return bool(loss.perceptual_weight) and step >= start
