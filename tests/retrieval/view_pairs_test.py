"""view_pairs: the two parts of a photo do not overlap, the partner is
mirrored, and the query has the benchmark's sizes."""

import numpy as np

from scsnet_jax.retrieval import view_pairs


def test_view_pair_parts_do_not_overlap_and_the_partner_is_mirrored():
  width, height = 200, 100
  columns = np.arange(width, dtype=np.uint8)            # pixel value = column
  pixels = np.repeat(np.repeat(columns[None, :, None], height, 0), 3, 2)
  view = view_pairs.view_pair(pixels)
  cut = int(width * (1 - view_pairs.GAP) / 2)                  # 90
  partner = view['partner'][0, :, 0]
  np.testing.assert_array_equal(partner, np.arange(width - 1, width - cut - 1,
                                                   -1))
  assert view['target'].shape == (view_pairs.LR_SIZE[0] * view_pairs.SCALE,
                                  view_pairs.LR_SIZE[1] * view_pairs.SCALE, 3)
  assert view['gray'].shape == view_pairs.LR_SIZE + (1,)
  assert view['target'].max() < cut and partner.min() >= width - cut
  portrait = view_pairs.view_pair(np.ascontiguousarray(pixels.transpose(1, 0, 2)))
  assert portrait['gray'].shape == view_pairs.LR_SIZE[::-1] + (1,)
