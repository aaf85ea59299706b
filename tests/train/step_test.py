"""train_step.py: sharded == single device, gradient isolation, overfitting.

Uses configs/test.py with one block per stack (same widths; faster to
compile) and one compiled step per mesh, shared by the whole module.
"""


import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scsnet_jax.train import schedule
from scsnet_jax import config_lib, sharding
from scsnet_jax.train import losses
from scsnet_jax.train import state as train_state
from scsnet_jax.train import step as train_step
from tests.paths import TEST_CONFIG
from tests import helpers

RTOL, ATOL = 2e-4, 1e-6


def _config(**loss):
  config = helpers.with_shallow_model(
      config_lib.load_sibling_config(TEST_CONFIG, 'test'))
  config.loss.update(loss)
  return config


def _batch(batch_size=8, seed=0):
  rng = np.random.default_rng(seed)
  target = rng.uniform(-0.6, 0.6, (batch_size, 32, 32, 3)).astype(np.float32)
  gray = target[:, ::4, ::4, :1].copy()
  reference = rng.uniform(-0.6, 0.6, (batch_size, 8, 8, 3)).astype(np.float32)
  return {'gray': gray, 'target': target, 'reference': reference}


@pytest.fixture(scope='module')
def config():
  return _config()


@pytest.fixture(scope='module')
def referential_run(config):
  """One referential step on 8 devices and on 1 device, same start state."""
  mesh8 = sharding.create_mesh()
  mesh1 = sharding.create_mesh(jax.devices()[:1])
  batch = _batch()
  networks = train_state.build_networks(config)
  state8 = train_state.create_train_state(networks, config, mesh8)
  before = jax.device_get(state8)          # host copy: the step donates
  state1 = train_state.create_train_state(networks, config, mesh1)
  step8 = train_step.make_train_step(config, mesh8, networks)
  step1 = train_step.make_train_step(config, mesh1, networks)
  after8, metrics8 = step8(state8, sharding.global_batch(batch, mesh8), True)
  after1, metrics1 = step1(state1, sharding.global_batch(batch, mesh1), True)
  return dict(networks=networks, before=before, batch=batch, after8=jax.device_get(after8),
              after1=jax.device_get(after1), metrics8=jax.device_get(metrics8),
              metrics1=jax.device_get(metrics1),
              vgg=jax.device_get(step8.perceptual_params))


def test_eight_devices_equal_one_device(config, referential_run):
  run = referential_run
  assert set(run['metrics8']) >= {
      'generator_loss', 'content_loss', 'perceptual_loss', 'adversarial_loss',
      'discriminator_loss', 'd_real_mean', 'd_fake_mean',
      'generator_grad_norm', 'discriminator_grad_norm', 'all_finite'}
  assert run['metrics8']['all_finite'] == 1.0
  for key, value in run['metrics8'].items():
    np.testing.assert_allclose(value, run['metrics1'][key], rtol=RTOL,
                               err_msg=key)
  after8, after1 = run['after8'], run['after1']
  assert jax.tree.structure(after8) == jax.tree.structure(after1)
  # Adam's moments are linear in the gradients (and their squares).
  # Summation order differs between 8 shards and 1: float32 noise only (a
  # per-shard instead of a global relativistic mean would be off by O(1)).
  for opt in ('generator_opt_state', 'discriminator_opt_state'):
    adam8, adam1 = getattr(after8, opt)[1][0], getattr(after1, opt)[1][0]
    _assert_moments_close(adam8.mu, adam1.mu)
    _assert_moments_close(adam8.nu, adam1.nu)
  # Weights: Adam's first step is lr * g / (|g| + eps), so where the true
  # gradient is ~0 (rounding noise) the sign may flip, a 2 * lr difference;
  # everywhere else the two runs agree.
  lr = config.optimizer.learning_rate
  agree = total = 0
  for a, b in zip(jax.tree.leaves(after8), jax.tree.leaves(after1)):
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    assert diff.max() <= 2.01 * lr
    agree += int(np.sum(diff <= 1e-6 + 1e-5 * np.abs(b)))
    total += diff.size
  assert agree >= 0.99 * total, agree / total
  assert int(after8.step) == 1


def _assert_moments_close(got, expected):
  """Per tensor, up to float32 noise: relative to the tensor's largest entry,
  and to 1e-4 of the network's largest (tensors whose true gradient is ~0,
  such as conv biases before an instance norm, hold pure rounding noise)."""
  leaves = [np.asarray(e) for e in jax.tree.leaves(expected)]
  overall = max(float(np.abs(e).max()) for e in leaves)
  for g, e in zip(jax.tree.leaves(got), leaves):
    atol = max(2e-3 * float(np.abs(e).max()), 1e-4 * overall)
    np.testing.assert_allclose(g, e, rtol=1e-3, atol=atol)


def _reference_gradients(networks, before, batch, vgg, new_d_params):
  """Gradients written the obvious way: jax.grad of each network's own loss."""
  g_graph, d_graph = networks.generator, networks.discriminator
  target = jnp.asarray(batch['target'])   # small: fine as constants

  def generate(g_params):
    return nnx.merge(g_graph, g_params)(
        jnp.asarray(batch['gray']), jnp.asarray(batch['reference']),
        out_size=(32, 32))

  def d_loss(d_params, g_params):
    disc = nnx.merge(d_graph, d_params)
    fake = jax.lax.stop_gradient(generate(g_params))
    return losses.ralsgan_discriminator_loss(disc(target), disc(fake))

  def g_loss(g_params, d_params, vgg):
    disc = nnx.merge(d_graph, d_params)
    fake = generate(g_params)
    return (10 * losses.l1_loss(fake, target) +
            5 * losses.perceptual_loss(vgg, fake, target) +
            1 * losses.ralsgan_generator_loss(disc(target), disc(fake)))

  # Parameters are arguments, not closure constants baked into the program.
  grads = jax.jit(lambda g, d, new_d, vgg: (jax.grad(d_loss)(d, g),
                                            jax.grad(g_loss)(g, new_d, vgg)))
  return grads(before.generator_params, before.discriminator_params,
               new_d_params, vgg)


def test_each_network_moves_only_by_its_own_loss(config, referential_run):
  """Adam's first moment after one step is (1 - b1) * (grad + wd * param):
  compare it, for G and D, with gradients of each network's own loss (G's
  through the already-updated D). A G-loss gradient leaking into D, or a
  D-loss gradient into G, changes these moments."""
  run = referential_run
  before, after = run['before'], run['after8']
  d_grads, g_grads = _reference_gradients(
      run['networks'], before, run['batch'], run['vgg'], after.discriminator_params)
  b1, wd = config.optimizer.b1, config.optimizer.weight_decay
  for grads, params, opt_state in (
      (d_grads, before.discriminator_params, after.discriminator_opt_state),
      (g_grads, before.generator_params, after.generator_opt_state)):
    expected_mu = jax.tree.map(lambda g, p: (1 - b1) * (g + wd * p), grads,
                               params)
    _assert_moments_close(opt_state[1][0].mu, expected_mu)
  # And each network's new weights are exactly one Adam step with those
  # moments: nothing else touched them.
  lr, b2 = config.optimizer.learning_rate, config.optimizer.b2
  for old, new, opt_state in (
      (before.discriminator_params, after.discriminator_params,
       after.discriminator_opt_state),
      (before.generator_params, after.generator_params,
       after.generator_opt_state)):
    adam = opt_state[1][0]
    expected = jax.tree.map(
        lambda p, m, v: p - lr * (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + 1e-8),
        old, adam.mu, adam.nu)
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(new)):
      np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-7)


def test_ema_follows_the_configured_decay_with_warmup(config, referential_run):
  run = referential_run
  # Warmup: after update 0 the decay is min(0.999, 1 / 10) = 0.1.
  assert config.train.ema_warmup
  decay = min(config.train.ema_decay, 1 / 10)
  for ema, old, new in zip(jax.tree.leaves(run['after8'].generator_ema),
                           jax.tree.leaves(run['before'].generator_ema),
                           jax.tree.leaves(run['after8'].generator_params)):
    np.testing.assert_allclose(ema, decay * old + (1 - decay) * new,
                               rtol=1e-6, atol=1e-7)


def test_overfitting_one_batch_halves_the_l1():
  config = _config(perceptual_weight=0.0, adversarial_weight=0.0)
  config.optimizer.learning_rate = 1e-3
  mesh = sharding.create_mesh(jax.devices()[:1])
  from scsnet_jax.data import pipeline as input_pipeline
  local = input_pipeline.model_inputs(next(input_pipeline.create_iterator(
      config.data, 'train', global_batch_size=2, process_index=0,
      process_count=1)))
  batch = sharding.global_batch(local, mesh)
  networks = train_state.build_networks(config)
  state = train_state.create_train_state(networks, config, mesh)
  step = train_step.make_train_step(config, mesh, networks)
  l1 = []
  for _ in range(30):
    state, metrics = step(state, batch, False)
    l1.append(float(metrics['content_loss']))
  assert all(np.isfinite(l1))
  assert l1[-1] < 0.5 * l1[0], l1


def test_bfloat16_compute_keeps_float32_weights_and_losses(referential_run):
  """config.dtype=bfloat16: same losses to bf16 precision, fp32 state."""
  config = _config()
  config.dtype = 'bfloat16'
  config.model.dtype = 'bfloat16'
  mesh = sharding.create_mesh(jax.devices()[:1])
  networks = train_state.build_networks(config)
  state = train_state.create_train_state(networks, config, mesh)
  step = train_step.make_train_step(config, mesh, networks)
  batch = sharding.global_batch(_batch(), mesh)
  new_state, metrics = step(state, batch, True)
  for leaf in jax.tree.leaves(new_state):
    assert leaf.dtype in (jnp.float32, jnp.int32, jnp.uint32), leaf.dtype
  for key in ('generator_loss', 'content_loss', 'discriminator_loss'):
    assert metrics[key].dtype == jnp.float32
    np.testing.assert_allclose(float(metrics[key]),
                               referential_run['metrics1'][key], rtol=5e-2,
                               err_msg=key)


def test_the_discriminator_half_alone(referential_run):
  """``discriminator_update`` scores real vs. fake with the RaLSGAN loss of
  D's logits before the update and moves D only; ``discriminator_skipped``
  passes D's state through with zero metrics."""
  run = referential_run
  networks, before = run['networks'], run['before']
  target = jnp.asarray(run['batch']['target'][:2])
  fake = jnp.asarray(_batch(2, seed=5)['target'])
  update = jax.jit(lambda s, t, f: train_step.discriminator_update(
      networks, s, t, f))(before, target, fake)
  logits = lambda images: train_step.discriminate(
      networks, before.discriminator_params, images)
  np.testing.assert_allclose(
      update.metrics['discriminator_loss'],
      losses.ralsgan_discriminator_loss(logits(target), logits(fake)),
      rtol=1e-5)
  np.testing.assert_allclose(update.metrics['d_real_mean'],
                             jnp.mean(logits(target)), rtol=1e-5)
  moved = [float(np.abs(a - b).max()) for a, b in zip(
      jax.tree.leaves(update.params),
      jax.tree.leaves(before.discriminator_params))]
  assert max(moved) > 0
  skipped = train_step.discriminator_skipped(before)
  assert skipped.params is before.discriminator_params
  assert skipped.opt_state is before.discriminator_opt_state
  assert set(skipped.metrics) == set(update.metrics)
  assert all(float(v) == 0.0 for v in skipped.metrics.values())


def test_sample_output_window_is_a_square_of_the_crop():
  """Coordinates are the pixel centres of one in-bounds square per image,
  row-major, and the values are the target there (an index image tells)."""
  height, width, window = 12, 20, 5
  index = np.arange(height * width, dtype=np.float32).reshape(height, width)
  target = jnp.asarray(np.stack([index, -index], 0)[..., None].repeat(3, -1))
  coords, values = train_step.sample_output_window(jax.random.key(3), target,
                                                   window)
  assert coords.shape == (2, window * window, 2)
  assert values.shape == (2, window, window, 3)
  cols = np.asarray(coords[..., 0]) * width - 0.5
  rows = np.asarray(coords[..., 1]) * height - 0.5
  np.testing.assert_allclose(cols, np.round(cols), atol=1e-4)
  rows, cols = np.round(rows).astype(int), np.round(cols).astype(int)
  for b in range(2):
    top, left = rows[b, 0], cols[b, 0]
    assert 0 <= top <= height - window and 0 <= left <= width - window
    expected = np.asarray(target[b, top:top + window, left:left + window])
    np.testing.assert_array_equal(np.asarray(values[b]), expected)
    np.testing.assert_array_equal(
        np.asarray(values[b, ..., 0]).ravel(),
        np.asarray(target[b, ..., 0])[rows[b], cols[b]])
  with pytest.raises(ValueError, match='larger than'):
    train_step.sample_output_window(jax.random.key(0), target, 13)


def test_window_render_equals_the_full_render_cropped(referential_run):
  networks = referential_run['networks']
  params = referential_run['before'].generator_params
  batch = referential_run['batch']
  generator = nnx.merge(networks.generator, params)
  full = generator(jnp.asarray(batch['gray']), out_size=(32, 32))
  coords, values = train_step.sample_output_window(
      jax.random.key(1), jnp.asarray(batch['target']), 12)
  window = train_step.generate_points(
      networks, params, {'gray': jnp.asarray(batch['gray'])}, coords,
      False).reshape(values.shape)
  rows = np.round(np.asarray(coords[:, 0, 1]) * 32 - 0.5).astype(int)
  cols = np.round(np.asarray(coords[:, 0, 0]) * 32 - 0.5).astype(int)
  for b, (top, left) in enumerate(zip(rows, cols)):
    np.testing.assert_allclose(window[b], full[b, top:top + 12,
                                                left:left + 12],
                               rtol=1e-4, atol=1e-5)


def test_perceptual_term_on_a_window_without_the_gan():
  """adversarial_weight 0 and a perceptual weight: D is not touched, L_P is
  taken on the rendered window (re-derived from the rendered output)."""
  config = _config(adversarial_weight=0.0, perceptual_weight=5.0)
  config.train.render_window = 16
  assert not schedule.gan_active(config, 0)
  assert schedule.perceptual_active(config, 0)
  mesh = sharding.create_mesh(jax.devices()[:1])
  networks = train_state.build_networks(config)
  state = train_state.create_train_state(networks, config, mesh)
  before = jax.device_get(state)
  step = train_step.make_train_step(config, mesh, networks)
  batch = _batch()
  after, metrics = step(state, sharding.global_batch(batch, mesh), False,
                        False, True)
  after = jax.device_get(after)
  for old, new in zip(jax.tree.leaves(before.discriminator_params),
                      jax.tree.leaves(after.discriminator_params)):
    np.testing.assert_array_equal(old, new)
  coords, window_target = train_step.sample_output_window(
      jax.random.fold_in(before.rng, before.step),
      jnp.asarray(batch['target']), 16)
  fake = train_step.generate_points(
      networks, before.generator_params, {'gray': jnp.asarray(batch['gray'])},
      coords, False).reshape(window_target.shape)
  expected = losses.perceptual_loss(step.perceptual_params, fake,
                                    window_target)
  np.testing.assert_allclose(float(metrics['perceptual_loss']),
                             float(expected), rtol=1e-4)
  assert float(metrics['adversarial_loss']) == 0.0


def test_render_window_and_content_points_are_exclusive():
  config = _config()
  config.train.render_window = 16
  config.train.content_points = 100
  with pytest.raises(Exception, match='exclusive'):
    train_step.make_train_step(config, sharding.create_mesh(),
                               train_state.build_networks(config))


def test_step_options_are_read_once_and_frozen():
  config = config_lib.get_base_config()
  options = train_step.StepOptions.from_config(config)
  config.loss.content_weight = 99.0
  config.train.ema_decay = 0.5
  config.train.content_points = 7
  assert options.loss_config.content_weight == 10.0
  assert (options.ema_decay, options.ema_warmup, options.content_points,
          options.render_window) == (0.999, True, 0, 0)
  with pytest.raises(dataclasses.FrozenInstanceError):
    options.ema_decay = 0.5
  with pytest.raises((AttributeError, TypeError)):
    options.loss_config.content_weight = 1.0
