"""The training step: one discriminator update, then one generator update.

A pure function ``(networks, state, batch, perceptual_params) -> (state,
metrics)``. ``make_train_step`` closes it over the ``Networks`` (graphdefs
and optimizers, built once from the config) and jits it with explicit
shardings over the ('data',) mesh (state replicated and donated, batch split
on its leading axis). Automatic and referential steps, with and without the
GAN, are compilations of the same function (those two flags are static).

The generator runs once per step: ``jax.vjp`` keeps its forward pass, the
discriminator is updated on ``stop_gradient(fake)``, and the generator loss
(through the *updated*, frozen discriminator) is pulled back through the
saved vjp. So the generator loss never reaches D's parameters and the D loss
never reaches G's. Relativistic means run over the global batch, because the
jitted function sees global arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh

from scsnet_jax import sharding
from scsnet_jax.errors import UserError
from scsnet_jax.train import health, losses
from scsnet_jax.train.state import Networks, TrainState

Batch = dict[str, jax.Array]   # gray (B,h,w,1), reference (B,h,w,3), target (B,H,W,3)


def generate(networks: Networks, params: Any, batch: Batch,
             referential: bool) -> jax.Array:
  """Generator output (B, H, W, 3) nlab at the target's size."""
  generator = nnx.merge(networks.generator, params)
  reference = batch['reference'] if referential else None
  return generator(batch['gray'], reference,
                   out_size=tuple(batch['target'].shape[1:3]))


def sample_output_points(rng: jax.Array, target: jax.Array, num_points: int
                         ) -> tuple[jax.Array, jax.Array]:
  """``num_points`` random pixels of each HR target (with replacement).

  target (B, H, W, C) -> (coords (B, N, 2) as (x, y) pixel centres in
  (0, 1), the target's values there (B, N, C)). The content loss on such a
  sample is an unbiased estimate of the full-image L1, at a fraction of the
  CPM's cost (LIIF trains its decoder on sampled query points the same way).
  """
  batch, height, width, channels = target.shape
  index = jax.random.randint(rng, (batch, num_points), 0, height * width)
  rows, cols = index // width, index % width
  coords = jnp.stack([(cols + 0.5) / width, (rows + 0.5) / height], axis=-1)
  values = jnp.take_along_axis(target.reshape(batch, -1, channels),
                               index[..., None], axis=1)
  return coords.astype(jnp.float32), values


def sample_output_window(rng: jax.Array, target: jax.Array, window: int
                         ) -> tuple[jax.Array, jax.Array]:
  """One random ``window`` x ``window`` square of each HR target.

  target (B, H, W, C) -> (coords (B, window**2, 2) of its pixel centres as
  (x, y) in (0, 1), row-major, and the target there (B, window, window, C)).
  The CPM renders only those points, yet the perceptual and adversarial
  losses see an image (unlike ``sample_output_points``).
  """
  batch, height, width, channels = target.shape
  if window > min(height, width):
    raise ValueError(f'train.render_window={window} is larger than the '
                     f'{height}x{width} crop')
  rows_rng, cols_rng = jax.random.split(rng)
  top = jax.random.randint(rows_rng, (batch,), 0, height - window + 1)
  left = jax.random.randint(cols_rng, (batch,), 0, width - window + 1)
  values = jax.vmap(lambda image, t, l: jax.lax.dynamic_slice(
      image, (t, l, 0), (window, window, channels)))(target, top, left)
  offsets = jnp.arange(window, dtype=jnp.float32) + 0.5
  ys = (top[:, None].astype(jnp.float32) + offsets) / height   # (B, window)
  xs = (left[:, None].astype(jnp.float32) + offsets) / width
  coords = jnp.stack(jnp.broadcast_arrays(
      xs[:, None, :], ys[:, :, None]), axis=-1)                  # (B, w, w, 2)
  return coords.reshape(batch, window * window, 2), values


def generate_points(networks: Networks, params: Any, batch: Batch,
                    coords: jax.Array, referential: bool) -> jax.Array:
  """Generator output at points coords (B, N, 2) -> (B, N, 3) nlab."""
  generator = nnx.merge(networks.generator, params)
  reference = batch['reference'] if referential else None
  return generator.render_points(batch['gray'], coords, reference)


def discriminate(networks: Networks, params: Any, images: jax.Array
                 ) -> jax.Array:
  """Patch logits of the discriminator, float32 (B, h, w, 1)."""
  discriminator = nnx.merge(networks.discriminator, params)
  return discriminator(images).astype(jnp.float32)


def ema_decay_at(step: jax.Array, decay: float, warmup: bool) -> jax.Array:
  """EMA decay used after update ``step`` (0-based).

  With warmup (as tf.train.ExponentialMovingAverage's ``num_updates``):
  ``min(decay, (1 + step) / (10 + step))``, so early in training the EMA
  follows the weights instead of staying near the random initialisation.
  """
  if not warmup:
    return jnp.asarray(decay, jnp.float32)
  step = step.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


class DiscriminatorUpdate(NamedTuple):
  """What the D half of a step gives the G half and the metrics."""
  params: Any              # D's parameters after the update
  opt_state: Any
  metrics: dict[str, jax.Array]   # discriminator_loss, d_real/fake_mean, ...


def discriminator_update(networks: Networks, state: TrainState,
                         target: jax.Array, fake: jax.Array
                         ) -> DiscriminatorUpdate:
  """One RaLSGAN update of D: real ``target`` vs. ``fake`` as a constant.

  target, fake (B, H, W, 3) nlab. ``fake`` is stopped here, so D's loss
  never reaches the generator's parameters.
  """
  fake_for_d = jax.lax.stop_gradient(fake).astype(jnp.float32)

  def discriminator_loss_fn(d_params):
    d_real = discriminate(networks, d_params, target)
    d_fake = discriminate(networks, d_params, fake_for_d)
    loss = losses.ralsgan_discriminator_loss(d_real, d_fake)
    return loss, (jnp.mean(d_real), jnp.mean(d_fake))

  (d_loss, (d_real_mean, d_fake_mean)), d_grads = jax.value_and_grad(
      discriminator_loss_fn, has_aux=True)(state.discriminator_params)
  d_updates, d_opt_state = networks.discriminator_tx.update(
      d_grads, state.discriminator_opt_state, state.discriminator_params)
  d_params = optax.apply_updates(state.discriminator_params, d_updates)
  return DiscriminatorUpdate(d_params, d_opt_state, {
      'discriminator_loss': d_loss,
      'd_real_mean': d_real_mean,
      'd_fake_mean': d_fake_mean,
      'discriminator_grad_norm': optax.global_norm(d_grads)})


def discriminator_skipped(state: TrainState) -> DiscriminatorUpdate:
  """No GAN this step: D's parameters and optimizer state pass through."""
  zero = jnp.zeros((), jnp.float32)
  return DiscriminatorUpdate(
      state.discriminator_params, state.discriminator_opt_state,
      {'discriminator_loss': zero, 'd_real_mean': zero, 'd_fake_mean': zero,
       'discriminator_grad_norm': zero})


def generator_update(networks: Networks, state: TrainState, target: jax.Array,
                     fake: jax.Array, generator_vjp: Callable,
                     d_params: Any, perceptual_params: Any, *,
                     loss_config: ml_collections.ConfigDict,
                     perceptual_w: float, adversarial_w: float
                     ) -> tuple[Any, Any, Any, dict[str, jax.Array]]:
  """One update of G: content + perceptual + adversarial through the frozen
  new D, pulled back through the saved forward pass ``generator_vjp``.

  target, fake (B, H, W, 3) or, on sampled points, (B, N, 3) nlab. Returns
  (G's parameters, its optimizer state, gradients, metrics); the gradients
  feed the health metrics.
  """
  frozen_d_params = jax.lax.stop_gradient(d_params)
  content_w = loss_config.content_weight

  def generator_loss_fn(fake):
    fake = fake.astype(jnp.float32)
    content = losses.content_loss(fake, target, loss_config.luminance_loss,
                                  loss_config.luminance_weight)
    if perceptual_w:
      perceptual = losses.perceptual_loss(
          perceptual_params, fake, target,
          dtype=jnp.dtype(loss_config.vgg_dtype))
    else:
      perceptual = jnp.zeros((), jnp.float32)
    if adversarial_w:
      adversarial = losses.ralsgan_generator_loss(
          discriminate(networks, frozen_d_params, target),
          discriminate(networks, frozen_d_params, fake))
    else:
      adversarial = jnp.zeros((), jnp.float32)
    total = (content_w * content + perceptual_w * perceptual +
             adversarial_w * adversarial)
    return total, (content, perceptual, adversarial)

  (g_loss, (content, perceptual, adversarial)), fake_cotangent = (
      jax.value_and_grad(generator_loss_fn, has_aux=True)(fake))
  (g_grads,) = generator_vjp(fake_cotangent)
  g_updates, g_opt_state = networks.generator_tx.update(
      g_grads, state.generator_opt_state, state.generator_params)
  g_params = optax.apply_updates(state.generator_params, g_updates)
  return g_params, g_opt_state, g_grads, {
      'generator_loss': g_loss,
      'content_loss': content,
      'perceptual_loss': perceptual,
      'adversarial_loss': adversarial}


def train_step(networks: Networks, state: TrainState, batch: Batch,
               perceptual_params: Any, *,
               referential: bool, loss_config: ml_collections.ConfigDict,
               ema_decay: float, ema_warmup: bool = True,
               gan_active: bool = True, perceptual_active: bool | None = None,
               content_points: int = 0, render_window: int = 0
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One D update then one G update on a global batch; see module doc.

  ``gan_active=False`` (the PSNR warm-up, or an adversarial weight of 0)
  skips D's forward, backward and update entirely (D's parameters and
  optimizer state pass through); ``perceptual_active`` (default: as
  ``gan_active``) switches L_P. With ``render_window`` > 0, G renders one
  random HR window per crop and every loss is taken on it
  (``sample_output_window``); else, with neither extra term active and
  ``content_points`` > 0, G renders and is scored on that many random HR
  pixels per image (``sample_output_points``); else the whole crop.
  """
  if perceptual_active is None:
    perceptual_active = gan_active
  adversarial_w = loss_config.adversarial_weight if gan_active else 0.0
  perceptual_w = loss_config.perceptual_weight if perceptual_active else 0.0
  target = batch['target'].astype(jnp.float32)
  sample_rng = jax.random.fold_in(state.rng, state.step)
  if render_window:
    coords, target = sample_output_window(sample_rng, target, render_window)
    render = lambda p: generate_points(
        networks, p, batch, coords, referential).reshape(target.shape)
  elif content_points and not (adversarial_w or perceptual_w):
    coords, target = sample_output_points(sample_rng, target, content_points)
    render = lambda p: generate_points(networks, p, batch, coords,
                                       referential)
  else:
    render = lambda p: generate(networks, p, batch, referential)
  fake, generator_vjp = jax.vjp(render, state.generator_params)

  d = (discriminator_update(networks, state, target, fake) if adversarial_w
       else discriminator_skipped(state))
  g_params, g_opt_state, g_grads, g_metrics = generator_update(
      networks, state, target, fake, generator_vjp, d.params,
      perceptual_params, loss_config=loss_config, perceptual_w=perceptual_w,
      adversarial_w=adversarial_w)
  decay = ema_decay_at(state.step, ema_decay, ema_warmup)
  ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p,
                     state.generator_ema, g_params)

  metrics = {
      **g_metrics,
      'discriminator_loss': d.metrics['discriminator_loss'],
      'd_real_mean': d.metrics['d_real_mean'],
      'd_fake_mean': d.metrics['d_fake_mean'],
      'generator_grad_norm': optax.global_norm(g_grads),
      'discriminator_grad_norm': d.metrics['discriminator_grad_norm'],
      # Content loss of the L channel alone (normalised units): the SR half.
      'content_l_loss': losses.l1_loss(fake[..., :1], target[..., :1]),
      # Norms of the *updated* weights, so that ``all_finite`` below sees
      # them: a finite loss can still come with an update that overflowed,
      # and that state must never be checkpointed.
      'generator_param_norm': optax.global_norm(g_params),
      'discriminator_param_norm': optax.global_norm(d.params),
      # Per-module norms, gradient norms and update sizes (train/health.py).
      **health.step_metrics(state.generator_params, g_grads, g_params),
  }
  metrics['all_finite'] = jnp.all(jnp.isfinite(
      jnp.stack(list(metrics.values())))).astype(jnp.float32)
  new_state = state.replace(
      step=state.step + 1,
      rng=jax.random.fold_in(state.rng, state.step),
      generator_params=g_params, generator_ema=ema,
      generator_opt_state=g_opt_state,
      discriminator_params=d.params, discriminator_opt_state=d.opt_state)
  return new_state, metrics


def load_perceptual_params(config: ml_collections.ConfigDict,
                           mesh: Mesh) -> Any:
  """VGG16 weights replicated over the mesh (None if L_P is switched off)."""
  if not config.loss.perceptual_weight:
    return None
  return sharding.replicate_tree(losses.load_perceptual_params(config.loss),
                                 mesh)


@dataclasses.dataclass(frozen=True)
class StepOptions:
  """The step's knobs, read from the config once when the step is built (a
  config changed later cannot reach a recompilation): the loss section
  (weights, luminance loss, VGG dtype) and the train section's EMA, content
  points and render window (exclusive: one of them 0). The compute dtype is
  the networks' (``Networks``)."""
  loss_config: ml_collections.FrozenConfigDict
  ema_decay: float
  ema_warmup: bool
  content_points: int
  render_window: int

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'StepOptions':
    train = config.train
    if train.render_window and train.content_points:
      raise UserError('train.render_window and train.content_points are '
                      'exclusive: set one of them to 0')
    return cls(loss_config=ml_collections.FrozenConfigDict(config.loss),
               ema_decay=float(train.ema_decay),
               ema_warmup=bool(train.ema_warmup),
               content_points=int(train.content_points),
               render_window=int(train.render_window))


def make_train_step(config: ml_collections.ConfigDict, mesh: Mesh,
                    networks: Networks
                    ) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
  """``step(state, global_batch, referential, gan_active=True,
  perceptual_active=None) -> (state, metrics)``: ``train_step`` closed over
  ``networks`` and the config, jitted with explicit shardings and the state
  donated (do not use it after the call). The three flags are static: one
  compilation per combination that runs; ``schedule.gan_active`` and
  ``schedule.perceptual_active`` give the last two for a step.

  The perceptual network is loaded here once and passed to the jitted
  function as an argument (a closure constant would be baked into the
  compiled program); ``step.perceptual_params`` exposes it.
  """
  options = StepOptions.from_config(config)

  def step_fn(state, batch, perceptual_params, referential, gan_active,
              perceptual_active):
    return train_step(networks, state, batch, perceptual_params,
                      referential=referential,
                      loss_config=options.loss_config,
                      ema_decay=options.ema_decay,
                      ema_warmup=options.ema_warmup,
                      gan_active=gan_active,
                      perceptual_active=perceptual_active,
                      content_points=options.content_points,
                      render_window=options.render_window)

  replicated = sharding.replicated(mesh)
  jitted = jax.jit(
      step_fn,
      in_shardings=(replicated, sharding.batch_sharded(mesh), replicated),
      out_shardings=(replicated, replicated),
      static_argnums=(3, 4, 5),
      donate_argnums=(0,))
  perceptual_params = load_perceptual_params(config, mesh)

  def step(state: TrainState, batch: Batch, referential: bool,
           gan_active: bool = True, perceptual_active: bool | None = None):
    if perceptual_active is None:
      perceptual_active = gan_active
    return jitted(state, batch, perceptual_params, bool(referential),
                  bool(gan_active),
                  bool(perceptual_active) and perceptual_params is not None)

  step.perceptual_params = perceptual_params
  return step
