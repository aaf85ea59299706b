"""Losses: L1, RaLSGAN vs hand-worked values, gradient isolation, L_P."""

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from scsnet_jax.train import schedule
from scsnet_jax import color, config_lib
from scsnet_jax.train import losses
from scsnet_jax.train import state as train_state
from scsnet_jax.train import step as train_step
from scsnet_jax.pretrained import vgg
from tests.pretrained.vgg_test import random_vgg_params


def test_l1_matches_numpy():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(2, 3, 5, 3)), rng.normal(size=(2, 3, 5, 3))
  got = losses.l1_loss(jnp.asarray(a, jnp.bfloat16), jnp.asarray(b))
  assert got.dtype == jnp.float32
  expected = np.abs(np.asarray(jnp.asarray(a, jnp.bfloat16), np.float64) -
                    b).mean()
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_ralsgan_hand_worked_example():
  d_real, d_fake = jnp.array([1.0, 3.0]), jnp.array([0.0, 2.0])
  # mean(Dr) = 2, mean(Df) = 1.
  # L_D = mean((Dr - 1 - 1)^2) + mean((Df - 2 + 1)^2)
  #     = mean(1, 1) + mean(1, 1) = 2.
  # L_G = mean((Df - 2 - 1)^2) + mean((Dr - 1 + 1)^2)
  #     = mean(9, 1) + mean(1, 9) = 10.
  assert float(losses.ralsgan_discriminator_loss(d_real, d_fake)) == 2.0
  assert float(losses.ralsgan_generator_loss(d_real, d_fake)) == 10.0


def test_ralsgan_matches_numpy_formula_on_patch_maps():
  rng = np.random.default_rng(1)
  d_real = rng.normal(1.0, 1.0, size=(3, 4, 5, 1))
  d_fake = rng.normal(-1.0, 1.0, size=(3, 4, 5, 1))
  mean_real, mean_fake = d_real.mean(), d_fake.mean()  # Batch and patches.
  d_loss = (((d_real - mean_fake - 1)**2).mean() +
            ((d_fake - mean_real + 1)**2).mean())
  g_loss = (((d_fake - mean_real - 1)**2).mean() +
            ((d_real - mean_fake + 1)**2).mean())
  np.testing.assert_allclose(
      losses.ralsgan_discriminator_loss(jnp.asarray(d_real),
                                        jnp.asarray(d_fake)), d_loss,
      rtol=1e-5)
  np.testing.assert_allclose(
      losses.ralsgan_generator_loss(jnp.asarray(d_real), jnp.asarray(d_fake)),
      g_loss, rtol=1e-5)
  # Ideal discriminator (real one above the fake mean and vice versa): L_D 0.
  assert float(losses.ralsgan_discriminator_loss(
      jnp.full((2, 2), 0.5), jnp.full((2, 2), -0.5))) == 0.0


def test_generator_loss_is_relativistic():
  d_real, d_fake = jnp.array([0.3, -0.2]), jnp.array([0.1, 0.4])
  grad_real, grad_fake = jax.grad(losses.ralsgan_generator_loss,
                                  argnums=(0, 1))(d_real, d_fake)
  assert np.abs(np.asarray(grad_real)).min() > 0
  assert np.abs(np.asarray(grad_fake)).min() > 0


class _TinyDiscriminator(nnx.Module):
  """A stand-in D (the composition, not the architecture, is under test)."""

  def __init__(self, rngs):
    self.conv = nnx.Conv(3, 1, (3, 3), rngs=rngs)

  def __call__(self, x):
    return self.conv(x)


def test_gradient_isolation_as_the_train_step_composes_it():
  """G's loss sees D's params as constants; D's loss sees the fake as one."""
  graphdef, d_state = nnx.split(_TinyDiscriminator(nnx.Rngs(0)))
  real = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  fake = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))

  def discriminate(state, images):
    return nnx.merge(graphdef, state)(images)

  def generator_objective(d_state, fake):
    frozen = jax.lax.stop_gradient(d_state)
    return losses.ralsgan_generator_loss(discriminate(frozen, real),
                                         discriminate(frozen, fake))

  def discriminator_objective(d_state, fake):
    return losses.ralsgan_discriminator_loss(
        discriminate(d_state, real),
        discriminate(d_state, jax.lax.stop_gradient(fake)))

  g_grad_d, g_grad_fake = jax.jit(jax.grad(generator_objective,
                                           argnums=(0, 1)))(d_state, fake)
  d_grad_d, d_grad_fake = jax.jit(jax.grad(discriminator_objective,
                                           argnums=(0, 1)))(d_state, fake)

  def max_abs(tree):
    return max(float(jnp.abs(x).max()) for x in jax.tree.leaves(tree))
  assert max_abs(g_grad_d) == 0.0      # G's loss never moves D ...
  assert max_abs(g_grad_fake) > 0.0    # ... but does reach the generator.
  assert max_abs(d_grad_fake) == 0.0   # D's loss never moves G ...
  assert max_abs(d_grad_d) > 0.0       # ... but does train D.


@pytest.fixture(scope='module')
def vgg_params():
  return jax.tree.map(jnp.asarray, random_vgg_params(3))


def _random_nlab(key, shape=(1, 16, 16, 3)):
  rgb = jax.random.uniform(key, shape, minval=0.05, maxval=0.95)
  return color.rgb01_to_nlab(rgb)


def test_perceptual_loss_matches_per_layer_re_derivation(vgg_params):
  pred = _random_nlab(jax.random.key(4))
  target = _random_nlab(jax.random.key(5))
  weights = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
  loss_fn = jax.jit(losses.perceptual_loss)
  got = loss_fn(vgg_params, pred, target)
  assert got.dtype == jnp.float32 and float(got) > 0
  assert float(loss_fn(vgg_params, target, target)) == 0.0

  @jax.jit
  def features(nlab):
    rgb = jnp.clip(color.nlab_to_rgb01(nlab), 0, 1)
    normalised = (rgb - np.array(vgg.IMAGENET_MEAN, np.float32)) / np.array(
        vgg.IMAGENET_STD, np.float32)
    return vgg.vgg16_features(vgg_params, normalised)

  pred_f, target_f = features(pred), features(target)
  expected = sum(w * np.abs(np.asarray(pred_f[layer]) -
                            np.asarray(target_f[layer])).mean()
                 for w, layer in zip(weights, vgg.PERCEPTUAL_LAYERS))
  np.testing.assert_allclose(got, expected, rtol=1e-4)
  assert pred_f['relu5_1'].shape == (1, 1, 1, 512)


def test_perceptual_loss_bfloat16_vgg_returns_float32(vgg_params):
  """dtype='bfloat16' does run VGG in bfloat16 (the loss moves by bfloat16
  rounding: 0.15% here), and still returns a float32 scalar."""
  pred = _random_nlab(jax.random.key(4))
  target = _random_nlab(jax.random.key(5))
  both = jax.jit(lambda p, a, b: (
      losses.perceptual_loss(p, a, b),
      losses.perceptual_loss(p, a, b, dtype='bfloat16')))
  full, low = both(vgg_params, pred, target)
  assert low.dtype == jnp.float32 and low.shape == ()
  np.testing.assert_allclose(low, full, rtol=1e-2)
  assert abs(float(low) - float(full)) > 1e-4 * float(full)


def test_perceptual_gradient_reaches_only_the_prediction(vgg_params):
  pred = _random_nlab(jax.random.key(6))
  target = _random_nlab(jax.random.key(7))
  grad_pred, grad_target = jax.jit(jax.grad(losses.perceptual_loss,
                                            argnums=(1, 2)))(vgg_params, pred,
                                                             target)
  assert np.all(np.isfinite(np.asarray(grad_pred)))
  assert float(jnp.abs(grad_pred).max()) > 0
  assert float(jnp.abs(grad_target).max()) == 0.0


class _TinyGenerator(nnx.Module):
  """A stand-in G with the Generator's call signature: nearest x2, 3x3 conv."""

  def __init__(self, rngs):
    self.conv = nnx.Conv(1, 3, (3, 3), rngs=rngs)

  def __call__(self, gray, reference=None, *, out_size):
    del reference
    up = jax.image.resize(gray, gray.shape[:1] + out_size + (1,), 'nearest')
    return jnp.tanh(self.conv(up))


@pytest.fixture(scope='module')
def tiny_gan():
  """A TrainState of stand-in networks, and a batch. G's optimiser is plain
  SGD at rate 1, so one step moves G by exactly minus its gradient."""
  generator_graphdef, generator_params = train_state.split_params(
      _TinyGenerator(nnx.Rngs(0)))
  discriminator_graphdef, discriminator_params = train_state.split_params(
      _TinyDiscriminator(nnx.Rngs(1)))
  sgd, d_sgd = optax.sgd(1.0), optax.sgd(1e-2)
  networks = train_state.Networks(
      generator=generator_graphdef, discriminator=discriminator_graphdef,
      generator_tx=sgd, discriminator_tx=d_sgd)
  state = train_state.TrainState(
      step=jnp.zeros((), jnp.int32), rng=jax.random.PRNGKey(0),
      generator_params=generator_params, generator_ema=generator_params,
      generator_opt_state=sgd.init(generator_params),
      discriminator_params=discriminator_params,
      discriminator_opt_state=d_sgd.init(discriminator_params))
  target = _random_nlab(jax.random.key(8), (2, 16, 16, 3))
  gray = target[:, ::2, ::2, :1]
  return networks, state, {'gray': gray, 'target': target,
                           'reference': target}


def _stand_in_perceptual_loss(params, pred, target, *, dtype):
  """A cheap stand-in for VGG16's L_P (tested above), asymmetric in pred and
  target; it records the compute dtype the train step asks for."""
  _stand_in_perceptual_loss.dtypes.append(jnp.dtype(dtype))
  return params['scale'] * jnp.mean((pred - 0.5 * target)**2)


_STAND_IN_PARAMS = {'scale': np.float32(4.0)}


def _one_step(networks, state, batch, gan_active, monkeypatch):
  """One train step with the default ``config.loss``."""
  _stand_in_perceptual_loss.dtypes = []
  monkeypatch.setattr(losses, 'perceptual_loss', _stand_in_perceptual_loss)
  step = jax.jit(functools.partial(
      train_step.train_step, networks, referential=False,
      loss_config=config_lib.loss_defaults(), ema_decay=0.0,
      gan_active=gan_active))
  new_state, metrics = step(state, batch, _STAND_IN_PARAMS)
  moved = jax.tree.map(lambda old, new: old - new, state.generator_params,
                       new_state.generator_params)   # = the gradient
  return new_state, metrics, moved


def _assert_trees_close(got, expected):
  for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    np.testing.assert_allclose(g, e, rtol=2e-4, atol=1e-6)


def test_default_weights_train_g_on_the_specs_weighted_sum(tiny_gan,
                                                           monkeypatch):
  """Defaults = the paper: G's loss is 10 L_C + 5 L_P + 1 L_Adv with VGG in
  float32, and it is that sum, not only the logged number, that trains G."""
  networks, state, batch = tiny_gan
  new_state, metrics, moved = _one_step(networks, state, batch, True,
                                        monkeypatch)
  assert _stand_in_perceptual_loss.dtypes == [jnp.dtype(jnp.float32)]
  target = batch['target']
  # G's adversarial term is taken through the already-updated D.
  discriminator = nnx.merge(networks.discriminator,
                            new_state.discriminator_params)

  def terms(generator_params):
    fake = nnx.merge(networks.generator, generator_params)(
        batch['gray'], out_size=(16, 16))
    return (losses.l1_loss(fake, target),
            _stand_in_perceptual_loss(_STAND_IN_PARAMS, fake, target,
                                      dtype=jnp.float32),
            losses.ralsgan_generator_loss(discriminator(target),
                                          discriminator(fake)))

  def paper_total(generator_params):
    content, perceptual, adversarial = terms(generator_params)
    return 10 * content + 5 * perceptual + 1 * adversarial

  content, perceptual, adversarial = terms(state.generator_params)
  # Three clearly different terms (0.43, 0.67, 2.5): a swapped or dropped
  # weight shows.
  low, mid, high = sorted(float(t) for t in (content, perceptual,
                                             adversarial))
  assert 0.1 < low and 1.5 * low < mid and 1.5 * mid < high
  for name, expected in (('content_loss', content),
                         ('perceptual_loss', perceptual),
                         ('adversarial_loss', adversarial)):
    np.testing.assert_allclose(metrics[name], expected, rtol=1e-5,
                               err_msg=name)
  np.testing.assert_allclose(metrics['generator_loss'],
                             paper_total(state.generator_params), rtol=1e-5)
  _assert_trees_close(moved, jax.grad(paper_total)(state.generator_params))


def test_default_gan_start_step_is_zero_and_warm_up_is_content_only(
    tiny_gan, monkeypatch):
  """By default the GAN is on from the first step (the paper); before a
  gan_start_step, G trains on 10 L_C alone and D is not touched."""
  config = config_lib.get_base_config()
  assert schedule.gan_active(config, 0)
  config.loss.gan_start_step = 3
  assert [schedule.gan_active(config, s) for s in range(5)] == [
      False, False, False, True, True]

  networks, state, batch = tiny_gan
  new_state, metrics, moved = _one_step(networks, state, batch, False,
                                        monkeypatch)
  assert not _stand_in_perceptual_loss.dtypes   # no L_P at all
  assert float(metrics['perceptual_loss']) == 0.0
  assert float(metrics['adversarial_loss']) == 0.0

  def warm_up_total(generator_params):
    fake = nnx.merge(networks.generator, generator_params)(
        batch['gray'], out_size=(16, 16))
    return 10 * losses.l1_loss(fake, batch['target'])

  np.testing.assert_allclose(metrics['generator_loss'],
                             warm_up_total(state.generator_params), rtol=1e-6)
  _assert_trees_close(moved, jax.grad(warm_up_total)(state.generator_params))
  for old, new in zip(jax.tree.leaves(state.discriminator_params),
                      jax.tree.leaves(new_state.discriminator_params)):
    np.testing.assert_array_equal(old, new)


def test_load_perceptual_params(tmp_path, monkeypatch, caplog):
  config = config_lib.loss_defaults()
  with pytest.raises(ValueError, match='convert_vgg16'):
    losses.load_perceptual_params(config)
  config.vgg_weights = str(tmp_path / 'absent.npz')
  config.allow_random_vgg = True
  with pytest.raises(FileNotFoundError, match='absent.npz'):
    losses.load_perceptual_params(config)

  params = random_vgg_params(4)
  vgg.save_vgg16_params(params, str(tmp_path / 'vgg16.npz'))
  config.vgg_weights = str(tmp_path / 'vgg16.npz')
  loaded = losses.load_perceptual_params(config)
  np.testing.assert_array_equal(loaded['conv4_1']['bias'],
                                params['conv4_1']['bias'])

  config.vgg_weights = ''
  monkeypatch.setattr(losses, '_warned_random_vgg', False)
  with caplog.at_level(logging.WARNING):
    first = losses.load_perceptual_params(config)
    losses.load_perceptual_params(config)
  warnings = [r for r in caplog.records if 'RANDOMLY INITIALISED' in
              r.getMessage()]
  assert len(warnings) == 1
  assert jax.tree.map(np.shape, first) == vgg.expected_shapes()
