"""Reading an export folder: its parameters, or its artifacts run as is.

All that prediction and the app need of an export (``format`` says what a
folder holds). An export folder is code (``trust``): trust it like code.
Manifest file names must be plain names, the manifest's schema is checked
(``read_manifest``: one line for a missing or mistyped field), its files are
read as images are (regular files only, at most ``MAX_JSON_BYTES`` or
``MAX_ARTIFACT_BYTES``: a link to /dev/zero is one line), and artifacts
calling custom calls outside an allow-list are refused before they run.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from flax import nnx
import jax
import numpy as np
import orbax.checkpoint as ocp

from scsnet_jax import image_io
from scsnet_jax.errors import UserError
from scsnet_jax.export import params_file, trust
from scsnet_jax.export.format import (FORMAT, JAX_KEY, MANIFEST, MODES,
                                      ONNX_KEY, PARAMS_NPZ)
from scsnet_jax.models.generator import abstract_generator
from scsnet_jax.models.geometry import reflect_pad

# The manifest and the model config are a few KB.
MAX_JSON_BYTES = 1 << 20
# An artifact holds the generator's weights as constants (tens of MB).
MAX_ARTIFACT_BYTES = 1 << 30


def read_file(path: str, max_bytes: int) -> bytes:
  """An export file's bytes: a regular file of at most ``max_bytes``, else
  one ``UserError`` line (``image_io.read_file_bytes``)."""
  return image_io.read_file_bytes(path, max_bytes, error_type=UserError)


def read_json(path: str):
  """A JSON file of the export (at most ``MAX_JSON_BYTES``)."""
  try:
    return json.loads(read_file(path, MAX_JSON_BYTES))
  except ValueError as error:   # bad JSON or bad UTF-8
    if isinstance(error, UserError):
      raise
    raise UserError(f'{path}: not valid JSON ({error})') from None


def is_export_dir(path: str) -> bool:
  """Does ``path`` hold an export (rather than a training workdir)?"""
  return os.path.isfile(os.path.join(path, MANIFEST))


def read_manifest(path: str) -> dict:
  """The manifest of an export folder; a one-line UserError for a damaged
  or foreign one, a file name that leaves the folder, or a field missing
  or of the wrong type (``_check_schema``)."""
  manifest = read_json(os.path.join(path, MANIFEST))
  if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
    manifest = manifest if isinstance(manifest, dict) else {}
    raise UserError(f'{path}: unknown export format '
                     f'{manifest.get("format")!r} (expected {FORMAT})')
  trust.check_manifest_names(path, manifest)   # no path escapes
  _check_schema(os.path.join(path, MANIFEST), manifest)
  return manifest


def _is_count(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_schema(where: str, manifest: dict) -> None:
  """What the readers use of a manifest (``writer`` writes it): ``step`` an
  int or null, ``artifacts`` (and ``onnx_models`` if present) lists of
  entries whose ``mode`` is one of ``MODES`` and whose ``scale`` and
  ``input_multiple`` are positive ints."""
  def refuse(field, value, expected):
    value = 'missing' if value is _MISSING else f'= {value!r}'[:80]
    raise UserError(f'{where}: {field} {value}, expected {expected} (a '
                    'damaged or hand-edited export; export it again)')
  step = manifest.get('step')
  if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
    refuse('step', step, 'an integer or null')
  if JAX_KEY not in manifest:
    refuse(JAX_KEY, _MISSING, 'a list of artifacts (may be empty)')
  if manifest.get('params') == PARAMS_NPZ:
    digest = manifest.get('params_sha256', _MISSING)
    if not (isinstance(digest, str) and len(digest) == 64
            and all(c in '0123456789abcdef' for c in digest)):
      refuse('params_sha256', digest, 'the 64 hex digits of params.npz')
  for key in (JAX_KEY, ONNX_KEY):
    for index, entry in enumerate(manifest.get(key, [])):
      mode = entry.get('mode', _MISSING)
      if mode not in MODES:
        refuse(f'{key}[{index}].mode', mode, ' or '.join(MODES))
      for field in ('scale', 'input_multiple'):
        value = entry.get(field, _MISSING)
        if not _is_count(value):
          refuse(f'{key}[{index}].{field}', value, 'a positive integer')


_MISSING = object()


def load_params(path: str):
  """(pure-dict params, model config dict) from an export folder: its
  orbax ``params/`` or its SHA-256-checked ``params.npz``."""
  manifest = read_manifest(path)
  model_config = read_json(os.path.join(path, manifest['model_config']))
  if not isinstance(model_config, dict):
    raise UserError(f'{path}: {manifest["model_config"]} is not a JSON '
                    'object')
  # A target restores the exact tree (integer keys of nnx.List included).
  abstract = nnx.state(abstract_generator(model_config)).to_pure_dict()
  if manifest['params'] == PARAMS_NPZ:   # checked against its SHA-256
    return params_file.load_params(
        os.path.join(path, PARAMS_NPZ), abstract,
        manifest['params_sha256']), model_config
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
      path = os.path.join(self.path, entry['file'])
      self._loaded[entry['file']] = trust.deserialize(
          read_file(path, MAX_ARTIFACT_BYTES), path)
    return self._loaded[entry['file']]

  def predict_nlab(self, gray: np.ndarray, reference: Optional[np.ndarray],
                   out_size: tuple[int, int], interrupt=None
                   ) -> tuple[np.ndarray, list[int]]:
    """(B, H, W, 1) gray [, (B, Hr, Wr, 3) reference] -> ((B, Ht, Wt, 3)
    normalised LAB float32, []); UserError without a fitting artifact.
    ``interrupt()`` once before the artifact runs (one window)."""
    if interrupt is not None:
      interrupt()
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
