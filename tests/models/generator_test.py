"""Generator: exact parameter counts, shapes, errors, mode isolation, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scsnet_jax.models import generator as gen_lib
from scsnet_jax.models.generator import Generator, GeneratorConfig
from tests import helpers


def _param_count(module_fn):
  abstract = nnx.eval_shape(module_fn)
  return helpers.count_params(nnx.state(abstract, nnx.Param))


def test_parameter_counts_equal_the_spec():
  auto = lambda: Generator(referential=False, rngs=nnx.Rngs(0))
  ref = lambda: Generator(referential=True, rngs=nnx.Rngs(0))
  assert _param_count(auto) == 9_857_540
  assert _param_count(ref) == 15_150_340
  cpm = nnx.eval_shape(auto).cpm
  assert helpers.count_params(nnx.state(cpm, nnx.Param)) == 330_499


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


# --- luminance_residual (a switchable deviation from the spec) --------------
RESIDUAL_TINY = GeneratorConfig(
    referential=True, init_width=8, encoder_widths=(8, 16),
    source_res_blocks=0, reference_res_blocks=0, cross_attention_qk=8,
    self_attention_qk=8, decoder_res_blocks=(0, 0, 0), texture_res_blocks=0,
    fusion_width=8, cpm_hidden=(8, 8, 8), cpm_chunk_size=64,
    luminance_residual=True)


def _smooth_gray(shape, seed):
  """A smooth random gray image (B, H, W, 1) in [-1, 1]."""
  noise = np.random.default_rng(seed).uniform(-1, 1, shape)
  return np.asarray(jax.image.resize(noise[:, ::4, ::4], shape, 'cubic'),
                    np.float32).clip(-1, 1)


def test_residual_model_starts_at_bicubic_and_spec_model_does_not():
  gray = _smooth_gray((2, 8, 12, 1), 0)
  out_size = (20, 30)
  bicubic = np.asarray(jax.image.resize(gray, (2, *out_size, 1), 'cubic'))
  residual = Generator(RESIDUAL_TINY, rngs=nnx.Rngs(0))
  out = np.asarray(residual(gray, out_size=out_size))
  np.testing.assert_allclose(out[..., :1], bicubic, atol=2e-6)
  np.testing.assert_array_equal(out[..., 1:], 0.0)
  spec = Generator(GeneratorConfig(**{**vars(RESIDUAL_TINY),
                                      'luminance_residual': False}),
                   rngs=nnx.Rngs(0))
  assert np.abs(np.asarray(spec(gray, out_size=out_size))[..., :1] -
                bicubic).mean() > 1e-2


@pytest.fixture(scope='module')
def trained_residual():
  """A residual model whose head is no longer zero (as after training)."""
  model = Generator(RESIDUAL_TINY, rngs=nnx.Rngs(0))
  out = model.cpm.output_layer
  out.kernel.value = 0.1 * jax.random.normal(jax.random.PRNGKey(3),
                                             out.kernel.value.shape)
  return model


def test_residual_points_tiles_and_export_agree_with_the_full_grid(
    trained_residual):
  from scsnet_jax.export import writer as export
  from scsnet_jax.inference import predictor as predictor_lib
  from scsnet_jax.models.cpm import grid_coordinates
  model = trained_residual
  gray = _smooth_gray((1, 160, 144, 1), 1)
  full = np.asarray(model(gray, scale=2))
  head = np.asarray(model.cpm(model.features(gray), full.shape[1:3]))
  assert np.abs(full[..., 0] - head[..., 0]).mean() > 0.05   # base added
  points = model.render_points(gray, grid_coordinates(320, 288)[None])
  np.testing.assert_allclose(np.asarray(points).reshape(full.shape), full,
                             atol=1e-5)
  graphdef, state = nnx.split(model)
  params = state.to_pure_dict()
  untiled, _ = predictor_lib.Predictor(params, RESIDUAL_TINY).predict_nlab(
      gray, None, (320, 288))
  np.testing.assert_allclose(untiled, full, atol=1e-5)
  tiled, _ = predictor_lib.Predictor(params, RESIDUAL_TINY, tile=128,
                                 tile_overlap=64).predict_nlab(
                                     gray, None, (320, 288))
  # Same tolerance as the spec model's tiling (attention sees its window).
  np.testing.assert_allclose(tiled, full, atol=5e-3)
  artifact = export.export_artifact(graphdef, params, 'automatic', 2)
  np.testing.assert_allclose(np.asarray(artifact.call(gray)), full,
                             atol=1e-5)


def test_res_branch_init_scale_scales_only_second_convs_and_tames_growth():
  cfg = GeneratorConfig()
  default = Generator(cfg, rngs=nnx.Rngs(4))
  scaled = Generator(GeneratorConfig(res_branch_init_scale=0.1),
                     rngs=nnx.Rngs(4))
  flat_default = dict(nnx.to_flat_state(nnx.state(default, nnx.Param)))
  flat_scaled = dict(nnx.to_flat_state(nnx.state(scaled, nnx.Param)))
  assert flat_default.keys() == flat_scaled.keys()
  second_convs = 0
  for path, value in flat_default.items():
    ours = flat_scaled[path].value
    if 'conv2' in path and path[-1] == 'kernel':
      second_convs += 1
      np.testing.assert_allclose(ours, 0.1 * value.value, rtol=1e-6)
    else:
      np.testing.assert_array_equal(ours, value.value)
  # Source encoder 1 + 3, colour decoder 2 + 2 + 1, texture encoder 20.
  assert second_convs == 1 + 3 + 5 + 20
  # Why: at Flax's default init each ResBlock grows activations ~1.5x, so
  # the 20-block texture encoder amplifies its input by orders of magnitude.
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 16, 16, 64))
  growth = {name: float(jnp.std(model.texture_encoder(x)) / jnp.std(x))
            for name, model in (('default', default), ('scaled', scaled))}
  assert growth['default'] > 20 and growth['scaled'] < 3, growth


# ------------------------------------------ issue 20: one abstract build ---
def test_abstract_generator_is_shapes_only_and_matches_a_real_one():
  from tests.export.tiny import TINY, config_dict
  real = nnx.split(Generator(TINY, rngs=nnx.Rngs(0)))
  for spec in (TINY, config_dict(TINY)):   # a GeneratorConfig or config.model
    abstract = gen_lib.abstract_generator(spec)
    graphdef, state = nnx.split(abstract)
    assert graphdef == real[0]
    leaves = jax.tree.leaves(state)
    assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), state.to_pure_dict()) == (
        jax.tree.map(lambda x: (x.shape, x.dtype), real[1].to_pure_dict()))
  bf16 = gen_lib.abstract_generator(TINY, dtype='bfloat16')
  assert bf16.config.dtype == 'bfloat16' and TINY.dtype == 'float32'
  assert nnx.graphdef(bf16) != real[0]


# --- reference_residual (a switchable deviation from the spec) --------------
def test_reference_residual_model_starts_as_the_automatic_one():
  """With reference_residual the untrained referential output equals the
  automatic output for any reference; the spec's model does not. Same
  parameter count either way (the spec's widths)."""
  # (luminance_residual off: its zero head would hide any difference)
  spec_config = GeneratorConfig(**{**vars(RESIDUAL_TINY),
                                   'luminance_residual': False})
  config = GeneratorConfig(**{**vars(spec_config),
                              'reference_residual': True})
  model = Generator(config, rngs=nnx.Rngs(0))
  gray = _smooth_gray((2, 8, 12, 1), 0)
  reference = np.random.default_rng(1).uniform(
      -0.5, 0.5, (2, 8, 8, 3)).astype(np.float32)
  automatic = np.asarray(model(gray, out_size=(16, 24)))
  np.testing.assert_allclose(
      np.asarray(model(gray, reference, out_size=(16, 24))), automatic,
      atol=1e-6)
  spec = Generator(spec_config, rngs=nnx.Rngs(0))
  assert np.abs(np.asarray(spec(gray, reference, out_size=(16, 24))) -
                np.asarray(spec(gray, out_size=(16, 24)))).max() > 1e-3
  count = lambda m: helpers.count_params(nnx.state(m, nnx.Param))
  assert count(model) == count(spec)


def test_reference_residual_adds_the_pvc_output_to_f_s():
  """Once PVCAttn's last conv is non-zero, f_int = f_s + PVCAttn(f_s, f_r):
  re-derived from the submodules."""
  config = GeneratorConfig(**{**vars(RESIDUAL_TINY),
                              'reference_residual': True})
  model = Generator(config, rngs=nnx.Rngs(0))
  out = model.pvc_attention.fuse_out
  out.kernel.value = 0.1 * jax.random.normal(jax.random.PRNGKey(2),
                                             out.kernel.value.shape)
  gray = _smooth_gray((1, 8, 8, 1), 2)
  reference = np.random.default_rng(3).uniform(
      -0.5, 0.5, (1, 8, 8, 3)).astype(np.float32)
  f_init = model.init_conv(gray)
  f_s = model.source_encoder(f_init)
  f_int = f_s + model.pvc_attention(f_s, model.reference_encoder(reference))
  expected = model.fusion(jnp.concatenate(
      [model.texture_encoder(f_init), model.color_decoder(f_int)], axis=-1))
  np.testing.assert_allclose(np.asarray(model.features(gray, reference)),
                             np.asarray(expected), atol=1e-5)


# --- reference_keys (a switchable deviation from the spec) ------------------
LUMINANCE_KEYS = GeneratorConfig(**{**vars(RESIDUAL_TINY),
                                    'luminance_residual': False,
                                    'reference_keys': 'luminance',
                                    'source_res_blocks': 1,
                                    'pyramid_levels': 2})


def test_luminance_keys_match_the_source_side_at_init():
  """Keys from the reference's L through the source encoder and the source
  projection, key projection tied to the query's: for a reference whose L
  is the gray input itself, every key equals its position's query (exact);
  the parameter count is the spec's."""
  from scsnet_jax.models.attention import avg_pool_ceil
  from scsnet_jax.models.layers import lrelu
  model = Generator(LUMINANCE_KEYS, rngs=nnx.Rngs(0))
  spec = Generator(GeneratorConfig(**{**vars(LUMINANCE_KEYS),
                                      'reference_keys': 'reference'}),
                   rngs=nnx.Rngs(0))
  count = lambda m: helpers.count_params(nnx.state(m, nnx.Param))
  assert count(model) == count(spec)
  gray = _smooth_gray((1, 16, 16, 1), 4)
  chroma = np.random.default_rng(5).uniform(-0.3, 0.3, (1, 16, 16, 2))
  reference = np.concatenate([gray, chroma], -1).astype(np.float32)
  f_s = model.source_encoder(model.init_conv(gray))
  f_keys = model.source_encoder(model.init_conv(reference[..., :1]))
  np.testing.assert_allclose(np.asarray(f_keys), np.asarray(f_s), atol=1e-6)
  for index, level in enumerate(model.pvc_attention.levels):
    np.testing.assert_array_equal(np.asarray(level.valve.key.kernel.value),
                                  np.asarray(level.valve.query.kernel.value))
    s = lrelu(level.source_proj(avg_pool_ceil(f_s, 2**index)))
    keys_side = lrelu(level.source_proj(avg_pool_ceil(f_keys, 2**index)))
    np.testing.assert_allclose(np.asarray(level.valve.key(keys_side)),
                               np.asarray(level.valve.query(s)), atol=1e-6)


def test_luminance_keys_forward_re_derived_from_submodules():
  model = Generator(LUMINANCE_KEYS, rngs=nnx.Rngs(1))
  gray = _smooth_gray((2, 8, 8, 1), 6)
  reference = np.random.default_rng(7).uniform(
      -0.5, 0.5, (2, 12, 8, 3)).astype(np.float32)
  f_init = model.init_conv(gray)
  f_s = model.source_encoder(f_init)
  f_r = model.reference_encoder(reference)
  f_keys = model.source_encoder(model.init_conv(reference[..., :1]))
  f_int = model.pvc_attention(f_s, f_r, f_keys)   # no reference_residual
  expected = model.fusion(jnp.concatenate(
      [model.texture_encoder(f_init), model.color_decoder(f_int)], axis=-1))
  np.testing.assert_allclose(np.asarray(model.features(gray, reference)),
                             np.asarray(expected), atol=1e-5)
  with pytest.raises(ValueError, match='reference_keys'):
    GeneratorConfig(reference_keys='colour')
