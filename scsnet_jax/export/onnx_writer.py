"""ONNX models of the generator (``python -m scsnet_jax.export --format onnx``).

One file per (mode, integer scale), ``generator_<mode>_x<scale>.onnx``, with
the parameters baked in and symbolic batch and spatial sizes, as the
``jax.export`` artifacts (``format.input_specs``)::

  gray (b, 4h, 4w, 1) [+ reference (b, 4hr, 4wr, 3)] -> lab (b, s*4h, s*4w, 3)

normalised LAB in and out (``color.normalize_lab``). The CPM's coordinate
grid is built inside the graph from the input size, so one file serves every
multiple-of-4 input size at its one scale; pad other sizes by reflection
and crop (``models.geometry.reflect_pad``), and use the parameters for
non-integer scales. See docs/onnx.md.

Route: the live generator (``nnx.merge(graphdef, params)``) is traced to a
jaxpr of plain JAX primitives with ``jax.export`` symbolic shapes, and
jax2onnx converts that jaxpr. Two converter problems are worked around here
(docs/onnx.md says which and why): jax2onnx's own patches of ``nnx.Linear``
and ``jnp.arange`` fail under ``vmap`` and with symbolic sizes, so the model
is traced before jax2onnx sees it; and its ``remove_redundant_reshape_pairs``
graph pass drops a reshape pair whose symbolic shapes differ, so that pass
is switched off during conversion. Every file is run with onnxruntime
against the live model on probe inputs before it is written; a difference
over ``TOLERANCE`` refuses the export.
"""

from __future__ import annotations

import contextlib
from importlib import metadata
import logging
import os
from typing import Optional, Sequence

from jax.extend.core import jaxpr_as_fun
import jax
import numpy as np

from scsnet_jax.errors import UserError
from scsnet_jax.export import format as export_format
from scsnet_jax.models.geometry import INPUT_MULTIPLE

# Max |onnxruntime - live JAX| on the probes, in units of max(1, max |JAX
# output|): 1e-4 absolute for a trained model's normalised LAB in [-1, 1];
# an untrained one's outputs reach ~25 and float32 rounding grows with them.
TOLERANCE = 1e-4
# Installed without its dependencies: its metadata pins orbax-checkpoint
# below this project's version (docs/onnx.md). The version tested here.
JAX2ONNX = 'jax2onnx==0.17.1'
INSTALL_HINT = f'pip install -e .[onnx] && pip install --no-deps {JAX2ONNX}'
INPUT_NAMES = {'automatic': ['gray'], 'referential': ['gray', 'reference']}
OUTPUT_NAME = 'lab'
# jax2onnx graph pass that folds Reshape(Reshape(x)) into x whenever the two
# shapes "look compatible", which symbolic dims always do: (b, 4h, 4w, 8)
# and (b, 16hw, 1, 8) were folded, so the attention read unflattened maps.
_BROKEN_PASS = 'remove_redundant_reshape_pairs'
# Probe inputs of the check, (b, h, w) and the reference's (hr, wr): batch
# > 1, sides unequal, every size different (a mixed-up dim shows).
PROBES = ((2, 16, 24, 12, 20),)


class OnnxMismatchError(UserError):
  """The converted model differs from the live one: nothing is written."""


class MissingExtraError(UserError):
  """The ``onnx`` extra is not installed (a user mistake, one line)."""


def require_converter():
  """(jax2onnx's ``to_onnx``, onnxruntime), or ``MissingExtraError``."""
  try:
    # The onnx extra: only a run that writes ONNX needs it.
    from jax2onnx import to_onnx
    import onnxruntime
  except ImportError as error:
    raise MissingExtraError(
        f'--format onnx needs jax2onnx, onnx and onnxruntime ({error.name} '
        f'is missing): {INSTALL_HINT}') from None
  return to_onnx, onnxruntime


@contextlib.contextmanager
def _without_broken_pass():
  try:
    from jax2onnx.converter import ir_optimizations  # the onnx extra
    passes = ir_optimizations._OPTIMIZER_PASSES  # pylint: disable=protected-access
  except (ImportError, AttributeError):  # another layout: the probes decide
    yield
    return
  ir_optimizations._OPTIMIZER_PASSES = tuple(  # pylint: disable=protected-access
      p for p in passes if getattr(p, 'name', None) != _BROKEN_PASS)
  try:
    yield
  finally:
    ir_optimizations._OPTIMIZER_PASSES = passes  # pylint: disable=protected-access


def _probe_inputs(mode: str, probe, seed: int):
  batch, height, width, ref_h, ref_w = probe
  rng = np.random.default_rng(seed)
  inputs = [rng.uniform(-1, 1, (batch, height, width, 1)).astype(np.float32)]
  if mode == 'referential':
    inputs.append(rng.uniform(-1, 1, (batch, ref_h, ref_w, 3)
                              ).astype(np.float32))
  return inputs


def max_difference(model_bytes: bytes, colorize, mode: str, name: str
                   ) -> tuple[float, float]:
  """(max |onnxruntime - live JAX|, max(1, max |JAX|)) over ``PROBES``;
  the difference is inf on a wrong shape.

  A model onnxruntime cannot load or run raises ``OnnxMismatchError``.
  """
  _, onnxruntime = require_converter()
  live = jax.jit(colorize)
  worst, scale = 0.0, 1.0
  for seed, probe in enumerate(PROBES):
    inputs = _probe_inputs(mode, probe, seed)
    try:
      if not seed:
        session = onnxruntime.InferenceSession(
            model_bytes, providers=['CPUExecutionProvider'])
      got = session.run(None, dict(zip(INPUT_NAMES[mode], inputs)))[0]
    except Exception as error:  # onnxruntime's own exception types
      message = str(error).strip().splitlines()[0][:300]
      raise OnnxMismatchError(f'{name}: onnxruntime cannot run the converted '
                              f'model ({message}); not written') from error
    want = np.asarray(live(*inputs))
    if got.shape != want.shape:
      return float('inf'), scale
    worst = max(worst, float(np.max(np.abs(got - want))))
    scale = max(scale, float(np.max(np.abs(want))))
  return worst, scale


def convert(graphdef, params, mode: str, scale: int, *,
            opset: int = 23) -> tuple[bytes, dict]:
  """(serialized ONNX model, manifest entry) for one mode and scale.

  Raises ``OnnxMismatchError`` when onnxruntime's output on the probes
  differs from the live model's by more than ``TOLERANCE``.
  """
  to_onnx, _ = require_converter()
  colorize = export_format.colorize_fn(graphdef, params, scale)
  specs = export_format.input_specs(mode)
  # Plain primitives only: jax2onnx's library patches never run.
  traced = jaxpr_as_fun(jax.make_jaxpr(colorize)(*specs))
  # Optional-plugin import and shape-metadata warnings, not about this model.
  loggers = [logging.getLogger(n) for n in ('jax2onnx', 'onnx_ir')]
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(logging.ERROR)
  try:
    with _without_broken_pass():
      model = to_onnx(lambda *inputs: traced(*inputs)[0], specs,
                      model_name=f'scsnet_{mode}_x{scale}', opset=opset,
                      input_names=INPUT_NAMES[mode],
                      output_names=[OUTPUT_NAME])
  finally:
    for logger, level in zip(loggers, levels):
      logger.setLevel(level)
  data = model.SerializeToString()
  name = export_format.onnx_name(mode, scale)
  difference, output_scale = max_difference(data, colorize, mode, name)
  if not difference <= TOLERANCE * output_scale:
    raise OnnxMismatchError(
        f'{name}: onnxruntime differs from the JAX model by {difference:.3g} '
        f'(> {TOLERANCE:g} x {output_scale:.3g}) on the probe inputs; not '
        'written')

  def dims(value):
    return [d.dim_param or d.dim_value
            for d in value.type.tensor_type.shape.dim]
  entry = {'file': name, 'mode': mode, 'scale': int(scale),
           'input_multiple': INPUT_MULTIPLE,
           'inputs': {v.name: dims(v) for v in model.graph.input},
           'output': {v.name: dims(v) for v in model.graph.output},
           'opset': opset, 'probe_max_abs_diff': difference,
           'probe_max_abs_output': output_scale}
  return data, entry


def write_models(graphdef, params, folder: str, *, scales: Sequence[int],
                 modes: Sequence[str],
                 platforms: Optional[Sequence[str]] = None) -> list[dict]:
  """Converts and writes one file per (mode, scale) into ``folder``;
  returns their manifest entries (``format.ONNX_KEY``). ``platforms`` is
  not used: an ONNX file runs wherever onnxruntime does."""
  del platforms
  version = metadata.version('jax2onnx')
  entries = []
  for mode in modes:
    for scale in scales:
      data, entry = convert(graphdef, params, mode, int(scale))
      with open(os.path.join(folder, entry['file']), 'wb') as f:
        f.write(data)
      entries.append(dict(entry, converter=f'jax2onnx {version}'))
  return entries
