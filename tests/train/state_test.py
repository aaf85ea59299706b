"""train_state.py: structure, sharding and determinism of the GAN state."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scsnet_jax import config_lib, sharding
from scsnet_jax.train import state as train_state
from tests.paths import TEST_CONFIG
from tests import helpers



def _test_config():
  return config_lib.load_sibling_config(TEST_CONFIG, 'test')


@pytest.fixture(scope='module')
def config():
  return helpers.with_shallow_model(_test_config())


@pytest.fixture(scope='module')
def state(config):
  return train_state.create_train_state(
      train_state.build_networks(config), config, sharding.create_mesh())


def test_full_spec_model_has_the_spec_parameter_count():
  # eval_shape only: nothing is allocated or compiled.
  config = _test_config()
  abstract = train_state.abstract_train_state(
      train_state.build_networks(config), config, sharding.create_mesh())
  count = sum(x.size for x in jax.tree.leaves(abstract.generator_params))
  assert count == 15_150_340          # spec: referential model, everything
  assert abstract.generator_params['init_conv']['kernel'].sharding.is_fully_replicated


def test_fresh_state_starts_at_zero_with_ema_equal_to_params(state):
  assert int(state.step) == 0
  for p, e in zip(jax.tree.leaves(state.generator_params),
                  jax.tree.leaves(state.generator_ema)):
    np.testing.assert_array_equal(np.asarray(p), np.asarray(e))
    assert p.dtype == jnp.float32
  # Adam moments start at zero for both networks.
  for opt_state in (state.generator_opt_state, state.discriminator_opt_state):
    adam = opt_state[1][0]
    assert int(adam.count) == 0
    assert all(float(jnp.abs(m).max()) == 0 for m in jax.tree.leaves(adam.mu))


def test_every_leaf_is_replicated_on_all_devices(state):
  for leaf in jax.tree.leaves(state):
    assert leaf.sharding.is_fully_replicated
    assert len(leaf.sharding.device_set) == 8


def test_same_seed_same_weights_other_seed_other_weights(config, state):
  mesh = sharding.create_mesh()
  again = train_state.create_train_state(
      train_state.build_networks(config), config, mesh)
  kernel = lambda s: np.asarray(s.generator_params['init_conv']['kernel'])
  np.testing.assert_array_equal(kernel(again), kernel(state))
  other_config = config.copy_and_resolve_references()
  other_config.seed = 1
  other = train_state.create_train_state(
      train_state.build_networks(other_config), other_config, mesh)
  assert not np.allclose(kernel(other), kernel(state))


def test_static_parts_are_shared_so_treedefs_match(config, state):
  abstract = train_state.abstract_train_state(
      train_state.build_networks(config), config, sharding.create_mesh())
  assert jax.tree.structure(abstract) == jax.tree.structure(state)


def test_optimizer_is_l2_decay_then_adam(config):
  tx = train_state.make_optimizer(config)
  params = {'w': jnp.array([1.0, -2.0])}
  grads = {'w': jnp.array([0.5, 0.0])}
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first step moves each weight by -lr * sign(g + wd * w).
  expected = -config.optimizer.learning_rate * np.sign([0.5 + 1e-4, -2e-4])
  np.testing.assert_allclose(np.asarray(updates['w']), expected, rtol=1e-3)


def test_the_state_is_arrays_only(config, state):
  """No static fields: what the arrays mean is in ``Networks``, so states of
  equal configs flatten to equal treedefs whichever build made them."""
  assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(state))
  assert all(field.metadata.get('pytree_node', True)
             for field in dataclasses.fields(train_state.TrainState))
  leaves, treedef = jax.tree.flatten(state)
  rebuilt = jax.tree.unflatten(treedef, leaves)
  assert jax.tree.structure(rebuilt) == jax.tree.structure(
      train_state.abstract_train_state(train_state.build_networks(config),
                                       config, sharding.create_mesh()))


def _run_optimizer(mode, clip, steps=50):
  """Two weights: 'a' gets a huge loss gradient (so the global norm is
  ~1000 and clipping bites), 'b' a small one against its decay."""
  from scsnet_jax import config_lib
  config = config_lib.get_base_config()
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 1e-4 if mode == 'l2' else 0.1
  config.optimizer.weight_decay_mode = mode
  config.optimizer.grad_clip_norm = clip
  tx = train_state.make_optimizer(config)
  params = {'a': jnp.array(1.0), 'b': jnp.array(1.0), 'c': jnp.array(1.0)}
  grads = {'a': jnp.array(1000.0), 'b': jnp.array(-0.05),
           'c': jnp.array(0.0)}
  opt_state = tx.init(params)
  for _ in range(steps):
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  return {k: float(v) for k, v in params.items()}, config.optimizer


def test_clipping_does_not_amplify_l2_decay():
  """'l2': the loss gradient of 'b' (-0.05) outweighs its decay (1e-4 w)
  with or without clipping, so 'b' grows by ~lr per step both ways; clipping
  the loss gradient alone (to 5e-5) would let the decay win and shrink it."""
  clipped, opt = _run_optimizer('l2', 1.0)
  plain, _ = _run_optimizer('l2', 0.0)
  assert clipped['b'] == pytest.approx(plain['b'], rel=1e-4)
  assert clipped['b'] == pytest.approx(1 + 50 * opt.learning_rate, rel=1e-3)


def test_decoupled_decay_shrinks_by_exactly_the_configured_amount():
  """'decoupled': a weight with no loss gradient shrinks by (1 - lr wd) per
  step, whatever the clipping does to the others."""
  for clip in (0.0, 1.0):
    params, opt = _run_optimizer('decoupled', clip)
    expected = (1 - opt.learning_rate * opt.weight_decay) ** 50
    assert params['c'] == pytest.approx(expected, rel=1e-6)


def test_unknown_weight_decay_mode_is_refused_where_the_config_is_built():
  from scsnet_jax import config_lib
  config = config_lib.get_base_config()
  config.optimizer.weight_decay_mode = 'adamw'
  with pytest.raises(ValueError, match="weight_decay_mode must be one of "
                     "'l2', 'decoupled', got 'adamw'"):
    config_lib.validate_config(config)
