"""Clips with ground truth and known motion, and the metrics on them.

A clip is a camera moving over colour photos: frame t shows the square of
side ``side_t`` source pixels at (``x0_t``, ``y0_t``) of photo ``photo_t``,
rendered at ``size`` x ``size`` (PIL's antialiased bicubic over the box).
Output pixel (y, x) of frame t therefore shows source point
``(y0_t + (y + 0.5) side_t / size, x0_t + (x + 0.5) side_t / size)``; that is
the known motion ``flicker`` undoes. Kinds (``make_clip``):

- ``pan``: a slow pan to the right, one input pixel per frame (so the truth
  and the gray input both move by whole pixels: no resampling),
- ``zoom``: a zoom in (the side shrinks by 30% over the clip, centred),
- ``cut``: a pan over one photo, then a pan over another from the middle
  frame on (the cut is that frame).

The gray low-resolution input is the truth shrunk by ``scale`` (bicubic,
antialiased) and made gray through CIE L (``color.rgb8_to_gray``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image
from scipy import ndimage

from scsnet_jax import color

KINDS = ('pan', 'zoom', 'cut')


@dataclasses.dataclass
class Clip:
  """truth: (T, S, S, 3) uint8 sRGB; gray: (T, s, s, 1) normalised L with
  s = S / scale; boxes: (T, 3) float (x0, y0, side) in source pixels;
  photo: (T,) int, which photo each frame shows; cuts: frames that start a
  new shot (not 0)."""
  name: str
  truth: np.ndarray
  gray: np.ndarray
  boxes: np.ndarray
  photo: np.ndarray
  cuts: list[int]


def photos() -> list[np.ndarray]:
  """scikit-image's astronaut, coffee and chelsea (held out of training:
  configs/photos_cpu.py validates on them)."""
  from skimage import data  # pylint: disable=import-outside-toplevel
  return [data.astronaut(), data.coffee(), data.chelsea()]


def render(photo: np.ndarray, box, size: int) -> np.ndarray:
  x0, y0, side = (float(v) for v in box)
  return np.asarray(Image.fromarray(photo).resize(
      (size, size), Image.Resampling.BICUBIC,
      box=(x0, y0, x0 + side, y0 + side)))


def _pan(photo: np.ndarray, frames: int, side: float,
         step: float) -> np.ndarray:
  height, width = photo.shape[:2]
  x0 = round((width - side - frames * step) / 2)
  y0 = round((height - side) / 2)
  return np.array([(x0 + t * step, y0, side) for t in range(frames)])


def _zoom(photo: np.ndarray, frames: int, side: float) -> np.ndarray:
  height, width = photo.shape[:2]
  sides = side * (1 - 0.3 * np.arange(frames) / max(1, frames - 1))
  return np.stack([(width - sides) / 2, (height - sides) / 2, sides], 1)


def make_clip(kind: str, frames: int = 48, size: int = 128,
              scale: int = 2) -> Clip:
  """One synthetic clip (``KINDS``) of ``frames`` frames, truth
  ``size`` x ``size``, input ``size // scale``."""
  astronaut, coffee, chelsea = photos()
  # source pixels per frame: one input pixel (side / size * scale)
  step = lambda side: side / size * scale  # noqa: E731
  if kind == 'pan':
    parts = [(astronaut, _pan(astronaut, frames, 256.0, step(256.0)), 0)]
  elif kind == 'zoom':
    parts = [(coffee, _zoom(coffee, frames, 360.0), 1)]
  elif kind == 'cut':
    first = frames // 2
    parts = [(chelsea, _pan(chelsea, first, 240.0, step(240.0) / 2), 2),
             (astronaut, _pan(astronaut, frames - first, 256.0,
                              step(256.0) / 2), 0)]
  else:
    raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
  truth, boxes, which, cuts = [], [], [], []
  for photo, part_boxes, number in parts:
    if truth:
      cuts.append(len(truth))
    for box in part_boxes:
      truth.append(render(photo, box, size))
      boxes.append(box)
      which.append(number)
  truth = np.stack(truth)
  small = size // scale
  gray = np.stack([color.rgb8_to_gray(np.asarray(Image.fromarray(f).resize(
      (small, small), Image.Resampling.BICUBIC))) for f in truth])
  return Clip(kind, truth, gray, np.asarray(boxes, np.float64),
              np.asarray(which), cuts)


def real_clip(path: str, frames: int = 48, height: int = 144,
              scale: int = 2) -> Clip:
  """The first ``frames`` frames of a real video as a clip: its colour
  frames resized to ``height`` rows (aspect kept, width even) are the
  truth, shrunk by ``scale`` and made gray the input. The camera is taken
  as still (equal boxes): flicker then counts everything that moves, the
  truth's own included. Needs PyAV."""
  import av  # pylint: disable=import-outside-toplevel
  truth = []
  with av.open(path) as container:
    for frame in container.decode(video=0):
      width = round(frame.width * height / frame.height / 2) * 2
      truth.append(np.asarray(frame.to_image().resize(
          (width, height), Image.Resampling.BICUBIC)))
      if len(truth) == frames:
        break
  truth = np.stack(truth)
  small = (truth.shape[2] // scale, height // scale)
  gray = np.stack([color.rgb8_to_gray(np.asarray(
      Image.fromarray(f).resize(small, Image.Resampling.BICUBIC)))
                   for f in truth])
  boxes = np.tile([0.0, 0.0, float(height)], (len(truth), 1))
  return Clip('real', truth, gray, boxes, np.zeros(len(truth), int), [])


# ---------------------------------------------------------------- metrics ---
def lab(rgb8: np.ndarray) -> np.ndarray:
  """uint8 sRGB (..., 3) -> CIE LAB float64."""
  return color.rgb01_to_lab(rgb8.astype(np.float64) / 255.0, xp=np)


def ciede2000(output: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """Per-frame mean CIEDE2000 of uint8 sRGB (T, H, W, 3) frames: (T,)."""
  from skimage.color import deltaE_ciede2000  # pylint: disable=import-outside-toplevel
  return np.array([float(deltaE_ciede2000(lab(t), lab(o)).mean())
                   for o, t in zip(output, truth)])


def previous_coordinates(box_now, box_before, height: int,
                         width: int = 0):
  """Where each pixel of a frame (box ``box_now``) was in the frame before
  (box ``box_before``): (rows, cols) float arrays (height, width) and the
  mask of pixels in view in both. A box's side spans the frame's height
  (and width: square clips; a still camera has equal boxes anyway)."""
  width = width or height
  x_now, y_now, side_now = box_now
  x_before, y_before, side_before = box_before
  src_y = y_now + (np.arange(height) + 0.5) * side_now / height
  src_x = x_now + (np.arange(width) + 0.5) * side_now / width
  rows = (src_y - y_before) * height / side_before - 0.5
  cols = (src_x - x_before) * width / side_before - 0.5
  rows, cols = np.meshgrid(rows, cols, indexing='ij')
  inside = ((rows >= 0) & (rows <= height - 1) & (cols >= 0)
            & (cols <= width - 1))
  return rows, cols, inside


def flicker_pairs(ab: np.ndarray, boxes: np.ndarray,
                  photo: np.ndarray) -> np.ndarray:
  """Mean |ab(t) - ab(t-1) moved to frame t| (Euclidean, CIE ab units)
  over the pixels in view in both frames, for each t >= 1 that shows the
  same photo as t-1 (NaN across a cut). ab: (T, S, S, 2) float."""
  height, width = ab.shape[1:3]
  out = np.full(len(ab), np.nan)
  for t in range(1, len(ab)):
    if photo[t] != photo[t - 1]:
      continue
    rows, cols, inside = previous_coordinates(boxes[t], boxes[t - 1], height,
                                              width)
    moved = np.stack([ndimage.map_coordinates(
        ab[t - 1, ..., c], [rows, cols], order=1, mode='nearest')
                      for c in range(ab.shape[-1])], axis=-1)
    diff = np.sqrt(((ab[t] - moved) ** 2).sum(-1))
    out[t] = float(diff[inside].mean())
  return out


def flicker(rgb8: np.ndarray, boxes: np.ndarray, photo: np.ndarray) -> float:
  """The clip's flicker: mean of ``flicker_pairs`` of uint8 sRGB frames."""
  ab = np.stack([lab(frame)[..., 1:] for frame in rgb8])
  return float(np.nanmean(flicker_pairs(ab, boxes, photo)))
