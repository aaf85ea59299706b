"""Analytic forward FLOPs of the generator (2 FLOPs per multiply-add).

XLA's ``cost_analysis()`` is unreliable for utilisation figures: on GPU it
leaves out convolutions lowered to cuDNN calls, and it counts a ``lax.map``
(the CPM's chunk loop) body once instead of once per chunk. This module
counts the spec's layers directly, from the same ``GeneratorConfig`` the
model is built from; attention is counted as the spec's one-head form.
"""

from __future__ import annotations

import math

from scsnet_jax.models.generator import GeneratorConfig


def _conv(pixels, k, cin, cout):
  return pixels * k * k * cin * cout


def _res(pixels, channels, n=1):
  return n * 2 * _conv(pixels, 3, channels, channels)


def _encoder(pixels_half, pixels_quarter, cfg, blocks):
  mid, wide = cfg.encoder_widths
  return (_conv(pixels_half, 3, cfg.init_width, mid) + _res(pixels_half, mid)
          + _conv(pixels_quarter, 3, mid, wide)
          + _res(pixels_quarter, wide, blocks))


def _attention(n_query, n_key, qk, value):
  return n_query * n_key * (qk + value)


def generator_macs(height, width, out_height, out_width, *,
                   reference_size=None, config: GeneratorConfig | None = None,
                   project_first: bool = False) -> int:
  """Multiply-adds of one image's forward pass (batch 1)."""
  cfg = config or GeneratorConfig()
  mid, wide = cfg.encoder_widths
  full, half = height * width, (height // 2) * (width // 2)
  quarter = (height // 4) * (width // 4)
  macs = _conv(full, 3, 1, cfg.init_width)
  macs += _encoder(half, quarter, cfg, cfg.source_res_blocks)
  if reference_size is not None:
    hr, wr = reference_size
    macs += _conv(hr * wr, 3, 3, cfg.init_width)
    macs += _encoder((hr // 2) * (wr // 2), (hr // 4) * (wr // 4), cfg,
                     cfg.reference_res_blocks)
    for level in range(cfg.pyramid_levels):
      f = 4 * 2**level
      ns = math.ceil(height / f) * math.ceil(width / f)
      nr = math.ceil(hr / f) * math.ceil(wr / f)
      macs += (ns + nr) * wide * wide  # per-level projections
      macs += (ns + nr) * wide * cfg.cross_attention_qk + nr * wide * wide
      macs += _attention(ns, nr, cfg.cross_attention_qk, wide)
      macs += ns * (2 * wide * wide + wide * 2 * wide)  # valve
    macs += quarter * cfg.pyramid_levels * wide * wide
    macs += _conv(quarter, 3, wide, wide)
  n_wide, n_mid, n_init = cfg.decoder_res_blocks
  macs += quarter * wide * (2 * cfg.self_attention_qk + wide)
  macs += _attention(quarter, quarter, cfg.self_attention_qk, wide)
  macs += _res(quarter, wide, n_wide) + _conv(half, 3, wide, mid)
  macs += _res(half, mid, n_mid) + _conv(full, 3, mid, cfg.init_width)
  macs += _res(full, cfg.init_width, n_init)
  macs += _conv(full, 3, cfg.init_width, cfg.init_width)
  macs += _res(full, cfg.init_width, cfg.texture_res_blocks)
  macs += _conv(full, 3, cfg.init_width, cfg.init_width)
  macs += _conv(full, 3, 2 * cfg.init_width, cfg.fusion_width)
  widths = [cfg.fusion_width + 2, *cfg.cpm_hidden, 3]
  per_point = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
  points = out_height * out_width
  if project_first:
    per_point -= cfg.fusion_width * widths[1]
    macs += full * cfg.fusion_width * widths[1]
  return macs + points * per_point


def generator_flops(*args, **kwargs) -> int:
  """2 x :func:`generator_macs`."""
  return 2 * generator_macs(*args, **kwargs)


# Dense peak FLOP/s (no sparsity) by device kind, for utilisation figures.
PEAK_FLOPS = {
    'H100': {'bfloat16': 989e12, 'float32': 67e12},  # SXM; tf32 ~ 495e12
    'H200': {'bfloat16': 989e12, 'float32': 67e12},
    'A100': {'bfloat16': 312e12, 'float32': 19.5e12},
    'V100': {'bfloat16': 125e12, 'float32': 15.7e12},  # fp16 tensor cores
    'TPU v4': {'bfloat16': 275e12, 'float32': 275e12 / 4},
    'TPU v5 lite': {'bfloat16': 197e12, 'float32': 197e12 / 4},
    'TPU v5e': {'bfloat16': 197e12, 'float32': 197e12 / 4},
}


def peak_flops(device_kind: str, dtype: str):
  """Peak FLOP/s for a ``jax.Device.device_kind``, or None (CPU, unknown)."""
  for name, peaks in PEAK_FLOPS.items():
    if name.lower() in device_kind.lower():
      return peaks.get(dtype)
  return None
