"""Reading an export folder: its parameters, or its artifacts run as is.

All that prediction and the app need of an export (``format`` says what a
folder holds). An export folder is code (``trust``): trust it like code.
Manifest file names must be plain names, and artifacts calling custom calls
outside an allow-list are refused before they run.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from flax import nnx
import jax
import numpy as np
import orbax.checkpoint as ocp

from scsnet_jax.errors import UserError
from scsnet_jax.export import trust
from scsnet_jax.export.format import FORMAT, JAX_KEY, MANIFEST
from scsnet_jax.models.generator import abstract_generator
from scsnet_jax.models.geometry import reflect_pad

def is_export_dir(path: str) -> bool:
  """Does ``path`` hold an export (rather than a training workdir)?"""
  return os.path.isfile(os.path.join(path, MANIFEST))


def read_manifest(path: str) -> dict:
  """The manifest of an export folder; a one-line UserError for a damaged
  or foreign one, or a file name that leaves the folder."""
  with open(os.path.join(path, MANIFEST), 'rb') as f:
    try:
      manifest = json.loads(f.read())
    except ValueError as error:   # bad JSON or bad UTF-8
      raise UserError(f'{path}: {MANIFEST} is not valid JSON ({error})'
                      ) from None
  if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
    manifest = manifest if isinstance(manifest, dict) else {}
    raise UserError(f'{path}: unknown export format '
                     f'{manifest.get("format")!r} (expected {FORMAT})')
  trust.check_manifest_names(path, manifest)   # no path escapes
  return manifest


def load_params(path: str):
  """(pure-dict params, model config dict) from an export folder."""
  manifest = read_manifest(path)
  with open(os.path.join(path, manifest['model_config'])) as f:
    model_config = json.load(f)
  # A target restores the exact tree (integer keys of nnx.List included).
  abstract = nnx.state(abstract_generator(model_config)).to_pure_dict()
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
      abstract)
  params = ocp.StandardCheckpointer().restore(
      os.path.join(os.path.abspath(path), manifest['params']), target)
  return params, model_config


class ExportedGenerator:
  """Runs the serialized artifacts of an export folder (no model code).

  An ``inference.predictor.NlabPredictor``, as ``Predictor``, for
  out_size = scale x (H, W) with an exported integer scale (``supports``);
  float32 only, so ``redone`` is always empty.
  """

  def __init__(self, path: str):
    self.path = path
    self.manifest = read_manifest(path)
    self._loaded = {}

  def artifact(self, mode: str, scale) -> Optional[dict]:
    for entry in self.manifest[JAX_KEY]:
      if entry['mode'] == mode and entry['scale'] == scale:
        return entry
    return None

  def supports(self, referential: bool, height: int, width: int,
               out_size) -> bool:
    mode = 'referential' if referential else 'automatic'
    scales = [e['scale'] for e in self.manifest[JAX_KEY]
              if e['mode'] == mode]
    return any(out_size == (s * height, s * width) for s in scales)

  def _exported(self, entry):
    if entry['file'] not in self._loaded:
      # Refuses custom calls our exports never make (trust).
      self._loaded[entry['file']] = trust.deserialize(
          os.path.join(self.path, entry['file']))
    return self._loaded[entry['file']]

  def predict_nlab(self, gray: np.ndarray, reference: Optional[np.ndarray],
                   out_size: tuple[int, int]
                   ) -> tuple[np.ndarray, list[int]]:
    """(B, H, W, 1) gray [, (B, Hr, Wr, 3) reference] -> ((B, Ht, Wt, 3)
    normalised LAB float32, []); UserError without a fitting artifact."""
    _, height, width, _ = gray.shape
    scale = out_size[0] // height
    mode = 'automatic' if reference is None else 'referential'
    entry = self.artifact(mode, scale)
    if entry is None or out_size != (scale * height, scale * width):
      raise UserError(f'no exported {mode} artifact for {height}x{width} -> '
                       f'{out_size[0]}x{out_size[1]}')
    args = [reflect_pad(gray, entry['input_multiple'])]
    if reference is not None:
      args.append(reflect_pad(reference, entry['input_multiple']))
    out = np.asarray(self._exported(entry).call(*args))
    return out[:, :out_size[0], :out_size[1]].astype(np.float32), []
