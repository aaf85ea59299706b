"""Losses: L1, RaLSGAN vs hand-worked values, gradient isolation, L_P."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scsnet_jax import config_lib
from scsnet_jax import color
from scsnet_jax.train import losses
from scsnet_jax.models import vgg
from tests.models.vgg_test import random_vgg_params


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
  return color.rgb_to_nlab(rgb)


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
    rgb = jnp.clip(color.nlab_to_rgb(nlab), 0, 1)
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
  nlab = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
  low = jax.eval_shape(
      lambda p, a, b: losses.perceptual_loss(p, a, b, dtype=jnp.bfloat16),
      vgg_params, nlab, nlab)
  assert low.dtype == jnp.float32 and low.shape == ()


def test_perceptual_gradient_reaches_only_the_prediction(vgg_params):
  pred = _random_nlab(jax.random.key(6))
  target = _random_nlab(jax.random.key(7))
  grad_pred, grad_target = jax.jit(jax.grad(losses.perceptual_loss,
                                            argnums=(1, 2)))(vgg_params, pred,
                                                             target)
  assert np.all(np.isfinite(np.asarray(grad_pred)))
  assert float(jnp.abs(grad_pred).max()) > 0
  assert float(jnp.abs(grad_target).max()) == 0.0


def test_default_loss_config():
  config = config_lib.loss_defaults()
  assert (config.content_weight, config.perceptual_weight,
          config.adversarial_weight) == (10.0, 5.0, 1.0)
  assert config.vgg_weights == '' and config.allow_random_vgg is False
  assert config.vgg_dtype == 'float32'


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
