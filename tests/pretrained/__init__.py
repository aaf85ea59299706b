"""Tests of scsnet_jax/pretrained/."""
