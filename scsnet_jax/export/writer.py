"""Writing an export folder (``format`` describes it), one writer per format.

``export_generator`` checks the request, writes the parameters and the
model config, then lets the format's writer (``WRITERS``) add its
artifacts, and moves the folder into place complete or not at all.

``--format jax`` (the default) is written here: one ``jax.export`` file per
(mode, integer scale), ``format.artifact_name``: the generator traced with
``format.input_specs`` and serialized, parameters baked in, for the
``platforms`` it is lowered for; ``reader.ExportedGenerator`` runs them.
``onnx_writer`` writes ONNX files.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Callable, Optional, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from scsnet_jax import atomic
from scsnet_jax.errors import UserError
from scsnet_jax.export import format as export_format
from scsnet_jax.export import onnx_writer
from scsnet_jax.export import params_file
from scsnet_jax.models.geometry import INPUT_MULTIPLE


# ---------------------------------------------------------- --format jax ---
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


# ---------------------------------------------------------------- writers ---
@dataclasses.dataclass(frozen=True)
class Writer:
  """How one format writes its artifacts."""
  # (graphdef, params, folder, *, scales, modes, platforms) -> the entries
  # of the files it wrote, listed in the manifest under ``manifest_key``.
  write: Callable[..., list[dict]]
  manifest_key: str
  # Raises a one-line UserError before any work when the format cannot be
  # written here (a missing optional dependency).
  check: Callable[[], object] = lambda: None


WRITERS = {
    'jax': Writer(write_artifacts, export_format.JAX_KEY),
    'onnx': Writer(onnx_writer.write_models, export_format.ONNX_KEY,
                   check=onnx_writer.require_converter),
}


def _check_request(model_config: dict, scales, modes, fmt: str) -> Writer:
  if fmt not in WRITERS:
    raise UserError(f'unknown format {fmt!r}; use {", ".join(WRITERS)}')
  WRITERS[fmt].check()   # fail before any work
  for mode in modes:
    if mode not in export_format.MODES:
      raise UserError(f'unknown mode {mode!r}; use '
                      f'{", ".join(export_format.MODES)}')
  if 'referential' in modes and not model_config.get('referential'):
    raise UserError('this checkpoint has no referential mode; export with '
                    '--modes automatic')
  for scale in scales:
    if int(scale) != scale or scale < 1:
      raise UserError(f'export scales must be positive integers, got {scale}')
  return WRITERS[fmt]


def export_generator(graphdef, params, model_config: dict, output_dir: str, *,
                     scales: Sequence[int] = (2, 4),
                     modes: Sequence[str] = export_format.MODES,
                     step: Optional[int] = None,
                     platforms: Optional[Sequence[str]] = None,
                     format: str = 'jax',  # pylint: disable=redefined-builtin
                     params_format: str = 'orbax') -> dict:
  """Writes params, config and one artifact per (mode, scale) in ``format``
  (a key of ``WRITERS``; no scales: parameters only); returns the manifest.
  ``params_format`` 'npz' stores the parameters as one float16 ``.npz`` with
  its SHA-256 in the manifest (``params_file``: the starter weights' form)
  instead of an orbax folder. The folder appears complete or not at all."""
  if params_format not in export_format.PARAMS_FORMATS:
    raise UserError(f'unknown parameters format {params_format!r}; use '
                    f'{", ".join(export_format.PARAMS_FORMATS)}')
  format_writer = _check_request(model_config, scales, modes, format)
  output_dir = os.path.abspath(output_dir)
  if os.path.exists(output_dir) and (not os.path.isdir(output_dir)
                                     or os.listdir(output_dir)):
    raise FileExistsError(f'{output_dir}: exists and is not an empty folder')
  parent = os.path.dirname(output_dir)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(dir=parent, prefix='.export-tmp-')
  try:
    params = jax.tree.map(np.asarray, params)
    params_entry = {'params': export_format.PARAMS_DIR}
    if params_format == 'npz':
      digest = params_file.save_params(
          params, os.path.join(staging, export_format.PARAMS_NPZ))
      params_entry = {'params': export_format.PARAMS_NPZ,
                      'params_sha256': digest}
    else:
      checkpointer = ocp.StandardCheckpointer()
      checkpointer.save(os.path.join(staging, export_format.PARAMS_DIR),
                        params)
      checkpointer.wait_until_finished()
    atomic.write_json(os.path.join(staging, export_format.MODEL_CONFIG),
                      model_config, indent=2, sort_keys=True)
    manifest = {'format': export_format.FORMAT, 'step': step,
                **params_entry,
                'model_config': export_format.MODEL_CONFIG,
                'jax_version': jax.__version__, export_format.JAX_KEY: []}
    manifest[format_writer.manifest_key] = format_writer.write(
        graphdef, params, staging, scales=[int(s) for s in scales],
        modes=modes, platforms=platforms)
    atomic.write_json(os.path.join(staging, export_format.MANIFEST), manifest,
                      indent=2)
    os.chmod(staging, 0o777 & ~atomic.read_umask())  # mkdtemp: 0700
    if os.path.isdir(output_dir):
      os.rmdir(output_dir)  # empty, checked above
    os.replace(staging, output_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return manifest
