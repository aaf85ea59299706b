"""The one entry that runs a trained model: ``load_runner(checkpoint)`` gives
a ``Runner`` (an ``NlabPredictor``), whichever kind of folder ``checkpoint``
names. The predict CLI, the web app and any new feature call it.

It joins the tiled ``predictor.Predictor`` and the training run's loader
(``loading``) with the exported artifacts' reader (``export.reader``); the
commands stand above it.

``load_runner`` turns a training workdir (or its checkpoints/, or one
checkpoints/STEP) or an export folder into a ``Runner``; a bad path is one
``UserError`` line. ``add_model_arguments`` / ``check_model_arguments`` are
the flags every command that loads a runner shares (``scsnet_jax.predict``,
``scsnet_jax.app``), so both read ``--checkpoint`` and the tiling alike.
"""

from __future__ import annotations

import argparse
import copy
from typing import Optional

from absl import logging
import numpy as np
from PIL import Image

from scsnet_jax import color
from scsnet_jax import workdir as workdir_lib
from scsnet_jax.errors import UserError, first_line
from scsnet_jax.export import reader as export
from scsnet_jax import loading
from scsnet_jax import starter
from scsnet_jax.export.format import JAX_KEY
from scsnet_jax.inference import predictor as predictor_lib

# References are downscaled to this longest side: their cost (cross attention
# against every source position) grows with their area; training used 128.
REFERENCE_MAX_SIDE = 512


# -------------------------------------------------------------- arguments ---
def positive_int(text: str) -> int:
  """argparse type: an integer of at least 1."""
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(
        f'expected a positive integer, got {text!r}')
  return value


def add_model_arguments(parser: argparse.ArgumentParser, *,
                        max_output_pixels: int) -> None:
  """--checkpoint, --tile, --tile-overlap (what ``load_runner`` needs) and
  --max-output-pixels (each command has its own default)."""
  parser.add_argument('--checkpoint', default=None,
                      help=workdir_lib.CHECKPOINT_HELP + ' (default: the '
                           'starter weights shipped with the package)')
  parser.add_argument('--tile', type=int, default=256,
                      help='input window size (multiple of '
                           f'{predictor_lib.WINDOW_ALIGN}, at least '
                           f'{predictor_lib.MIN_TILE}; 0 = whole image); '
                           'bounds memory (default: %(default)s)')
  parser.add_argument('--tile-overlap', type=int, default=32,
                      help='input pixels shared by neighbouring tiles, '
                           f'{predictor_lib.MIN_TILE_OVERLAP} to tile/2 '
                           '(default: %(default)s)')
  parser.add_argument('--max-output-pixels', type=positive_int,
                      default=max_output_pixels,
                      help='refuse outputs with more pixels than this '
                           '(default: %(default)s)')


def check_model_arguments(parser: argparse.ArgumentParser,
                          args: argparse.Namespace) -> Optional[str]:
  """``add_model_arguments``' values that argparse cannot check alone
  (the tiling) as a usage error (exit 2). No ``--checkpoint`` means the
  starter weights: returns the one line the command prints on stderr to
  say so (else None)."""
  note = None
  if args.checkpoint is None:
    args.checkpoint, note = starter.STARTER_DIR, starter.NOTE
  try:
    predictor_lib.check_tiling(args.tile, args.tile_overlap)
  except UserError as error:
    parser.error(str(error))
  return note


# ----------------------------------------------------------------- runner ---
class Runner:
  """Parameters path (any scale, tiling, bfloat16) plus, for an export
  folder, its serialized artifacts where they apply (integer exported scale,
  float32, image within one tile).

  An ``inference.predictor.NlabPredictor``; ``tile_count`` and
  ``bicubic_gray`` say what the app's summary and comparison need, so no
  caller reaches into ``predictor``.
  """

  def __init__(self, checkpoint: str, *, dtype: str, tile: int,
               tile_overlap: int):
    self.exported: Optional[export.ExportedGenerator] = None
    if export.is_export_dir(checkpoint):
      self.exported = export.ExportedGenerator(checkpoint)
      params, model_config = export.load_params(checkpoint)
    else:
      bundle = loading.load_generator(checkpoint)
      params, model_config = bundle.params, bundle.config.model
    self.predictor = predictor_lib.Predictor(
        params, model_config, dtype=dtype, tile=tile,
        tile_overlap=tile_overlap)
    self.tile = tile
    self._noted = False

  @property
  def referential(self) -> bool:
    return self.predictor.referential

  def with_dtype(self, dtype: str) -> 'Runner':
    """The same weights (shared, not copied) computing in ``dtype``."""
    other = copy.copy(self)
    other.predictor = predictor_lib.Predictor(
        self.predictor.params, self.predictor.config, dtype=dtype,
        tile=self.predictor.tile, tile_overlap=self.predictor.tile_overlap)
    return other

  def tile_count(self, height: int, width: int,
                 out_size: tuple[int, int]) -> int:
    """Windows an (H, W) -> ``out_size`` image is computed in (1 where an
    exported artifact runs it: those fit one tile)."""
    return self.predictor.tile_count(height, width, out_size)

  def bicubic_gray(self, gray: np.ndarray,
                   out_size: tuple[int, int]) -> np.ndarray:
    """The model's bicubic enlargement of normalised L, (B, H, W, 1) ->
    (B, Ht, Wt, 1) float32: what the result is compared with."""
    return self.predictor.bicubic_gray(gray, out_size)

  def predict_nlab(self, gray: np.ndarray, reference: Optional[np.ndarray],
                   out_size: tuple[int, int], interrupt=None
                   ) -> tuple[np.ndarray, list[int]]:
    """``NlabPredictor.predict_nlab``: the export's artifact if one fits,
    else the ``Predictor``."""
    _, height, width, _ = gray.shape
    one_window = not self.tile or max(height, width) <= self.tile
    if (self.exported is not None and self.predictor.dtype == 'float32'
        and one_window and self.exported.supports(reference is not None,
                                                  height, width, out_size)):
      return self.exported.predict_nlab(gray, reference, out_size, interrupt)
    if (self.exported is not None and self.exported.manifest[JAX_KEY]
        and not self._noted):   # a parameters-only export runs the code
      self._noted = True
      logging.warning(
          'note: no exported artifact fits (it needs an exported integer '
          'scale, float32 and an image within one tile); using the '
          "export's parameters and the model code")
    return self.predictor.predict_nlab(gray, reference, out_size, interrupt)


def load_runner(checkpoint: str, *, dtype: str, tile: int,
                tile_overlap: int) -> Runner:
  """A ``Runner``, or a ``UserError`` with one line naming the checkpoint
  and the problem (missing folder, foreign folder, unreadable files)."""
  try:
    return Runner(checkpoint, dtype=dtype, tile=tile, tile_overlap=tile_overlap)
  except (OSError, UserError) as error:
    raise UserError(first_line(error)) from None
  except Exception as error:  # e.g. an orbax error for a foreign folder
    raise UserError(f'{checkpoint}: cannot load the model '
                     f'({type(error).__name__}: {first_line(error)})'
                     ) from None


def reference_nlab(pixels: np.ndarray) -> np.ndarray:
  """uint8 (Hr, Wr, 3) -> nlab, longest side at most REFERENCE_MAX_SIDE."""
  height, width = pixels.shape[:2]
  if max(height, width) > REFERENCE_MAX_SIDE:
    factor = REFERENCE_MAX_SIDE / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    pixels = np.asarray(Image.fromarray(pixels).resize(
        size, Image.Resampling.BICUBIC))
  return color.rgb8_to_nlab(pixels)
