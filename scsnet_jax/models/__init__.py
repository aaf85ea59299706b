"""Flax NNX models of SCSNet (no training code is imported from here)."""

from scsnet_jax.models.generator import Generator, GeneratorConfig, build_generator
from scsnet_jax.models.discriminator import Discriminator
