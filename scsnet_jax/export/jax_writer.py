"""``jax.export`` artifacts of the generator (``--format jax``, the default).

One file per (mode, integer scale), ``format.artifact_name``: the generator
traced with ``format.input_specs`` and serialized, parameters baked in, for
the ``platforms`` it is lowered for. ``reader.ExportedGenerator`` runs them.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import jax

from scsnet_jax.export import format as export_format
from scsnet_jax.models.geometry import INPUT_MULTIPLE


def export_artifact(graphdef, params, mode: str, scale: int,
                    platforms: Optional[Sequence[str]] = None):
  """One ``jax.export.Exported`` with the parameters as constants, traced
  with ``format.input_specs(mode)``."""
  colorize = export_format.colorize_fn(graphdef, params, scale)
  return jax.export.export(jax.jit(colorize), platforms=platforms)(
      *export_format.input_specs(mode))


def write_artifacts(graphdef, params, folder: str, *, scales: Sequence[int],
                    modes: Sequence[str],
                    platforms: Optional[Sequence[str]] = None) -> list[dict]:
  """Writes one artifact per (mode, scale) into ``folder``; returns their
  manifest entries (``format.JAX_KEY``)."""
  entries = []
  for mode in modes:
    for scale in scales:
      exported = export_artifact(graphdef, params, mode, int(scale),
                                 platforms)
      name = export_format.artifact_name(mode, int(scale))
      with open(os.path.join(folder, name), 'wb') as f:
        f.write(exported.serialize())
      entries.append({
          'file': name, 'mode': mode, 'scale': int(scale),
          'input_multiple': INPUT_MULTIPLE,
          'inputs': [str(a) for a in exported.in_avals],
          'output': str(exported.out_avals[0]),
          'platforms': list(exported.platforms)})
  return entries
