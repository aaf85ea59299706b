"""The GAN train state: one pytree, created already sharded.

Flax NNX is used functionally: each model is split once into a static
``graphdef`` and a pure-dict parameter pytree (``nnx.State.to_pure_dict``).
The train step only ever sees pytrees; ``nnx.merge(graphdef, params)``
rebuilds a module inside the jitted function.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from scsnet_jax.train import schedule
from scsnet_jax import sharding
from scsnet_jax.models import generator as generator_lib
from scsnet_jax.models.discriminator import Discriminator


@struct.dataclass
class TrainState:
  """Everything a training step reads and writes: arrays only.

  ``step`` int32 scalar; ``rng`` uint32 (2,) key (the content loss samples
  its HR points from it); generator / EMA-generator / discriminator
  parameters (nested dicts of fp32 arrays) and the two optax states. What
  these arrays mean (the two graphdefs and optimizers) is in ``Networks``,
  which the step closes over; two states made from equal configs have equal
  treedefs.
  """
  step: jax.Array
  rng: jax.Array
  generator_params: Any
  generator_ema: Any
  generator_opt_state: Any
  discriminator_params: Any
  discriminator_opt_state: Any


@dataclasses.dataclass(frozen=True, eq=False)
class Networks:
  """The static half of training, built once from the config.

  ``generator`` / ``discriminator``: NNX graphdefs (``nnx.merge(graphdef,
  params)`` rebuilds the module inside a jitted function); ``generator_tx``
  / ``discriminator_tx``: their optax transforms. Hashable by identity, so a
  jitted function that closes over one ``Networks`` compiles once.
  """
  generator: Any
  discriminator: Any
  generator_tx: optax.GradientTransformation
  discriminator_tx: optax.GradientTransformation


def learning_rate_schedule(config: ml_collections.ConfigDict):
  """``config.optimizer.learning_rate`` as an optax schedule (or a float).

  'constant' (the paper); 'warmup_constant': linear warm-up from 0 over
  ``warmup_steps``, then constant (a run stopped at any time, e.g. by a
  time budget, ends at full rate and its EMA does the averaging);
  'cosine': the same warm-up, then cosine decay to ``final_lr_fraction`` of
  the peak at ``schedule.total_steps(config)``.
  """
  opt = config.optimizer
  if opt.schedule == 'constant':
    return opt.learning_rate
  warmup = int(opt.warmup_steps)
  if opt.schedule == 'warmup_constant':
    return optax.join_schedules(
        [optax.linear_schedule(0.0, opt.learning_rate, max(warmup, 1)),
         optax.constant_schedule(opt.learning_rate)], [max(warmup, 1)])
  total = schedule.total_steps(config)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=opt.learning_rate,
      warmup_steps=warmup, decay_steps=max(total, warmup + 1),
      end_value=opt.learning_rate * opt.final_lr_fraction)


def scale_modules(multipliers: dict[str, float]
                  ) -> optax.GradientTransformation:
  """Multiplies the updates of top-level modules (keys of a pure-dict
  parameter tree) by ``multipliers[name]``; other modules pass unchanged.

  After Adam, so it scales each module's step size: Adam normalises every
  gradient to about one learning rate per step, however small, so a
  module whose gradient is still noise moves as fast as the rest.
  """
  def update_fn(updates, state, params=None):
    del params
    return {name: (jax.tree.map(lambda u, m=multipliers[name]: u * m, tree)
                   if name in multipliers else tree)
            for name, tree in updates.items()}, state
  return optax.GradientTransformation(lambda params: optax.EmptyState(),
                                      update_fn)


# The referential pathway (optimizer.reference_lr_multiplier scales both).
REFERENCE_MODULES = ('reference_encoder', 'pvc_attention')


def make_optimizer(config: ml_collections.ConfigDict,
                   module_lr_multipliers: Optional[dict[str, float]] = None
                   ) -> optax.GradientTransformation:
  """Adam with weight decay, optionally clipped and scheduled (G and D).

  ``optimizer.weight_decay_mode``:
  - 'l2' (the paper, PyTorch ``Adam(weight_decay=...)``): ``wd * w`` is
    added to the loss gradient before Adam. Clipping
    (``grad_clip_norm``) acts on that total, so it never changes the ratio
    of decay to loss gradient (why: docs/training.md, "Weight decay").
  - 'decoupled' (AdamW): the clipped loss gradient goes through Adam and
    each step subtracts ``lr * wd * w`` besides, whatever the gradients.
  """
  opt = config.optimizer
  mode = opt.weight_decay_mode
  clip = ([optax.clip_by_global_norm(opt.grad_clip_norm)]
          if opt.grad_clip_norm else [])
  learning_rate = learning_rate_schedule(config)
  scale = ([scale_modules(module_lr_multipliers)]
           if module_lr_multipliers else [])
  if mode == 'l2':
    return optax.chain(optax.add_decayed_weights(opt.weight_decay), *clip,
                       optax.adam(learning_rate, b1=opt.b1, b2=opt.b2),
                       *scale)
  return optax.chain(*clip, optax.adamw(learning_rate, b1=opt.b1, b2=opt.b2,
                                        weight_decay=opt.weight_decay),
                     *scale)


def generator_lr_multipliers(config: ml_collections.ConfigDict
                             ) -> dict[str, float]:
  """Per-module step-size multipliers of the generator (none = 1.0)."""
  multiplier = float(config.optimizer.get('reference_lr_multiplier', 1.0))
  if multiplier == 1.0:
    return {}
  return {name: multiplier for name in REFERENCE_MODULES}


def build_models(config: ml_collections.ConfigDict, rng: jax.Array):
  """(Generator, Discriminator) modules with fresh weights from ``rng``."""
  generator_rng, discriminator_rng = jax.random.split(rng)
  generator = generator_lib.build_generator(config.model, nnx.Rngs(generator_rng))
  discriminator = Discriminator(dtype=generator_lib.DTYPES[config.dtype],
                                rngs=nnx.Rngs(discriminator_rng))
  return generator, discriminator


def split_params(module: nnx.Module):
  """module -> (graphdef, pure-dict parameters)."""
  graphdef, state = nnx.split(module)
  return graphdef, state.to_pure_dict()


def build_networks(config: ml_collections.ConfigDict) -> Networks:
  """Graphdefs (from abstract modules: nothing is allocated) and optimizers
  of ``config``."""
  generator, discriminator = nnx.eval_shape(
      lambda: build_models(config, jax.random.PRNGKey(0)))
  return Networks(generator=nnx.graphdef(generator),
                  discriminator=nnx.graphdef(discriminator),
                  generator_tx=make_optimizer(
                      config, generator_lr_multipliers(config)),
                  discriminator_tx=make_optimizer(config))


def init_train_state(networks: Networks, config: ml_collections.ConfigDict,
                     rng: jax.Array) -> TrainState:
  """A fresh state from ``rng``; pure, so ``jax.jit``/``eval_shape`` trace it.
  """
  model_rng, state_rng = jax.random.split(rng)
  generator, discriminator = build_models(config, model_rng)
  generator_params = split_params(generator)[1]
  discriminator_params = split_params(discriminator)[1]
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      rng=state_rng,
      generator_params=generator_params,
      generator_ema=jax.tree.map(jnp.copy, generator_params),
      generator_opt_state=networks.generator_tx.init(generator_params),
      discriminator_params=discriminator_params,
      discriminator_opt_state=networks.discriminator_tx.init(
          discriminator_params))


def abstract_train_state(networks: Networks,
                         config: ml_collections.ConfigDict,
                         mesh: Mesh) -> TrainState:
  """Shapes, dtypes and shardings of the state; allocates nothing.

  The restore target for checkpoints: orbax reads each array straight into
  its final sharding.
  """
  shapes = jax.eval_shape(lambda rng: init_train_state(networks, config, rng),
                          jax.random.PRNGKey(0))
  return sharding.abstract_tree(shapes, sharding.replicated(mesh))


def create_train_state(networks: Networks, config: ml_collections.ConfigDict,
                       mesh: Mesh) -> TrainState:
  """A fresh state from ``config.seed``, created directly in its sharding.

  ``jax.jit(init, out_shardings=replicated)`` materialises every parameter on
  its devices at once; there is no host copy to broadcast. Costs one
  compilation of the initialisers (a few seconds on CPU).
  """
  init = jax.jit(lambda rng: init_train_state(networks, config, rng),
                 out_shardings=sharding.replicated(mesh))
  return init(jax.random.PRNGKey(config.seed))
