"""Colours that hold still: keyframes, then reference propagation.

A keyframe (the first frame, and each frame ``scenes.CutDetector`` marks as
a cut) is coloured on its own: automatically, or from a reference photo
(``--reference``, or the best match of ``--reference-gallery`` for that
frame). Every following frame is coloured in the model's referential mode
with a reference drawn from the output already made:

- ``keyframe``: the scene's coloured keyframe,
- ``previous``: the previous output frame,
- ``both``: the two side by side (one reference, twice as wide).

``measure`` compares them (docs/video.md); ``DEFAULT_SOURCE`` is the one
it chose. Then ``hold`` keeps colours where the picture holds still: each
output pixel's ab moves toward the previous output's by
``hold * exp(-(dL / HOLD_L)^2)``, dL the change of its lightness since the
previous frame (CIE L units), after the previous frame is moved by the
whole-frame zoom and shift that match it best (``motion``: a camera
pan or zoom). Where something else moved, L changed and the
model's new colour is taken; still areas keep theirs (a recursive filter
gated by luminance; keyframes are never blended). ``per_frame=True``
colours every frame on its own instead (the frame-by-frame baseline,
``--per-frame``).

Every reference is resized to one shape per clip (the input frame's size,
longest side at most ``runner.REFERENCE_MAX_SIDE``; twice as wide for
``both``), so a clip runs at most two compiled programs (the keyframe's
automatic one and the referential one), both made on the first frames.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from PIL import Image

from scsnet_jax import color
from scsnet_jax.inference import runner as runner_lib
from scsnet_jax.video import motion, scenes

SOURCES = ('keyframe', 'previous', 'both')
DEFAULT_SOURCE = 'keyframe'
DEFAULT_HOLD = 0.95
HOLD_L = 12.0  # CIE L units: a change of this much divides the hold by e

# A keyframe's own reference: gray (H, W, 1) -> uint8 RGB photo, or None
# for automatic colouring.
KeyframeReference = Callable[[np.ndarray], Optional[np.ndarray]]


def reference_size(height: int, width: int) -> tuple[int, int]:
  """(Hr, Wr) of the propagated references for (H, W) input frames."""
  side = runner_lib.REFERENCE_MAX_SIDE
  factor = min(1.0, side / max(height, width))
  return max(4, round(height * factor)), max(4, round(width * factor))


def resize_nlab(nlab: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """(H, W, 3) float32 normalised LAB -> (size[0], size[1], 3), bicubic
  per channel (PIL's antialiased filter when shrinking)."""
  if nlab.shape[:2] == tuple(size):
    return np.asarray(nlab, np.float32)
  channels = [np.asarray(Image.fromarray(np.ascontiguousarray(
      nlab[..., c], np.float32), mode='F').resize(
          (size[1], size[0]), Image.Resampling.BICUBIC))
              for c in range(nlab.shape[-1])]
  return np.stack(channels, axis=-1).astype(np.float32)


def hold_still(out: np.ndarray, last: np.ndarray, hold: float,
               hold_l: float = HOLD_L) -> np.ndarray:
  """``out`` (Ht, Wt, 3) nlab with its ab moved toward ``last``'s (moved
  by ``motion.estimate_motion`` first) by ``hold * exp(-(dL / HOLD_L)^2)`` per
  pixel (module docstring)."""
  last, valid = motion.warp(last, *motion.estimate_motion(last[..., 0],
                                                          out[..., 0]))
  change = (out[..., :1] - last[..., :1]) * color.L_SCALE
  weight = np.float32(hold) * np.exp(-np.square(change / hold_l)) * valid
  mixed = out.copy()
  mixed[..., 1:] += weight * (last[..., 1:] - out[..., 1:])
  return mixed


class Propagator:
  """Colours a stream of gray frames: ``colour(gray)`` -> (nlab, keyframe).

  gray: (H, W, 1) normalised L (``color.rgb8_to_gray``), the same (H, W)
  for every frame; returns (Ht, Wt, 3) float32 normalised LAB at
  ``out_size`` and whether the frame was a keyframe. ``runner``: an
  ``inference.runner.Runner`` (any ``NlabPredictor`` with ``referential``).
  """

  def __init__(self, runner, out_size: tuple[int, int], *,
               source: str = DEFAULT_SOURCE, per_frame: bool = False,
               keyframe_reference: Optional[KeyframeReference] = None,
               cut_threshold: float = scenes.DEFAULT_THRESHOLD,
               hold: float = DEFAULT_HOLD, hold_l: float = HOLD_L):
    if source not in SOURCES:
      raise ValueError(f'source must be one of {SOURCES}, got {source!r}')
    if not 0.0 <= hold < 1.0:
      raise ValueError(f'hold must be in [0, 1), got {hold}')
    self.hold, self.hold_l = hold, hold_l
    self._last: Optional[np.ndarray] = None   # previous output, nlab
    if not per_frame and not runner.referential:
      per_frame = True   # an automatic-only model cannot propagate
    self.runner, self.out_size = runner, tuple(out_size)
    self.source, self.per_frame = source, per_frame
    self.keyframe_reference = keyframe_reference
    self.detector = scenes.CutDetector(cut_threshold)
    self.ref_size: Optional[tuple[int, int]] = None
    self._keyframe: Optional[np.ndarray] = None   # nlab at ref_size
    self._previous: Optional[np.ndarray] = None
    self.keyframes: list[int] = []   # indices of the keyframes so far
    self.frames = 0

  def _model(self, gray: np.ndarray, reference: Optional[np.ndarray]
             ) -> np.ndarray:
    out, _ = self.runner.predict_nlab(
        gray[None], None if reference is None else reference[None],
        self.out_size)
    return out[0]

  def _own_reference(self, gray: np.ndarray) -> Optional[np.ndarray]:
    """The keyframe's reference (nlab at the propagation shape) or None."""
    if self.keyframe_reference is None:
      return None
    pixels = self.keyframe_reference(gray)
    if pixels is None:
      return None
    return resize_nlab(color.rgb8_to_nlab(pixels), self.ref_size)

  def _widen(self, keyframe: np.ndarray, previous: np.ndarray) -> np.ndarray:
    if self.source == 'keyframe':
      return keyframe
    if self.source == 'previous':
      return previous
    return np.concatenate([keyframe, previous], axis=1)

  def colour(self, gray: np.ndarray) -> tuple[np.ndarray, bool]:
    if self.ref_size is None:
      self.ref_size = reference_size(*gray.shape[:2])
    cut = self.detector.update(gray)
    index, self.frames = self.frames, self.frames + 1
    if self.per_frame:
      if cut:
        self.keyframes.append(index)
      return self._model(gray, self._own_reference(gray)), cut
    if cut:
      self.keyframes.append(index)
      own = self._own_reference(gray)
      out = self._model(gray, None if own is None else self._widen(own, own))
      self._keyframe = resize_nlab(out, self.ref_size)
      self._previous = self._keyframe
      self._last = out
      return out, True
    out = self._model(gray, self._widen(self._keyframe, self._previous))
    if self.hold:
      out = hold_still(out, self._last, self.hold, self.hold_l)
    self._last = out
    if self.source != 'keyframe':
      self._previous = resize_nlab(out, self.ref_size)
    return out, False
