"""evaluation/common.py: the one padding, renderer and result type that the
training loop's validation and --mode=eval share."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scsnet_jax.evaluation import common, metrics, protocol, validation
from scsnet_jax.models.generator import Generator, GeneratorConfig

TINY = GeneratorConfig(
    referential=True, init_width=8, encoder_widths=(8, 16),
    source_res_blocks=0, reference_res_blocks=0, cross_attention_qk=8,
    self_attention_qk=8, decoder_res_blocks=(0, 0, 0), texture_res_blocks=0,
    fusion_width=8, cpm_hidden=(8, 8, 8), cpm_chunk_size=64)


def test_pad_batch_repeats_the_last_row_to_the_next_multiple():
  rows = np.arange(5 * 2).reshape(5, 2)
  padded = common.pad_batch(rows, 4)
  np.testing.assert_array_equal(padded, rows[[0, 1, 2, 3, 4, 4, 4, 4]])
  assert common.pad_batch(rows, 5) is rows
  assert common.pad_batch(None, 4) is None
  np.testing.assert_array_equal(common.pad_batch(rows[:3], 8),
                                rows[[0, 1, 2, 2, 2, 2, 2, 2]])


def test_prefixed_names_writer_scalars():
  assert common.prefixed('val', {'automatic/model/l_psnr': 1.5}) == {
      'val/automatic/model/l_psnr': 1.5}


def test_the_renderer_is_the_models_own_call_in_float32():
  model = Generator(TINY, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  rng = np.random.default_rng(0)
  gray = rng.uniform(-1, 1, (2, 8, 12, 1)).astype(np.float32)
  reference = rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
  got = jax.jit(common.render_nlab, static_argnums=(0, 4))(
      graphdef, state, gray, reference, (16, 20))
  assert got.dtype == jnp.float32 and got.shape == (2, 16, 20, 3)
  np.testing.assert_allclose(got, model(gray, reference, out_size=(16, 20)),
                             atol=1e-5)


def test_both_evaluations_keep_the_one_interface():
  for evaluator in (validation.Validator, protocol.ProtocolEvaluator):
    assert evaluator.prefix in ('val', 'eval')
    for method in ('run', 'summary'):
      assert list(inspect.signature(getattr(evaluator, method)).parameters
                  )[:2] == (['self', 'params'] if method == 'run'
                            else ['self', 'evaluation'])
  assert validation.Validator.prefix != protocol.ProtocolEvaluator.prefix


def test_to_uint8_is_one_rounding_for_numpy_and_jax():
  """Clip, scale by 255, round half to even: numpy in float64 (the host
  metrics), a jax array in its own dtype (on device, traced too)."""
  values = np.array([-0.2, 0.0, 0.5 / 255, 1.5 / 255, 0.4999, 1.0, 1.3,
                     np.nextafter(2.5 / 255, 1)], np.float32)
  want64 = np.clip(np.round(values.astype(np.float64) * 255), 0, 255)
  want32 = np.round(np.clip(values, 0, 1) * np.float32(255))
  np.testing.assert_array_equal(metrics.to_uint8(values), want64)
  assert metrics.to_uint8(values).dtype == np.uint8
  on_device = metrics.to_uint8(jnp.asarray(values))
  assert isinstance(on_device, jax.Array) and on_device.dtype == jnp.uint8
  np.testing.assert_array_equal(on_device, want32)
  np.testing.assert_array_equal(jax.jit(metrics.to_uint8)(
      jnp.asarray(values)), want32)
  # The float32 and float64 roundings differ only at exact halves.
  assert np.abs(want32 - want64).max() <= 1
