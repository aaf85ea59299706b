"""The export folder's format: names, manifest keys, symbolic inputs.

An export folder (``writer.export_generator`` writes it, ``reader`` reads)::

  DIR/manifest.json                 what is here (format, modes, scales, specs)
  DIR/params/                       orbax checkpoint: EMA generator parameters
                                    (or DIR/params.npz, float16, its SHA-256 in
                                    the manifest: ``params_file``)
  DIR/model_config.json             the generator config (``config.model``)
  DIR/generator_<mode>_x<scale>.jax_export   serialized ``jax.export``
  DIR/generator_<mode>_x<scale>.onnx         with ``--format onnx`` instead

Each artifact has the parameters baked in as constants (one self-contained
file, no pytree of weights to ship) and symbolic batch and spatial sizes:
gray (b, m*h, m*w, 1) [+ reference (b, m*hr, m*wr, 3)] -> (b, s*m*h, s*m*w, 3)
normalised LAB, with m the input multiple recorded in the manifest (4). The
CPM runs unchunked there (chunking needs concrete sizes); tile big inputs.
Non-integer scales and tiling need the parameters.
"""

from __future__ import annotations

from typing import Callable

from flax import nnx
import jax
import jax.numpy as jnp

from scsnet_jax.models.geometry import INPUT_MULTIPLE

MANIFEST = 'manifest.json'
PARAMS_DIR = 'params'
PARAMS_NPZ = 'params.npz'
PARAMS_FORMATS = ('orbax', 'npz')
MODEL_CONFIG = 'model_config.json'
FORMAT = 'scsnet_jax.export/1'
MODES = ('automatic', 'referential')
# Manifest lists of artifacts: jax.export files, and --format onnx files.
JAX_KEY = 'artifacts'
ONNX_KEY = 'onnx_models'


def artifact_name(mode: str, scale: int) -> str:
  return f'generator_{mode}_x{scale}.jax_export'


def onnx_name(mode: str, scale: int) -> str:
  return f'generator_{mode}_x{scale}.onnx'


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


def colorize_fn(graphdef, params, scale: int) -> Callable[..., jax.Array]:
  """The live generator at one integer scale, as every format traces it:
  ``(gray[, reference])`` shaped as ``input_specs`` -> LAB (b, s*H, s*W, 3).
  The parameters become constants of the traced program."""

  def colorize(*inputs):
    return nnx.merge(graphdef, params)(*inputs, scale=scale)
  return colorize
