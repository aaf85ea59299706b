"""export/format.py: the symbolic inputs every format is traced with, and the
one colourise function both writers trace."""

import jax
import numpy as np
from flax import nnx

from scsnet_jax.export import format as export_format
from scsnet_jax.models.generator import Generator
from tests.export.tiny import TINY


def test_input_specs_are_multiples_of_the_input_multiple_with_free_batch():
  (gray,) = export_format.input_specs('automatic')
  gray_r, reference = export_format.input_specs('referential')
  assert str(gray.shape) == str(gray_r.shape) == '(b, 4*h, 4*w, 1)'
  assert str(reference.shape) == '(b, 4*hr, 4*wr, 3)'
  assert gray.dtype == reference.dtype == np.float32


def test_colorize_fn_is_the_live_generator_at_one_scale():
  gen = Generator(TINY, rngs=nnx.Rngs(3))
  graphdef, state = nnx.split(gen)
  colorize = export_format.colorize_fn(graphdef, state.to_pure_dict(), 2)
  gray = np.random.default_rng(0).uniform(-1, 1, (1, 8, 12, 1)).astype(
      np.float32)
  reference = np.full((1, 4, 4, 3), 0.2, np.float32)
  # The same program as the live module's call (traced, not run: fast).
  assert str(jax.make_jaxpr(colorize)(gray, reference)) == str(
      jax.make_jaxpr(lambda g, r: gen(g, r, scale=2))(gray, reference))
  assert jax.eval_shape(colorize, gray).shape == (1, 16, 24, 3)
  assert export_format.artifact_name('automatic', 3) == (
      'generator_automatic_x3.jax_export')
  assert export_format.onnx_name('referential', 2) == (
      'generator_referential_x2.onnx')
