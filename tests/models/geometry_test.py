"""models/geometry.py: reflection padding against ``np.pad`` indices written
out by hand."""

import numpy as np

from scsnet_jax.models import geometry


def _gray(shape, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_reflect_pad_indices():
  x = _gray((1, 5, 6, 1))
  padded = geometry.reflect_pad(x)
  assert padded.shape == (1, 8, 8, 1)
  np.testing.assert_array_equal(padded[:, :5, :6], x)
  # Reflection without repeating the edge: rows 5,6,7 <- 3,2,1; cols 6,7 <- 4,3.
  np.testing.assert_array_equal(padded[0, 5:, :6, 0], x[0, [3, 2, 1], :, 0])
  np.testing.assert_array_equal(padded[0, :5, 6:, 0], x[0, :, [4, 3], 0].T)
  small = _gray((1, 1, 2, 1))
  tiny = geometry.reflect_pad(small)   # too small to reflect: edge repeat
  assert tiny.shape == (1, 4, 4, 1)
  np.testing.assert_array_equal(tiny[0, :, :2, 0],
                                np.broadcast_to(small[0, 0, :, 0], (4, 2)))
  np.testing.assert_array_equal(tiny[0, :, 2:, 0], small[0, 0, 1, 0])


def test_reflect_pad_keeps_sizes_that_are_already_multiples():
  x = _gray((2, 8, 12, 3))
  assert geometry.reflect_pad(x) is x
  assert geometry.reflect_pad(_gray((1, 5, 7, 1)), 8).shape == (1, 8, 8, 1)
