"""Analytic FLOP count vs the spec's figure and XLA's count of the HLO."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from scsnet_jax.models import flops
from scsnet_jax.models import generator as gen_lib


def test_spec_figure_for_x4_automatic():
  # ARCHITECTURE.md: ~262 GFLOP for 128x128 gray -> 512x512, automatic.
  assert flops.generator_flops(128, 128, 512, 512) == pytest.approx(262e9,
                                                                     rel=0.005)


def test_project_first_saves_the_first_dense_per_point():
  plain = flops.generator_macs(128, 128, 512, 512)
  projected = flops.generator_macs(128, 128, 512, 512, project_first=True)
  assert plain - projected == 256 * 512 * (512 * 512 - 128 * 128)


def _xla_flops(referential, reference_shape):
  cfg = gen_lib.GeneratorConfig(referential=referential, cpm_chunk_size=0,
                                cpm_project_first=False)
  graphdef, state = nnx.split(nnx.eval_shape(
      lambda: gen_lib.Generator(cfg, rngs=nnx.Rngs(0))))
  args = [jax.ShapeDtypeStruct((1, 32, 32, 1), jnp.float32)]
  if reference_shape:
    args.append(jax.ShapeDtypeStruct(reference_shape, jnp.float32))
  lowered = jax.jit(gen_lib.apply_generator, static_argnums=0,
                    static_argnames=('out_size',)).lower(
                        graphdef, state, *args, out_size=(64, 64))
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


def test_peak_table_lookup():
  assert flops.peak_flops('NVIDIA H100 80GB HBM3', 'bfloat16') == 989e12
  assert flops.peak_flops('cpu', 'float32') is None
