"""PatchGAN discriminator of the spec (relativistic, on HR normalised LAB).

``lrelu(conv(4,3,64,2))``, ``lrelu(IN(conv(4,64,128,2)))``,
``lrelu(IN(conv(4,128,256,2)))``, ``lrelu(IN(conv(4,256,512,1)))``,
``conv(4,512,1,1)``: (B, H, W, 3) -> (B, ceil(H/8), ceil(W/8), 1) logits, one
per overlapping patch. Instance norm (per image and channel, affine, no
running statistics) keeps each image's logits independent of the rest of the
batch, so the discriminator behaves the same however the batch is sharded.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from scsnet_jax.models.layers import conv, lrelu

# (output channels, stride, instance-normalised) of the four hidden layers.
HIDDEN_LAYERS = ((64, 2, False), (128, 2, True), (256, 2, True),
                 (512, 1, True))
KERNEL_SIZE = 4
# PyTorch's InstanceNorm2d epsilon (flax's default is 1e-6).
INSTANCE_NORM_EPSILON = 1e-5


class InstanceNorm(nnx.InstanceNorm):
  """Per-image, per-channel normalisation over H and W, with scale and bias.

  Statistics are always computed in float32 (a bf16 variance over a large
  patch loses too many bits); the result goes back to the input's dtype.
  No running statistics are kept: train and eval behave the same.
  """

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    super().__init__(channels, epsilon=INSTANCE_NORM_EPSILON,
                     dtype=jnp.float32, param_dtype=jnp.float32, rngs=rngs)

  def __call__(self, x):
    return super().__call__(x.astype(jnp.float32)).astype(x.dtype)


class DiscriminatorLayer(nnx.Module):
  """``lrelu([IN](conv(4, cin, cout, stride)(x)))``."""

  def __init__(self, cin: int, cout: int, stride: int, normalize: bool, *,
               dtype, rngs: nnx.Rngs):
    self.conv = conv(KERNEL_SIZE, cin, cout, stride=stride, dtype=dtype,
                     rngs=rngs)
    self.norm = InstanceNorm(cout, rngs=rngs) if normalize else None

  def __call__(self, x):
    x = self.conv(x)
    if self.norm is not None:
      x = self.norm(x)
    return lrelu(x)


class Discriminator(nnx.Module):
  """PatchGAN: (B, H, W, 3) nlab -> (B, ceil(H/8), ceil(W/8), 1) float32 logits.

  ``dtype`` is the compute dtype of the convolutions (parameters stay float32,
  instance-norm statistics and the returned logits are float32).
  """

  def __init__(self, *, in_channels: int = 3, dtype=jnp.float32,
               rngs: nnx.Rngs):
    layers = []
    cin = in_channels
    for cout, stride, normalize in HIDDEN_LAYERS:
      layers.append(DiscriminatorLayer(cin, cout, stride, normalize,
                                       dtype=dtype, rngs=rngs))
      cin = cout
    self.layers = nnx.List(layers)
    self.to_logits = conv(KERNEL_SIZE, cin, 1, dtype=dtype, rngs=rngs)
    self.dtype = dtype

  def __call__(self, images):
    x = images.astype(self.dtype)
    for layer in self.layers:
      x = layer(x)
    return self.to_logits(x).astype(jnp.float32)
