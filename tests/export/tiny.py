"""A tiny referential generator config for export tests (and the app's)."""

from scsnet_jax.models.generator import GeneratorConfig

TINY = GeneratorConfig(
    referential=True, init_width=8, encoder_widths=(8, 16),
    source_res_blocks=0, reference_res_blocks=0, cross_attention_qk=8,
    self_attention_qk=8, decoder_res_blocks=(0, 0, 0), texture_res_blocks=0,
    fusion_width=8, cpm_hidden=(8, 8, 8), cpm_chunk_size=64)


def config_dict(config: GeneratorConfig) -> dict:
  """The dataclass as the ``model_config`` dict an export stores."""
  return {k: list(v) if isinstance(v, tuple) else v
          for k, v in vars(config).items()}
