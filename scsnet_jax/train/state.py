"""The GAN train state: one pytree, created already sharded.

Flax NNX is used functionally: each model is split once into a static
``graphdef`` and a pure-dict parameter pytree (``nnx.State.to_pure_dict``).
The train step only ever sees pytrees; ``nnx.merge(graphdef, params)``
rebuilds a module inside the jitted function.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from scsnet_jax import sharding

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@struct.dataclass
class TrainState:
  """Everything a training step reads and writes.

  Pytree leaves (replicated over the mesh): ``step`` int32 scalar, ``rng``
  uint32 (2,) key, generator / EMA-generator / discriminator parameters
  (nested dicts of fp32 arrays) and the two optax states. Static (part of the
  treedef, never traced): the two graphdefs and the two optax transforms.
  """
  step: jax.Array
  rng: jax.Array
  generator_params: Any
  generator_ema: Any
  generator_opt_state: Any
  discriminator_params: Any
  discriminator_opt_state: Any
  generator_graphdef: Any = struct.field(pytree_node=False)
  discriminator_graphdef: Any = struct.field(pytree_node=False)
  generator_tx: optax.GradientTransformation = struct.field(pytree_node=False)
  discriminator_tx: optax.GradientTransformation = struct.field(
      pytree_node=False)


def learning_rate_schedule(config: ml_collections.ConfigDict):
  """``config.optimizer.learning_rate`` as an optax schedule (or a float).

  'constant' (the paper); 'cosine': linear warm-up from 0 over
  ``warmup_steps``, then cosine decay to ``final_lr_fraction`` of the peak
  at ``config_lib.total_steps(config)``.
  """
  from scsnet_jax import config_lib
  opt = config.optimizer
  schedule = opt.get('schedule', 'constant')
  if schedule == 'constant':
    return opt.learning_rate
  if schedule == 'cosine':
    total = config_lib.total_steps(config)
    warmup = int(opt.get('warmup_steps', 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=opt.learning_rate,
        warmup_steps=warmup, decay_steps=max(total, warmup + 1),
        end_value=opt.learning_rate * opt.get('final_lr_fraction', 0.01))
  raise ValueError(f"config.optimizer.schedule must be 'constant' or "
                   f"'cosine', got {schedule!r}")


def make_optimizer(config: ml_collections.ConfigDict
                   ) -> optax.GradientTransformation:
  """PyTorch-style L2 decay then Adam (the paper's setting, for G and D),
  optionally after global-norm clipping and with a schedule."""
  opt = config.optimizer
  parts = []
  if opt.get('grad_clip_norm', 0.0):
    parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
  parts += [optax.add_decayed_weights(opt.weight_decay),
            optax.adam(learning_rate_schedule(config), b1=opt.b1, b2=opt.b2)]
  return optax.chain(*parts)


def build_models(config: ml_collections.ConfigDict, rng: jax.Array):
  """(Generator, Discriminator) modules with fresh weights from ``rng``."""
  # Imported here so that importing this module stays light.
  from scsnet_jax.models.discriminator import Discriminator
  from scsnet_jax.models.generator import build_generator
  generator_rng, discriminator_rng = jax.random.split(rng)
  generator = build_generator(config.model, nnx.Rngs(generator_rng))
  discriminator = Discriminator(dtype=DTYPES[config.dtype],
                                rngs=nnx.Rngs(discriminator_rng))
  return generator, discriminator


def split_params(module: nnx.Module):
  """module -> (graphdef, pure-dict parameters)."""
  graphdef, state = nnx.split(module)
  return graphdef, state.to_pure_dict()


def _init_fn(config: ml_collections.ConfigDict):
  """A pure function rng -> TrainState (traceable by jit and eval_shape)."""
  generator_tx = make_optimizer(config)
  discriminator_tx = make_optimizer(config)
  graphdefs = {}

  def init(rng):
    model_rng, state_rng = jax.random.split(rng)
    generator, discriminator = build_models(config, model_rng)
    generator_graphdef, generator_params = split_params(generator)
    discriminator_graphdef, discriminator_params = split_params(discriminator)
    # The graphdefs of the first trace are reused for every later one, so all
    # states created from one config share identical static parts (one jit
    # cache entry, equal treedefs for checkpoint restore).
    graphdefs.setdefault('generator', generator_graphdef)
    graphdefs.setdefault('discriminator', discriminator_graphdef)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        rng=state_rng,
        generator_params=generator_params,
        generator_ema=jax.tree.map(jnp.copy, generator_params),
        generator_opt_state=generator_tx.init(generator_params),
        discriminator_params=discriminator_params,
        discriminator_opt_state=discriminator_tx.init(discriminator_params),
        generator_graphdef=graphdefs['generator'],
        discriminator_graphdef=graphdefs['discriminator'],
        generator_tx=generator_tx,
        discriminator_tx=discriminator_tx)

  return init


def config_key(config: ml_collections.ConfigDict, *fields: str) -> str:
  """A hashable summary of the named config fields ('model', 'train.x', ...).

  Caches of traced/compiled functions use it so that runs differing only in
  unrelated fields (number of steps, logging) share compilations.
  """
  values = {}
  if 'optimizer' in fields and config.optimizer.get(
      'schedule', 'constant') != 'constant':
    # The schedule's length is part of the optimizer.
    values['total_steps'] = (config.train.steps, config.train.num_epochs,
                             config.train.num_train_examples,
                             config.data.global_batch_size)
  for field in fields:
    node = config
    for part in field.split('.'):
      node = node.get(part) if hasattr(node, 'get') else None
    values[field] = node.to_dict() if hasattr(node, 'to_dict') else node
  return json.dumps(values, sort_keys=True, default=str)


STATE_FIELDS = ('dtype', 'model', 'optimizer')   # the seed is an argument
_INIT_CACHE: dict[str, Any] = {}
_JIT_INIT_CACHE: dict[Any, Any] = {}


def _cached_init(config: ml_collections.ConfigDict):
  # One init function per distinct config (JSON), so abstract and concrete
  # states of the same config share static parts.
  key = config_key(config, *STATE_FIELDS)
  if key not in _INIT_CACHE:
    _INIT_CACHE[key] = _init_fn(config)
  return _INIT_CACHE[key]


def abstract_train_state(config: ml_collections.ConfigDict,
                         mesh: Mesh) -> TrainState:
  """Shapes, dtypes and shardings of the state; allocates nothing.

  The restore target for checkpoints: orbax reads each array straight into
  its final sharding.
  """
  init = _cached_init(config)
  shapes = jax.eval_shape(init, jax.random.PRNGKey(0))
  replicated = sharding.replicated(mesh)
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
      shapes)


def create_train_state(config: ml_collections.ConfigDict,
                       mesh: Mesh) -> TrainState:
  """A fresh state from ``config.seed``, created directly in its sharding.

  ``jax.jit(init, out_shardings=replicated)`` materialises every parameter on
  its devices at once; there is no host copy to broadcast. Costs one
  compilation of the initialisers (a few seconds on CPU).
  """
  key = (config_key(config, *STATE_FIELDS), mesh)
  if key not in _JIT_INIT_CACHE:
    _JIT_INIT_CACHE[key] = jax.jit(_cached_init(config),
                                   out_shardings=sharding.replicated(mesh))
  return _JIT_INIT_CACHE[key](jax.random.PRNGKey(config.seed))


def generator_param_count(state: TrainState) -> int:
  return sum(x.size for x in jax.tree.leaves(state.generator_params))
