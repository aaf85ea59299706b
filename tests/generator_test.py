"""Generator: exact parameter counts, shapes, errors, mode isolation, jit."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scsnet_jax.models import generator as gen_lib
from scsnet_jax.models.generator import Generator, GeneratorConfig


def _param_count(module_fn):
  abstract = nnx.eval_shape(module_fn)
  return gen_lib.count_params(nnx.state(abstract, nnx.Param))


def test_parameter_counts_equal_the_spec():
  auto = lambda: Generator(referential=False, rngs=nnx.Rngs(0))
  ref = lambda: Generator(referential=True, rngs=nnx.Rngs(0))
  assert _param_count(auto) == 9_857_540
  assert _param_count(ref) == 15_150_340
  cpm = nnx.eval_shape(auto).cpm
  assert gen_lib.count_params(nnx.state(cpm, nnx.Param)) == 330_499


@pytest.fixture(scope='module')
def model():
  return Generator(referential=True, rngs=nnx.Rngs(0))


@pytest.fixture(scope='module')
def params(model):
  return nnx.split(model)


@pytest.mark.parametrize('scale,expected', [(0.5, (4, 6)), (1, (8, 12)),
                                            (2.5, (20, 30)), (3.7, (30, 44)),
                                            (4, (32, 48)), (6.3, (50, 76))])
def test_output_size_follows_round_of_scale(model, scale, expected):
  out = model(jnp.zeros((2, 8, 12, 1)), scale=scale)
  assert out.shape == (2, *expected, 3)
  assert out.dtype == jnp.float32


def test_explicit_size_and_reference_of_other_size(model):
  gray = jnp.zeros((1, 12, 8, 1))
  reference = jnp.zeros((1, 16, 4, 3))
  assert model(gray, reference, out_size=(13, 7)).shape == (1, 13, 7, 3)


@pytest.mark.parametrize('kwargs,shape,ref_shape,match', [
    ({'scale': 2}, (1, 10, 8, 1), None, 'multiples of 4'),
    ({'scale': 0}, (1, 8, 8, 1), None, 'positive'),
    ({'scale': -1.5}, (1, 8, 8, 1), None, 'positive'),
    ({'scale': float('nan')}, (1, 8, 8, 1), None, 'positive'),
    ({'scale': 2}, (1, 8, 8, 3), None, r'\(B, H, W, 1\)'),
    ({'scale': 2}, (1, 8, 8, 1), (1, 8, 8, 1), 'reference'),
    ({'scale': 2}, (1, 8, 8, 1), (1, 6, 8, 3), 'multiples of 4'),
    ({'scale': 2, 'out_size': (3, 3)}, (1, 8, 8, 1), None, 'exactly one'),
    ({'out_size': (0, 3)}, (1, 8, 8, 1), None, 'positive'),
])
def test_clear_errors(model, kwargs, shape, ref_shape, match):
  reference = None if ref_shape is None else jnp.zeros(ref_shape)
  with pytest.raises(ValueError, match=match):
    model(jnp.zeros(shape), reference, **kwargs)


def test_automatic_generator_refuses_reference():
  auto = nnx.eval_shape(lambda: Generator(rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match='referential=False'):
    auto._validate(jnp.zeros((1, 8, 8, 1)), jnp.zeros((1, 8, 8, 3)))


def _grad_norms_by_part(graphdef, state, reference):
  gray = jnp.asarray(np.random.default_rng(0).normal(size=(1, 8, 8, 1)),
                     jnp.float32)

  def loss(p):
    out = nnx.merge(graphdef, p)(gray, reference, scale=2)
    return jnp.sum(out**2)

  grads = jax.grad(loss)(state)
  return {part: float(sum(jnp.abs(x).sum() for x in
                          jax.tree.leaves(grads[part])))
          for part in ('reference_encoder', 'pvc_attention', 'source_encoder')}


def test_automatic_mode_reads_no_reference_parameters(params):
  graphdef, state = params
  auto = _grad_norms_by_part(graphdef, state, None)
  assert auto['reference_encoder'] == 0.0 and auto['pvc_attention'] == 0.0
  assert auto['source_encoder'] > 0.0
  # The same check in referential mode must see non-zero gradients.
  reference = jnp.asarray(np.random.default_rng(1).normal(size=(1, 8, 8, 3)),
                          jnp.float32)
  ref = _grad_norms_by_part(graphdef, state, reference)
  assert ref['reference_encoder'] > 0.0 and ref['pvc_attention'] > 0.0


def test_render_points_equals_grid(model):
  gray = jnp.asarray(np.random.default_rng(2).normal(size=(1, 8, 8, 1)),
                     jnp.float32)
  grid = model(gray, out_size=(5, 6))
  xs, ys = (np.arange(6) + 0.5) / 6, (np.arange(5) + 0.5) / 5
  coords = np.stack(np.meshgrid(xs, ys), -1).reshape(1, 30, 2)
  points = model.render_points(gray, jnp.asarray(coords, jnp.float32))
  np.testing.assert_allclose(np.asarray(points).reshape(1, 5, 6, 3),
                             np.asarray(grid), rtol=1e-5, atol=1e-5)


def test_jit_compiles_once_per_shape_and_mode(params):
  graphdef, state = params
  fn = jax.jit(gen_lib.apply_generator, static_argnums=0,
               static_argnames=('out_size',))
  gray = jnp.zeros((1, 8, 8, 1))
  ref = jnp.zeros((1, 8, 8, 3))
  fn(graphdef, state, gray, out_size=(16, 16))
  fn(graphdef, state, gray + 1, out_size=(16, 16))
  assert fn._cache_size() == 1
  fn(graphdef, state, gray, ref, out_size=(16, 16))
  fn(graphdef, state, gray, out_size=(12, 16))
  assert fn._cache_size() == 3


def test_config_mapping_round_trip():
  cfg = GeneratorConfig.from_mapping(gen_lib.model_config_dict())
  assert cfg == GeneratorConfig()
  with pytest.raises(ValueError, match='unknown'):
    GeneratorConfig.from_mapping({'widht': 3})


def test_log_forward_flops_from_xla_cost_analysis():
  """Reports XLA's FLOP count for 128x128 -> 512x512 (spec: ~262 GFLOP).

  A figure to report, not an assertion on the value: XLA's count depends on
  the backend. The analytic count (``scsnet_jax.flops``) is what is asserted.
  """
  abstract = nnx.eval_shape(lambda: Generator(rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  gray = jax.ShapeDtypeStruct((1, 128, 128, 1), jnp.float32)
  lowered = jax.jit(gen_lib.apply_generator, static_argnums=0,
                    static_argnames=('out_size',)).lower(
                        graphdef, state, gray, out_size=(512, 512))
  analysis = lowered.cost_analysis()
  if isinstance(analysis, list):
    analysis = analysis[0]
  flops = float(analysis.get('flops', 0.0))
  logging.warning('XLA cost analysis, 128x128 -> 512x512 automatic: %.1f GFLOP',
                  flops / 1e9)
  assert flops > 0
