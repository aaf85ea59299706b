"""train_state.py: structure, sharding and determinism of the GAN state."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scsnet_jax import config_lib, sharding
from scsnet_jax.train import state as train_state
from tests.paths import TEST_CONFIG



def _test_config():
  return config_lib.load_sibling_config(TEST_CONFIG, 'test')


@pytest.fixture(scope='module')
def config():
  return config_lib.with_shallow_model(_test_config())


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
