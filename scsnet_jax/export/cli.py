"""Command line: ``python -m scsnet_jax.export --checkpoint WORKDIR --output
DIR [--scales 2,4] [--modes automatic,referential] [--format jax|onnx]``.

Writes the folder ``format`` describes (``writer.export_generator``) from a
training checkpoint or an earlier export folder. ``--format onnx`` writes
``generator_<mode>_x<scale>.onnx`` files instead of the jax.export ones
(same symbolic shapes; listed under ``onnx_models`` in the manifest;
``onnx_writer``, docs/onnx.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from flax import nnx


from scsnet_jax import workdir as workdir_lib
from scsnet_jax.errors import UserError, first_line
from scsnet_jax.export import reader, writer
from scsnet_jax.export.format import JAX_KEY, MODES, ONNX_KEY, PARAMS_FORMATS
from scsnet_jax import loading
from scsnet_jax.models.generator import abstract_generator


def _int_list(text: str) -> list[int]:
  if text.strip() == 'none':   # parameters only
    return []
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
                      help=workdir_lib.CHECKPOINT_HELP)
  parser.add_argument('--output', required=True,
                      help='new or empty folder to write the export to')
  parser.add_argument('--scales', type=_int_list, default=[2, 4],
                      help='integer magnifications to export an artifact '
                           'for, comma-separated, or none for the '
                           'parameters only (default: 2,4)')
  parser.add_argument('--modes', default=None,
                      help='automatic,referential (default: what the model '
                           'supports)')
  parser.add_argument('--step', type=int, default=None,
                      help='training step to export (default: the latest, '
                           'or the STEP of a checkpoints/STEP path)')
  parser.add_argument('--format', choices=tuple(writer.WRITERS), default='jax',
                      help='jax: jax.export artifacts (default); onnx: one '
                           'ONNX model per mode and scale, checked against '
                           'the JAX model with onnxruntime (needs the '
                           'onnx extra and jax2onnx: docs/onnx.md)')
  parser.add_argument('--params-format', choices=PARAMS_FORMATS,
                      default='orbax',
                      help='orbax: a checkpoint folder (default); npz: one '
                           'float16 .npz with its SHA-256 in the manifest '
                           '(half the size; the starter weights\' form)')
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
  if reader.is_export_dir(checkpoint):
    saved_step = reader.read_manifest(checkpoint).get('step')
    if step is not None and step != saved_step:
      raise UserError(f'{checkpoint}: an export folder holds step '
                       f'{saved_step} only; drop --step')
    params, model_config = reader.load_params(checkpoint)
    graphdef = nnx.graphdef(abstract_generator(model_config))
    return graphdef, params, model_config, saved_step
  bundle = loading.load_generator(checkpoint, step=step)
  return (bundle.graphdef, bundle.params, bundle.config.model.to_dict(),
          bundle.step)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    writer.WRITERS[args.format].check()  # before loading anything
    graphdef, params, model_config, step = _load(args.checkpoint, args.step)
    modes = (args.modes.split(',') if args.modes else
             list(MODES) if model_config.get('referential') else
             ['automatic'])
    platforms = [p for p in args.platforms.split(',') if p] or None
    manifest = writer.export_generator(
        graphdef, params, model_config, args.output,
        scales=args.scales, modes=modes, step=step, platforms=platforms,
        format=args.format, params_format=args.params_format)
  except (OSError, UserError) as error:
    print(f'error: {first_line(error)}', file=sys.stderr)
    return 1
  names = ', '.join([manifest['params']] + [
      a['file'] for a in manifest[JAX_KEY] + manifest.get(ONNX_KEY, [])])
  print(f'exported step {step} to {args.output}: {names}')
  return 0
