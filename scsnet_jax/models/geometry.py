"""The generator's input geometry: what sizes it takes, and how any image is
brought to one.

Numpy only (no JAX, no flax), so the data pipeline's grain workers and the
export reader can use it without loading the model.
"""

from __future__ import annotations

import numpy as np

# Input height and width must be multiples of this (two stride-2 stages).
INPUT_MULTIPLE = 4


def reflect_pad(images: np.ndarray, multiple: int = INPUT_MULTIPLE
                ) -> np.ndarray:
  """(B, H, W, C) -> (B, H', W', C), H', W' the next multiples, by reflection.

  Reflection needs more pixels than it pads; tiny sides repeat the edge.
  """
  _, h, w, _ = images.shape
  pad_h, pad_w = (-h) % multiple, (-w) % multiple
  if not pad_h and not pad_w:
    return images
  mode = 'reflect' if h > pad_h and w > pad_w else 'edge'
  return np.pad(images, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode=mode)
