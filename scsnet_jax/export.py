"""Deployable export of a trained generator.

``python -m scsnet_jax.export --checkpoint WORKDIR --output DIR
[--scales 2,4] [--modes automatic,referential]`` writes::

  DIR/manifest.json                 what is here (format, modes, scales, specs)
  DIR/params/                       orbax checkpoint: EMA generator parameters
  DIR/model_config.json             the generator config (``config.model``)
  DIR/generator_<mode>_x<scale>.jax_export   serialized ``jax.export``

Each artifact has the parameters baked in as constants (one self-contained
file, no pytree of weights to ship) and symbolic batch and spatial sizes:
gray (b, m*h, m*w, 1) [+ reference (b, m*hr, m*wr, 3)] -> (b, s*m*h, s*m*w, 3)
normalised LAB, with m the input multiple recorded in the manifest (4). The
CPM runs unchunked there (chunking needs concrete sizes); tile big inputs. Non-integer scales and tiling need the parameters.

``--format onnx`` writes ``generator_<mode>_x<scale>.onnx`` files instead of
the jax.export ones (same symbolic shapes; listed under ``onnx_models`` in
the manifest; ``scsnet_jax/onnx_export.py``, docs/onnx.md).

Reading: an export folder is code (``export_trust``): trust it like code.
Manifest file names must be plain names, and artifacts calling custom calls
outside an allow-list are refused before they run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from scsnet_jax import atomic, export_trust
from scsnet_jax.errors import UserError
from scsnet_jax.inference import files
from scsnet_jax.models import INPUT_MULTIPLE

MANIFEST = 'manifest.json'
PARAMS_DIR = 'params'
MODEL_CONFIG = 'model_config.json'
FORMAT = 'scsnet_jax.export/1'
MODES = ('automatic', 'referential')
FORMATS = ('jax', 'onnx')
ONNX_KEY = 'onnx_models'  # manifest list of --format onnx files (onnx_export)


def artifact_name(mode: str, scale: int) -> str:
  return f'generator_{mode}_x{scale}.jax_export'


def input_specs(mode: str) -> list[jax.ShapeDtypeStruct]:
  """[gray (b, m*h, m*w, 1)[, reference (b, m*hr, m*wr, 3)]], m =
  ``INPUT_MULTIPLE``: the symbolic inputs every exported format (jax, onnx)
  is traced with."""
  m = INPUT_MULTIPLE
  names = 'b, h, w, hr, wr' if mode == 'referential' else 'b, h, w'
  dims = jax.export.symbolic_shape(names)
  args = [jax.ShapeDtypeStruct((dims[0], m * dims[1], m * dims[2], 1),
                               jnp.float32)]
  if mode == 'referential':
    args.append(jax.ShapeDtypeStruct((dims[0], m * dims[3], m * dims[4], 3),
                                     jnp.float32))
  return args


def export_artifact(graphdef, params, mode: str, scale: int,
                    platforms: Optional[Sequence[str]] = None):
  """One ``jax.export.Exported`` with the parameters as constants, traced
  with ``input_specs(mode)``."""
  from flax import nnx

  def colorize(gray, reference=None):
    model = nnx.merge(graphdef, params)
    return model(gray, reference, scale=scale)

  return jax.export.export(jax.jit(colorize), platforms=platforms)(
      *input_specs(mode))


def export_generator(graphdef, params, model_config: dict, output_dir: str, *,
                     scales: Sequence[int] = (2, 4),
                     modes: Sequence[str] = MODES, step: Optional[int] = None,
                     platforms: Optional[Sequence[str]] = None,
                     format: str = 'jax') -> dict:  # pylint: disable=redefined-builtin
  """Writes params, config and one artifact per (mode, scale) (``format``
  'jax': jax.export files; 'onnx': ONNX files, listed under ``ONNX_KEY``);
  returns the manifest. The folder appears complete or not at all."""
  import orbax.checkpoint as ocp
  if format not in FORMATS:
    raise UserError(f'unknown format {format!r}; use {", ".join(FORMATS)}')
  if format == 'onnx':
    from scsnet_jax import onnx_export
    onnx_export.require_converter()  # fail before any work
  for mode in modes:
    if mode not in MODES:
      raise UserError(f'unknown mode {mode!r}; use {", ".join(MODES)}')
  if 'referential' in modes and not model_config.get('referential'):
    raise UserError('this checkpoint has no referential mode; export with '
                     '--modes automatic')
  for scale in scales:
    if int(scale) != scale or scale < 1:
      raise UserError(f'export scales must be positive integers, got {scale}')
  output_dir = os.path.abspath(output_dir)
  if os.path.exists(output_dir) and (not os.path.isdir(output_dir)
                                     or os.listdir(output_dir)):
    raise FileExistsError(f'{output_dir}: exists and is not an empty folder')
  parent = os.path.dirname(output_dir)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(dir=parent, prefix='.export-tmp-')
  try:
    params = jax.tree.map(np.asarray, params)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(staging, PARAMS_DIR), params)
    checkpointer.wait_until_finished()
    atomic.write_json(os.path.join(staging, MODEL_CONFIG), model_config,
                      indent=2, sort_keys=True)
    artifacts = []
    for mode in (modes if format == 'jax' else ()):
      for scale in scales:
        exported = export_artifact(graphdef, params, mode, int(scale),
                                   platforms)
        name = artifact_name(mode, int(scale))
        with open(os.path.join(staging, name), 'wb') as f:
          f.write(exported.serialize())
        artifacts.append({
            'file': name, 'mode': mode, 'scale': int(scale),
            'input_multiple': INPUT_MULTIPLE,
            'inputs': [str(a) for a in exported.in_avals],
            'output': str(exported.out_avals[0]),
            'platforms': list(exported.platforms)})
    manifest = {'format': FORMAT, 'step': step, 'params': PARAMS_DIR,
                'model_config': MODEL_CONFIG, 'jax_version': jax.__version__,
                'artifacts': artifacts}
    if format == 'onnx':
      manifest[ONNX_KEY] = onnx_export.write_models(
          graphdef, params, staging, scales=[int(s) for s in scales],
          modes=modes)
    atomic.write_json(os.path.join(staging, MANIFEST), manifest, indent=2)
    os.chmod(staging, 0o777 & ~files.current_umask())   # mkdtemp makes it 0700
    if os.path.isdir(output_dir):
      os.rmdir(output_dir)  # empty, checked above
    os.replace(staging, output_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return manifest


# ------------------------------------------------------------------ reading ---
def is_export_dir(path: str) -> bool:
  return os.path.isfile(os.path.join(path, MANIFEST))


def read_manifest(path: str) -> dict:
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
  export_trust.check_manifest_names(path, manifest)   # no path escapes
  return manifest


def load_params(path: str):
  """(pure-dict params, model config dict) from an export folder."""
  import orbax.checkpoint as ocp
  manifest = read_manifest(path)
  with open(os.path.join(path, manifest['model_config'])) as f:
    model_config = json.load(f)
  # A target restores the exact tree (integer keys of nnx.List included).
  from flax import nnx
  from scsnet_jax.models.generator import build_generator
  abstract = nnx.split(nnx.eval_shape(
      lambda: build_generator(model_config, nnx.Rngs(0))))[1].to_pure_dict()
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
      abstract)
  params = ocp.StandardCheckpointer().restore(
      os.path.join(os.path.abspath(path), manifest['params']), target)
  return params, model_config


class ExportedGenerator:
  """Runs the serialized artifacts of an export folder (no model code).

  ``predict_nlab(gray, reference, out_size)`` as ``inference.Predictor``,
  for out_size = scale x (H, W) with an exported integer scale.
  """

  def __init__(self, path: str):
    self.path = path
    self.manifest = read_manifest(path)
    self._loaded = {}

  def artifact(self, mode: str, scale) -> Optional[dict]:
    for entry in self.manifest['artifacts']:
      if entry['mode'] == mode and entry['scale'] == scale:
        return entry
    return None

  def supports(self, referential: bool, height: int, width: int,
               out_size) -> bool:
    mode = 'referential' if referential else 'automatic'
    scales = [e['scale'] for e in self.manifest['artifacts']
              if e['mode'] == mode]
    return any(out_size == (s * height, s * width) for s in scales)

  def _exported(self, entry):
    if entry['file'] not in self._loaded:
      # Refuses custom calls our exports never make (export_trust).
      self._loaded[entry['file']] = export_trust.deserialize(
          os.path.join(self.path, entry['file']))
    return self._loaded[entry['file']]

  def predict_nlab(self, gray, reference, out_size):
    from scsnet_jax.inference.tiling import reflect_pad
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


# --------------------------------------------------------------------- CLI ---
def _int_list(text: str) -> list[int]:
  try:
    values = [int(v) for v in text.split(',') if v.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected integers like 2,4, got {text!r}'
                                     ) from None
  if not values or any(v < 1 for v in values):
    raise argparse.ArgumentTypeError(
        f'expected positive integers, got {text!r}')
  return values


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m scsnet_jax.export',
      description='Export a trained SCSNet generator: orbax parameters and '
                  'jax.export artifacts per integer scale and mode.')
  parser.add_argument('--checkpoint', required=True,
                      help='a training workdir (latest step, EMA weights), '
                           'its checkpoints/ folder, one checkpoints/STEP '
                           'folder, or an earlier export folder')
  parser.add_argument('--output', required=True,
                      help='new or empty folder to write the export to')
  parser.add_argument('--scales', type=_int_list, default=[2, 4],
                      help='integer magnifications to export an artifact '
                           'for, comma-separated (default: 2,4)')
  parser.add_argument('--modes', default=None,
                      help='automatic,referential (default: what the model '
                           'supports)')
  parser.add_argument('--step', type=int, default=None,
                      help='training step to export (default: the latest, '
                           'or the STEP of a checkpoints/STEP path)')
  parser.add_argument('--format', choices=FORMATS, default='jax',
                      help='jax: jax.export artifacts (default); onnx: one '
                           'ONNX model per mode and scale, checked against '
                           'the JAX model with onnxruntime (needs the '
                           'onnx extra and jax2onnx: docs/onnx.md)')
  parser.add_argument('--platforms', default='cpu,cuda',
                      help='platforms the artifacts are lowered for '
                           '(comma-separated: cpu, cuda, rocm, tpu; default: '
                           '%(default)s)')
  return parser


def parse_args(argv):
  return build_parser().parse_args(argv)


def _load(checkpoint: str, step: Optional[int]):
  """(graphdef, params, model config dict, step) from a training checkpoint
  (any of the paths ``loading.resolve_checkpoint`` takes) or an
  export folder."""
  if is_export_dir(checkpoint):
    from flax import nnx
    from scsnet_jax.models.generator import build_generator
    saved_step = read_manifest(checkpoint).get('step')
    if step is not None and step != saved_step:
      raise UserError(f'{checkpoint}: an export folder holds step '
                       f'{saved_step} only; drop --step')
    params, model_config = load_params(checkpoint)
    graphdef = nnx.split(nnx.eval_shape(
        lambda: build_generator(model_config, nnx.Rngs(0))))[0]
    return graphdef, params, model_config, saved_step
  from scsnet_jax.inference import loading
  bundle = loading.load_generator(checkpoint, step=step)
  return (bundle.graphdef, bundle.params, bundle.config.model.to_dict(),
          bundle.step)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from scsnet_jax import onnx_export
  try:
    if args.format == 'onnx':
      onnx_export.require_converter()  # before loading anything
    graphdef, params, model_config, step = _load(args.checkpoint, args.step)
    modes = (args.modes.split(',') if args.modes else
             list(MODES) if model_config.get('referential') else
             ['automatic'])
    platforms = [p for p in args.platforms.split(',') if p] or None
    manifest = export_generator(
        graphdef, params, model_config, args.output,
        scales=args.scales, modes=modes, step=step, platforms=platforms,
        format=args.format)
  except (OSError, UserError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  names = ', '.join(a['file'] for a in
                    manifest['artifacts'] + manifest.get(ONNX_KEY, []))
  print(f'exported step {step} to {args.output}: {names}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
