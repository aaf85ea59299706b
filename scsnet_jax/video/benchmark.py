"""Video frames/s: ``python -m scsnet_jax.benchmark --what=video``.

``bench_video`` colours a 240p clip (426x240, a slow pan over
scikit-image's astronaut, gray) to 480p (x2, 852x480) with the starter
weights (or ``checkpoint``), propagated (``propagate.Propagator``'s
defaults) and ``--per-frame``, and reports steady-state frames/s (after
the first two frames, which compile the automatic and referential
programs; their seconds are ``warmup_s``). The colour conversions are
timed with the model; decoding and encoding are not (a few ms a frame).
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np
from PIL import Image

from scsnet_jax import color, starter
from scsnet_jax.inference import runner as runner_lib
from scsnet_jax.video import propagate, synthetic

SIZE_240P = (240, 426)   # (H, W)
SCALE = 2


def pan_frames(count: int, size=SIZE_240P) -> list[np.ndarray]:
  """``count`` gray normalised-L (H, W, 1) frames of a pan, 2 px a frame."""
  photo = synthetic.photos()[0]
  height, width = size
  side_w, side_h = 426.0, 240.0
  out = []
  for t in range(count):
    box = (20 + 2 * t, 120, 20 + 2 * t + side_w, 120 + side_h)
    rgb = np.asarray(Image.fromarray(photo).resize(
        (width, height), Image.Resampling.BICUBIC, box=box))
    out.append(color.rgb8_to_gray(rgb))
  return out


def bench_video(checkpoint: Optional[str] = None, frames: int = 6,
                tile: int = 256) -> list[dict[str, Any]]:
  """One row per mode: frames/s at 240p -> 480p."""
  runner = runner_lib.load_runner(checkpoint or starter.STARTER_DIR,
                                  dtype='float32', tile=tile, tile_overlap=32)
  grays = pan_frames(frames + 2)
  out_size = (SIZE_240P[0] * SCALE, SIZE_240P[1] * SCALE)
  rows = []
  for mode in ('propagated', 'per-frame'):
    colourer = propagate.Propagator(runner, out_size,
                                    per_frame=mode == 'per-frame')
    start = time.perf_counter()
    for gray in grays[:2]:
      color.nlab_to_rgb8(colourer.colour(gray)[0])
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for gray in grays[2:]:
      color.nlab_to_rgb8(colourer.colour(gray)[0])
    seconds = time.perf_counter() - start
    rows.append({'part': 'video', 'mode': mode, 'input': '426x240',
                 'output': f'{out_size[1]}x{out_size[0]}', 'tile': tile,
                 'frames': frames, 'frames_per_s': frames / seconds,
                 'warmup_s': warmup,
                 'compiled_programs': len(runner.predictor._compiled)})  # pylint: disable=protected-access
  return rows
