"""Analytic FLOP count vs a hand count of a tiny configuration, the spec's
figure and XLA's count of the HLO."""

import logging

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from scsnet_jax import flops
from scsnet_jax.models import generator as gen_lib


def test_spec_figure_for_x4_automatic():
  # docs/architecture.md: ~262 GFLOP for 128x128 gray -> 512x512, automatic.
  assert flops.generator_flops(128, 128, 512, 512) == pytest.approx(262e9,
                                                                     rel=0.005)


def test_project_first_saves_the_first_dense_per_point():
  plain = flops.generator_macs(128, 128, 512, 512)
  projected = flops.generator_macs(128, 128, 512, 512, project_first=True)
  assert plain - projected == 256 * 512 * (512 * 512 - 128 * 128)


# A tiny configuration, every width and depth distinct, so that a swapped
# width, block count or resolution changes the count.
TINY = gen_lib.GeneratorConfig(
    init_width=4, encoder_widths=(6, 8), source_res_blocks=2,
    reference_res_blocks=1, cross_attention_qk=4, pyramid_levels=3,
    self_attention_qk=2, decoder_res_blocks=(1, 2, 3), texture_res_blocks=1,
    fusion_width=10, cpm_hidden=(12, 6))
# Gray 8x16 (full 128 px, half 4x8 = 32, quarter 2x4 = 8) -> 16x24 (384
# points); reference 12x8 (full 96, half 6x4 = 24, quarter 3x2 = 6).
GRAY, OUT, REFERENCE = (8, 16), (16, 24), (12, 8)


def _tiny_automatic_macs():
  """Multiply-adds of TINY for GRAY -> OUT, counted layer by layer from
  docs/architecture.md (a k x k conv at P output pixels: P * k*k * cin * cout)."""
  return sum([
      128 * 9 * 1 * 4,          # f_init = conv(3,1,4), full
      # Source encoder.
      32 * 9 * 4 * 6,           # Down(4,6), stride 2 -> half
      2 * 32 * 9 * 6 * 6,       # ResBlock(6) x1, half
      8 * 9 * 6 * 8,            # Down(6,8) -> quarter
      2 * 2 * 8 * 9 * 8 * 8,    # ResBlock(8) x2 (source_res_blocks), quarter
      # Colour decoder: SelfAttention(8) with q, k width 2.
      8 * 8 * 2 + 8 * 8 * 2 + 8 * 8 * 8,  # q, k, v 1x1 convs, quarter
      8 * 8 * 2 + 8 * 8 * 8,    # q k^T (8x8 pairs, 2 wide), then a v (8 wide)
      1 * 2 * 8 * 9 * 8 * 8,    # ResBlock(8) x1, quarter
      32 * 9 * 8 * 6,           # Up(8,6): conv after the x2 upsample, half
      2 * 2 * 32 * 9 * 6 * 6,   # ResBlock(6) x2, half
      128 * 9 * 6 * 4,          # Up(6,4), full
      3 * 2 * 128 * 9 * 4 * 4,  # ResBlock(4) x3, full
      128 * 9 * 4 * 4,          # conv(3,4,4) -> f_color
      # Texture encoder.
      1 * 2 * 128 * 9 * 4 * 4,  # ResBlock(4) x1 (texture_res_blocks), full
      128 * 9 * 4 * 4,          # conv(3,4,4)
      128 * 9 * 8 * 10,         # fusion conv(3, 4+4, 10) -> f_cs
      # CPM MLP per output point: (10 + 2) -> 12 -> 6 -> 3.
      384 * (12 * 12 + 12 * 6 + 6 * 3),
  ])


def _tiny_referential_extra_macs():
  """What referential mode adds to the count above, for REFERENCE."""
  encoder = sum([
      96 * 9 * 3 * 4,           # stem conv(3,3,4), reference full
      24 * 9 * 4 * 6,           # Down(4,6), reference half
      2 * 24 * 9 * 6 * 6,       # ResBlock(6)
      6 * 9 * 6 * 8,            # Down(6,8), reference quarter
      1 * 2 * 6 * 9 * 8 * 8,    # ResBlock(8) x1 (reference_res_blocks)
  ])
  # Source / reference pixels per pyramid level (pool 1, 2, 4 in ceil mode):
  # source 2x4, 1x2, 1x1; reference 3x2, 2x1, 1x1.
  pyramid = 0
  for ns, nr in ((8, 6), (2, 2), (1, 1)):
    pyramid += sum([
        ns * 8 * 8 + nr * 8 * 8,  # lrelu(conv(1,8,8)) per side
        ns * 8 * 4 + nr * 8 * 4,  # q from s, k from r (width 4)
        nr * 8 * 8,               # v from r
        ns * nr * 4 + ns * nr * 8,  # q k^T, then a v
        ns * 16 * 8,              # valve conv(1, 8+8, 8)
        ns * 8 * 16,              # valve conv(1, 8, 2*8)
    ])
  fuse = 8 * 24 * 8 + 8 * 9 * 8 * 8  # conv(1,3*8,8), conv(3,8,8), quarter
  return encoder + pyramid + fuse


def test_tiny_configuration_matches_a_hand_count():
  automatic = _tiny_automatic_macs()
  assert automatic == 514_048  # the sum above, added up once by hand
  assert flops.generator_macs(*GRAY, *OUT, config=TINY) == automatic
  assert flops.generator_flops(*GRAY, *OUT, config=TINY) == 2 * automatic
  referential = automatic + _tiny_referential_extra_macs()
  assert flops.generator_macs(*GRAY, *OUT, reference_size=REFERENCE,
                              config=TINY) == referential
  # Projecting first moves the feature half of the first Dense (10 -> 12)
  # from the 384 output points to the 128 LR pixels.
  assert flops.generator_macs(*GRAY, *OUT, config=TINY,
                              project_first=True) == (
                                  automatic - (384 - 128) * 10 * 12)


def _xla_flops(referential, reference_shape, size=32, out=64):
  cfg = gen_lib.GeneratorConfig(referential=referential, cpm_chunk_size=0,
                                cpm_project_first=False)
  graphdef, state = nnx.split(nnx.eval_shape(
      lambda: gen_lib.Generator(cfg, rngs=nnx.Rngs(0))))
  args = [jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)]
  if reference_shape:
    args.append(jax.ShapeDtypeStruct(reference_shape, jnp.float32))
  lowered = jax.jit(gen_lib.apply_generator, static_argnums=0,
                    static_argnames=('out_size',)).lower(
                        graphdef, state, *args, out_size=(out, out))
  analysis = lowered.cost_analysis()
  return float((analysis[0] if isinstance(analysis, list) else analysis)
               ['flops'])


@pytest.mark.parametrize('reference_shape', [None, (1, 16, 24, 3)])
def test_matches_xla_count_of_unchunked_hlo(reference_shape):
  """XLA also counts biases, activations and the broadcast attention heads,
  so agreement is to a few percent, not exact."""
  analytic = flops.generator_flops(
      32, 32, 64, 64, reference_size=reference_shape and reference_shape[1:3])
  xla = _xla_flops(reference_shape is not None, reference_shape)
  assert xla == pytest.approx(analytic, rel=0.05)


def test_spec_size_matches_xla_count():
  """128x128 -> 512x512, automatic: there the convolutions dominate and
  XLA's count of the unchunked HLO is within 0.1% of the analytic one
  (measured: 261.95 vs 261.71 GFLOP). XLA counts a chunked CPM (lax.map)
  once, not once per chunk, which is why the CPM is left unchunked."""
  xla = _xla_flops(False, None, size=128, out=512)
  logging.warning('XLA cost analysis, 128x128 -> 512x512 automatic: '
                  '%.1f GFLOP', xla / 1e9)
  assert xla == pytest.approx(flops.generator_flops(128, 128, 512, 512),
                              rel=0.005)


def test_peak_table_lookup():
  assert flops.peak_flops('NVIDIA H100 80GB HBM3', 'bfloat16') == 989e12
  assert flops.peak_flops('cpu', 'float32') is None
