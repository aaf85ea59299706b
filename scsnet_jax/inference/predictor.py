"""Inference on images of any size: reflection padding, tiling, blending.

The generator needs H, W multiples of 4 and holds whole feature maps (and a
global self-attention) in memory, so big inputs are cut into overlapping
windows of the (padded) gray image. The WHOLE network runs per window, and
each window renders exactly the pixels of the global output grid whose
centres fall inside it:

  output pixel j of an (n_in -> n_out) axis has its centre at input position
  X_j = (j + 0.5) * n_in / n_out (in input pixels, before padding).

A window [s, s+T) of an axis padded to length P samples its features at
``u = X_j * (P-1)/P - s`` (the global corner-aligned CPM position, shifted)
with local coordinate ``z = 2 frac(X_j) - 1``; so, away from window edges,
a window computes what the untiled network computes, for fractional scales
too. Windows are blended with linear ramps over the middle half of the
overlap; the outer quarter on each side gets weight 0 (there the window's
receptive field is cut off most, and sampling would be clipped).

Exact agreement with the untiled network holds while the decoder's global
self-attention contributes little (gamma is 0 at initialisation); a trained
model sees only its window there, as any tiled super-resolution does, so
prefer big tiles. Window origins are multiples of 16 (encoder stride 4 x
PVCAttn pooling 4) so that pooling grids line up with the untiled run.

Bounded compilations: every (window, output block) shape is a compilation
(about 12 MB each), so a stream of photos of many sizes grew memory without
bound and spent its time compiling. Now:
- every output block is padded to one of a few lengths (``bucket_length``:
  four per octave) by repeating its last sampling position; the CPM renders
  each output pixel on its own, so the crop is exact;
- the compiled window programs are kept in a least-recently-used cache of
  ``MAX_COMPILED_WINDOWS``, so memory stays flat whatever the sizes;
- with ``input_buckets`` a window shorter than the tile (a small image) is
  padded on, by reflection, to a bucket length too, so the number of
  programs (and compile time) stays flat as well; the sampling positions
  are the unpadded image's, but the padded border is context the decoder's
  global self-attention sees: off by more than one 8-bit level at 0.05% to
  2.5% of the pixels of a partly trained model (benchmark), so it is off
  by default;
- the bicubic enlargement runs in numpy (``bicubic.resize_host``), which
  compiles nothing.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable, Optional, Protocol, runtime_checkable

import jax
import numpy as np
from flax import nnx

from scsnet_jax.errors import UserError
from scsnet_jax.models import bicubic
from scsnet_jax.models import cpm as cpm_lib
from scsnet_jax.models.geometry import INPUT_MULTIPLE, reflect_pad
from scsnet_jax.models.generator import (DTYPES, GeneratorConfig,
                                         abstract_generator, resolve_out_size)

WINDOW_ALIGN = 16     # window origins: encoder stride 4 x pyramid pool 4
MIN_TILE_OVERLAP = 8  # the ramps need a few pixels; less is refused
# Smallest window: about the colour decoder's receptive field (~126 input
# pixels); smaller windows disagree enough to show seams (measurements:
# docs/inference.md, "Tiling").
MIN_TILE = 128
DEFAULT_MAX_OUTPUT_PIXELS = 1 << 27   # 134 MP, e.g. 11585 x 11585
# Compiled window programs a Predictor keeps (least recently used dropped).
MAX_COMPILED_WINDOWS = 8


# --------------------------------------------------------------- contract ---
@runtime_checkable
class NlabPredictor(Protocol):
  """What runs the model on numpy images: ``Predictor`` (model code, any
  scale, tiles), ``export.reader.ExportedGenerator`` (serialized artifacts,
  exported integer scales) and ``inference.runner.Runner`` (either, per call).

  ``predict_nlab(gray, reference, out_size, interrupt=None)``:
    gray: (B, H, W, 1) float32, normalised L (``color.rgb8_to_gray``).
    reference: (B, Hr, Wr, 3) float32 normalised LAB, or None (automatic).
    out_size: (Ht, Wt), any size (``resolve_output_size``).
    interrupt: called before each window is computed; it raises to stop
      the work (the web app's deadline and cancel button).
  Returns ``(nlab, redone)``: (B, Ht, Wt, 3) float32 normalised LAB, and the
  indices of the images recomputed in float32 because bfloat16 gave
  non-finite values (empty in float32). An unsupported request (a reference
  for an automatic model, a size no artifact has) raises ``UserError``.
  """

  def predict_nlab(self, gray: np.ndarray, reference: Optional[np.ndarray],
                   out_size: tuple[int, int],
                   interrupt: Optional[Callable[[], None]] = None
                   ) -> tuple[np.ndarray, list[int]]:
    ...


# ------------------------------------------------------------------ sizes ---
def resolve_output_size(height: int, width: int, *, scale=None, size=None,
                        max_pixels: Optional[int] = None) -> tuple[int, int]:
  """(Ht, Wt) from ``scale`` or ``size`` (Ht, Wt), as the generator resolves
  them (``models.generator.resolve_out_size``), within ``max_pixels``.

  Raises ValueError with a one-line reason (non-positive, NaN, too large).
  """
  out_h, out_w = resolve_out_size(height, width, scale=scale, out_size=size)
  if max_pixels is not None and out_h * out_w > max_pixels:
    raise UserError(f'output {out_w}x{out_h} has {out_h * out_w} pixels, more '
                     f'than the limit of {max_pixels} (--max-output-pixels)')
  return int(out_h), int(out_w)


# ----------------------------------------------------------------- tiling ---
@dataclasses.dataclass(frozen=True)
class AxisWindow:
  """One window along one axis and the global output pixels it renders.

  ``sample``/``local`` have the common (padded) length of all windows of the
  axis; ``weight`` covers only ``out_stop - out_start`` real pixels.
  """
  start: int
  length: int
  out_start: int
  out_stop: int
  sample: np.ndarray   # window-normalised corner-aligned sampling position
  local: np.ndarray    # z = 2 frac(X) - 1
  weight: np.ndarray


def bucket_length(n: int, multiple: int = INPUT_MULTIPLE) -> int:
  """``n`` rounded up to one of four lengths per octave (steps of an
  eighth to a quarter: 64, 80, 96, 112, 128, 160, ...), a multiple of
  ``multiple``; at most 25% more."""
  step = max(multiple, 1 << max(n.bit_length() - 3, 0))
  return -(-n // step) * step


def pad_to(images: np.ndarray, height: int, width: int) -> np.ndarray:
  """(B, H, W, C) -> (B, height, width, C), padded at the bottom and right
  by reflection (repeated reflection if the pad is wider than the image;
  edge repeat for a side of one pixel)."""
  _, h, w, _ = images.shape
  if (h, w) == (height, width):
    return images
  mode = 'reflect' if h > 1 and w > 1 else 'edge'
  return np.pad(images, ((0, 0), (0, height - h), (0, width - w), (0, 0)),
                mode=mode)


def window_starts(padded_len: int, tile: int, overlap: int) -> list[int]:
  """Origins of windows of length ``tile`` covering [0, padded_len)."""
  if tile <= 0 or padded_len <= tile:
    return [0]
  step = max(WINDOW_ALIGN, (tile - overlap) // WINDOW_ALIGN * WINDOW_ALIGN)
  starts = list(range(0, padded_len - tile, step))
  starts.append(padded_len - tile)  # last window flush with the end
  return sorted(set(starts))


def plan_axis(in_len: int, padded_len: int, out_len: int, tile: int,
              overlap: int, sampling: str = 'corners',
              buckets: bool = False,
              input_buckets: bool = False) -> list[AxisWindow]:
  """Windows of one axis (input ``in_len`` padded to ``padded_len``).

  ``sampling`` is the CPM's (``cpm.SAMPLINGS``): a window's sampling
  positions are chosen so that it reads the LR coordinate the whole padded
  image would. With ``buckets`` the output blocks are lengthened to
  ``bucket_length`` (the extra pixels repeat the last); with
  ``input_buckets`` a single window (an axis no longer than the tile) is
  lengthened to ``bucket_length`` too (at most the tile), past the padded
  image (the caller pads the image on).
  """
  length = padded_len if tile <= 0 else min(tile, padded_len)
  if input_buckets and length == padded_len:
    length = bucket_length(padded_len)
    length = min(length, tile) if tile > 0 else length
  centres = (np.arange(out_len, dtype=np.float64) + 0.5) * in_len / out_len
  global_u = cpm_lib.source_coordinate(centres / padded_len, padded_len,
                                       sampling)
  starts = window_starts(padded_len, tile, overlap)
  margin = max(1, overlap // 4)
  ramp = max(overlap - 2 * margin, 1)
  spans = []
  for start in starts:
    inside = np.nonzero((centres >= start) & (centres < start + length))[0]
    spans.append((int(inside[0]), int(inside[-1]) + 1) if inside.size
                 else (0, 0))
  common = max(stop - lo for lo, stop in spans)
  common = bucket_length(common) if buckets else common
  windows = []
  for start, (lo, stop) in zip(starts, spans):
    if stop == lo:
      continue
    index = np.minimum(np.arange(lo, lo + common), stop - 1)  # pad by repeat
    x = centres[index]
    sample = cpm_lib.sample_position(global_u[index] - start, length,
                                     sampling)
    local = 2.0 * (x - np.floor(x)) - 1.0
    real = centres[lo:stop]
    rise = np.clip((real - start - margin) / ramp, 0, 1)
    fall = np.clip((start + length - margin - real) / ramp, 0, 1)
    weight = np.minimum(rise if start > 0 else 1.0,
                        fall if start + length < padded_len else 1.0)
    weight = np.broadcast_to(weight, real.shape)
    windows.append(AxisWindow(start, length, lo, stop,
                              sample.astype(np.float32),
                              local.astype(np.float32),
                              weight.astype(np.float32)))
  return windows


def check_tiling(tile: int, overlap: int) -> None:
  """Raises ValueError (one line) for a tiling that is invalid or too small
  to be seamless (``MIN_TILE``)."""
  if tile < 0 or (tile and tile % WINDOW_ALIGN):
    raise UserError(f'tile must be 0 (no tiling) or a positive multiple of '
                     f'{WINDOW_ALIGN}, got {tile}')
  if 0 < tile < MIN_TILE:
    raise UserError(f'tile {tile} is too small: windows under {MIN_TILE} '
                     'input pixels cut off the colour decoder\'s context and '
                     f'leave seams; use a tile of {MIN_TILE} or more, or 0 '
                     'for no tiling')
  if tile and not MIN_TILE_OVERLAP <= overlap <= tile // 2:
    raise UserError(f'tile overlap must be between {MIN_TILE_OVERLAP} and '
                     f'tile/2 = {tile // 2}, got {overlap}')


# -------------------------------------------------------------- rendering ---
def _render_window(graphdef, params, gray, reference, sample_x, sample_y,
                   local_x, local_y):
  """The whole network on one window; CPM on the window's output block."""
  model = nnx.merge(graphdef, params)
  features = model.features(gray, reference)
  return model.cpm.render_separable(features, sample_x, sample_y, local_x,
                                    local_y)


# -------------------------------------------------------------- predictor ---
class Predictor:
  """A generator on numpy images of any size, with tiling and dtype fallback.

  ``graphdef``/``params`` as from ``nnx.split`` (params a State or pure
  dict); ``model_config`` a GeneratorConfig or the ``config.model`` mapping.
  ``dtype='bfloat16'`` computes in bfloat16 and recomputes any image whose
  output is not finite in float32.
  """

  def __init__(self, params, model_config, *, dtype: str = 'float32',
               tile: int = 0, tile_overlap: int = 32, buckets: bool = True,
               input_buckets: bool = False):
    if dtype not in DTYPES:
      raise UserError(f'dtype must be one of {tuple(DTYPES)}, got {dtype!r}')
    check_tiling(tile, tile_overlap)
    if not isinstance(model_config, GeneratorConfig):
      model_config = GeneratorConfig.from_mapping(model_config)
    self.config = model_config
    self.params = params
    self.dtype = dtype
    self.tile, self.tile_overlap = tile, tile_overlap
    self.buckets, self.input_buckets = buckets, input_buckets
    self._graphdefs = {}
    # This predictor's compilations, one per (dtype, window shape, output
    # block shape), at most MAX_COMPILED_WINDOWS (the module docstring).
    self._compiled = collections.OrderedDict()

  @property
  def referential(self) -> bool:
    return self.config.referential

  def graphdef(self, dtype: str):
    if dtype not in self._graphdefs:
      self._graphdefs[dtype] = nnx.graphdef(
          abstract_generator(self.config, dtype=dtype))
    return self._graphdefs[dtype]

  def bicubic_gray(self, gray: np.ndarray, out_size: tuple[int, int]
                   ) -> np.ndarray:
    """The model's bicubic enlargement of normalised L: (B, H, W, 1) ->
    (B, Ht, Wt, 1) float32 (the luminance residual's base; the web app
    shows it beside the result for comparison)."""
    return bicubic.resize_host(gray, tuple(out_size))

  def tile_count(self, height: int, width: int,
                 out_size: tuple[int, int]) -> int:
    """How many windows an (H, W) -> ``out_size`` image runs in."""
    rows, cols = self.plan(height, width, out_size)
    return len(rows) * len(cols)

  def plan(self, height: int, width: int, out_size: tuple[int, int]):
    """(row windows, column windows) for an (H, W) input."""
    pad_h = height + (-height) % INPUT_MULTIPLE
    pad_w = width + (-width) % INPUT_MULTIPLE
    sampling = self.config.cpm_sampling
    return tuple(
        plan_axis(n, padded, out_n, self.tile, self.tile_overlap, sampling,
                  self.buckets, self.input_buckets)
        for n, padded, out_n in ((height, pad_h, out_size[0]),
                                 (width, pad_w, out_size[1])))

  def _window_program(self, graphdef, *args):
    """The compiled ``_render_window`` for these argument shapes, from the
    bounded cache (compiled, and the oldest dropped, if new)."""
    key = (graphdef, tuple(None if a is None else (a.shape, str(a.dtype))
                           for a in args[1:]))
    if key in self._compiled:
      self._compiled.move_to_end(key)
    else:
      # A function of its own per program: jax's tracing and lowering
      # caches are keyed (weakly) by the function, so dropping the program
      # drops its cache entries too; one shared jit kept every shape's.
      def program(*program_args):
        return _render_window(*program_args)
      self._compiled[key] = jax.jit(program, static_argnums=0).lower(
          graphdef, *args).compile()
      while len(self._compiled) > MAX_COMPILED_WINDOWS:
        self._compiled.popitem(last=False)
    return self._compiled[key]

  def _run(self, gray, reference, out_size, dtype, interrupt=None):
    """gray (B,H,W,1) nlab -> (B,Ht,Wt,3) nlab float32, blended windows;
    ``interrupt()`` before each window."""
    batch, height, width, _ = gray.shape
    rows, cols = self.plan(height, width, out_size)
    # Host arrays: slicing a device array compiles a slice per window shape.
    padded = np.asarray(pad_to(reflect_pad(gray),
                               max(r.start + r.length for r in rows),
                               max(c.start + c.length for c in cols)),
                        np.float32)
    ref = (None if reference is None
           else np.asarray(reflect_pad(reference), np.float32))
    out = np.zeros((batch, *out_size, 3), np.float32)
    total = np.zeros(out_size, np.float32)
    graphdef = self.graphdef(dtype)
    for r in rows:
      for c in cols:
        if interrupt is not None:
          interrupt()
        window = np.ascontiguousarray(padded[:, r.start:r.start + r.length,
                                             c.start:c.start + c.length])
        args = (self.params, window, ref, c.sample, r.sample, c.local,
                r.local)
        block = self._window_program(graphdef, *args)(*args)
        n_y, n_x = r.out_stop - r.out_start, c.out_stop - c.out_start
        weight = np.outer(r.weight, c.weight)
        out[:, r.out_start:r.out_stop, c.out_start:c.out_stop] += (
            np.asarray(block)[:, :n_y, :n_x] * weight[None, :, :, None])
        total[r.out_start:r.out_stop, c.out_start:c.out_stop] += weight
    out /= total[None, :, :, None]
    if self.config.luminance_residual:
      # Windows render the CPM's residual; the bicubic L of the whole
      # (unpadded) input is added once, after blending (weights sum to 1).
      out[..., :1] += self.bicubic_gray(gray, out_size)
    return out

  def predict_nlab(self, gray: np.ndarray, reference: Optional[np.ndarray],
                   out_size: tuple[int, int],
                   interrupt: Optional[Callable[[], None]] = None
                   ) -> tuple[np.ndarray, list[int]]:
    """``NlabPredictor.predict_nlab``: gray (B,H,W,1), reference (B,Hr,Wr,3)
    or None, both normalised LAB; ``interrupt`` before each window.

    Returns ((B,Ht,Wt,3) normalised LAB float32, indices of the images that
    were recomputed in float32 because bfloat16 gave non-finite values).
    """
    if reference is not None and not self.referential:
      raise UserError('this model has no referential mode; run it without '
                       'a reference image')
    out = self._run(gray, reference, out_size, self.dtype, interrupt)
    redone = []
    if self.dtype != 'float32':
      for index in range(out.shape[0]):
        if not np.isfinite(out[index]).all():
          one_ref = None if reference is None else reference[index:index + 1]
          out[index] = self._run(gray[index:index + 1], one_ref, out_size,
                                 'float32', interrupt)[0]
          redone.append(index)
    return out, redone

