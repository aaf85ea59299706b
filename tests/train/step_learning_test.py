"""Catches a network that stops learning: the real train step on a fixed
batch of real photo crops (scikit-image's, through the input pipeline).

- 140 steps lower the content loss clearly and bring the L channel above
  bicubic on that batch (the CPU recipe: residual L, no GAN);
- referential steps reach the reference branch: with weight decay off, the
  reference encoder and PVCAttn move in referential steps and stay put in
  automatic ones, and after a few updates the output of the residual model
  (which ignores the reference exactly at initialisation) depends on it;
- a step with the GAN inactive leaves the discriminator untouched.
"""


import jax
import numpy as np
import pytest

from scsnet_jax.train import schedule
from scsnet_jax import config_lib, sharding
from scsnet_jax.data import pipeline as input_pipeline
from scsnet_jax.train import state as train_state
from scsnet_jax.train import step as train_step
from scsnet_jax.models import bicubic
from tests.paths import TEST_CONFIG
from tests import helpers

REFERENCE_BRANCH = ('reference_encoder', 'pvc_attention')


def _recipe_config():
  """configs/test.py (shallow model) with the CPU recipe's learning levers."""
  config = helpers.with_shallow_model(
      config_lib.load_sibling_config(TEST_CONFIG, 'test'))
  config.model.luminance_residual = True
  config.loss.perceptual_weight = 0.0
  config.loss.adversarial_weight = 0.0
  config.optimizer.learning_rate = 3e-4
  config.optimizer.weight_decay = 0.0
  config.data.crop_size = 48
  return config


@pytest.fixture(scope='module')
def setup():
  config = _recipe_config()
  mesh = sharding.create_mesh(jax.devices()[:1])
  local = input_pipeline.model_inputs(next(input_pipeline.create_iterator(
      config.data, 'train', global_batch_size=4, process_index=0,
      process_count=1)))
  networks = train_state.build_networks(config)
  step = train_step.make_train_step(config, mesh, networks)
  return dict(config=config, mesh=mesh, local=local, step=step,
              networks=networks,
              batch=sharding.global_batch(local, mesh))


def _l_psnr(nlab, target):
  """PSNR of CIE L (0-100, peak 100) over the batch."""
  predicted = np.clip((np.asarray(nlab)[..., 0] + 1) * 50, 0, 100)
  true = (np.asarray(target)[..., 0] + 1) * 50
  return 10 * np.log10(100**2 / np.mean((predicted - true)**2))


def _render(networks, params, batch, referential):
  return jax.jit(train_step.generate, static_argnums=(0, 3))(
      networks, params, batch, referential)


def test_content_loss_falls_and_l_beats_bicubic(setup):
  config, mesh, local = setup['config'], setup['mesh'], setup['local']
  state = train_state.create_train_state(setup['networks'], config, mesh)
  target = local['target']
  bicubic_l = np.asarray(bicubic.resize(local['gray'], target.shape[1:3]))
  bicubic_psnr = _l_psnr(np.concatenate([bicubic_l, 0 * target[..., 1:]],
                                        -1), target)
  first = _render(
      setup['networks'], state.generator_params, setup['batch'], False)
  # Residual L with a zero-initialised head: an untrained model is bicubic.
  np.testing.assert_allclose(_l_psnr(first, target), bicubic_psnr, atol=1e-3)
  losses = []
  # Chroma is learnt first; L leaves bicubic after ~100 steps (measured:
  # +0.1 dB at 100, +0.6 at 125, +1.5 at 150).
  for _ in range(140):
    state, metrics = setup['step'](state, setup['batch'], False, False)
    losses.append(float(metrics['content_loss']))
  assert losses[-1] < 0.7 * losses[0], losses[::10]
  out = _render(
      setup['networks'], state.generator_params, setup['batch'], False)
  assert _l_psnr(out, target) > bicubic_psnr + 0.3, (
      _l_psnr(out, target), bicubic_psnr)


def _branch_change(before, after):
  return {name: max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(before[name]), jax.tree.leaves(after[name])))
          for name in REFERENCE_BRANCH}


def test_reference_branch_learns_only_in_referential_steps(setup):
  config, mesh = setup['config'], setup['mesh']
  state = train_state.create_train_state(setup['networks'], config, mesh)
  batch = setup['batch']
  other = dict(batch)
  other['reference'] = sharding.global_batch(
      {'reference': np.ascontiguousarray(setup['local']['reference'][::-1])},
      mesh)['reference']
  # Zero-initialised head: the output ignores the reference exactly.
  np.testing.assert_array_equal(
      np.asarray(_render(
          setup['networks'], state.generator_params, batch, True)),
      np.asarray(_render(
          setup['networks'], state.generator_params, other, True)))
  # Automatic steps give the branch no gradient (and, weight decay off, no
  # update: Adam's moments stay 0); they also move the head off zero.
  before = jax.device_get(state.generator_params)
  for _ in range(2):
    state, _ = setup['step'](state, batch, False, False)
  after_automatic = jax.device_get(state.generator_params)
  assert max(_branch_change(before, after_automatic).values()) == 0.0
  state, _ = setup['step'](state, batch, True, False)    # referential
  changes = _branch_change(after_automatic,
                           jax.device_get(state.generator_params))
  assert all(change > 0 for change in changes.values()), changes
  a = np.asarray(_render(
      setup['networks'], state.generator_params, batch, True))
  b = np.asarray(_render(
      setup['networks'], state.generator_params, other, True))
  assert np.abs(a - b).mean() > 1e-5


def test_inactive_gan_leaves_discriminator_alone(setup):
  config, mesh = setup['config'], setup['mesh']
  config = helpers.with_shallow_model(config)
  config.loss.adversarial_weight = 1.0
  config.loss.gan_start_step = 2
  assert not schedule.gan_active(config, 1)
  assert schedule.gan_active(config, 2)
  networks = train_state.build_networks(config)
  state = train_state.create_train_state(networks, config, mesh)
  before = jax.device_get(state.discriminator_params)
  step = train_step.make_train_step(config, mesh, networks)
  state, metrics = step(state, setup['batch'], False,
                        schedule.gan_active(config, 0))
  assert float(metrics['discriminator_loss']) == 0.0
  for a, b in zip(jax.tree.leaves(before),
                  jax.tree.leaves(jax.device_get(state.discriminator_params))):
    np.testing.assert_array_equal(a, b)
  state, metrics = step(state, setup['batch'], False, True)
  assert float(metrics['discriminator_loss']) > 0.0
  moved = [np.max(np.abs(a - b)) for a, b in zip(
      jax.tree.leaves(before),
      jax.tree.leaves(jax.device_get(state.discriminator_params)))]
  assert max(moved) > 0


def test_cosine_schedule_warms_up_and_decays():
  config = _recipe_config()
  config.train.steps = 100
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 10
  config.optimizer.final_lr_fraction = 0.1
  schedule = train_state.learning_rate_schedule(config)
  peak = config.optimizer.learning_rate
  np.testing.assert_allclose(float(schedule(0)), 0.0)
  np.testing.assert_allclose(float(schedule(5)), peak / 2, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(10)), peak, rtol=1e-6)
  # Half-way through the decay: the mean of peak and end (closed form).
  np.testing.assert_allclose(float(schedule(55)), (peak + 0.1 * peak) / 2,
                             rtol=1e-5)
  np.testing.assert_allclose(float(schedule(100)), 0.1 * peak, rtol=1e-5)
  # Refused where the config is built (config_lib.validate_config).
  config.optimizer.schedule = 'linear'
  with pytest.raises(ValueError, match="config.optimizer.schedule must be one "
                     "of 'constant', 'warmup_constant', 'cosine', got "
                     "'linear'"):
    config_lib.validate_config(config)


def test_warmup_constant_schedule_holds_the_peak_after_warm_up():
  config = _recipe_config()
  config.train.steps = 100
  config.optimizer.schedule = 'warmup_constant'
  config.optimizer.warmup_steps = 10
  schedule = train_state.learning_rate_schedule(config)
  peak = config.optimizer.learning_rate
  np.testing.assert_allclose(
      [float(schedule(s)) for s in (0, 5, 10, 100, 10**6)],
      [0.0, peak / 2, peak, peak, peak], rtol=1e-6)


def test_real_steps_keep_weights_and_cpm_alive(setup):
  """40 steps of the recipe's optimiser (clipping 1.0, weight decay 1e-4,
  lr 4e-4 from step 0): the weights keep their norm and the CPM's hidden
  layers stay alive. Clipping before the decay term (the old chain) made
  the decay 10-500x stronger than configured and shrank the norm by more
  than a tenth within these steps."""
  from scsnet_jax.train import health
  config = _recipe_config()
  config.optimizer.learning_rate = 4e-4
  config.optimizer.grad_clip_norm = 1.0
  config.optimizer.weight_decay = 1e-4
  networks = train_state.build_networks(config)
  step = train_step.make_train_step(config, setup['mesh'], networks)
  state = train_state.create_train_state(networks, config, setup['mesh'])
  initial = float(jax.device_get(
      health.module_norms(state.generator_params)['texture_encoder']))
  for _ in range(40):
    state, metrics = step(state, setup['batch'], False, False)
  final = float(metrics[health.PARAM_NORM + 'texture_encoder'])
  assert final > 0.95 * initial, (final, initial)
  probe = health.make_cpm_probe(networks.generator, points_per_side=32)
  scalars = jax.device_get(probe(state.generator_params,
                                 setup['local']['gray']))
  for layer in (1, 2, 3):
    assert scalars[f'{health.CPM_ALIVE}{layer}'] > 0.3, scalars
