"""SCSNet in JAX/Flax: simultaneous colorization and super-resolution."""

__version__ = '0.1.0'
