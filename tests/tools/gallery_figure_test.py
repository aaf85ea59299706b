"""The docs' gallery figure: one row per photo, six panels, the partner
framed (stand-in model and embedder)."""

import numpy as np
from PIL import Image

from scsnet_jax.tools import gallery_figure
from tests.retrieval.colour_benchmark_test import Embedder, MeanColourRunner


def test_rows_and_panels(tmp_path):
  paths = []
  for i, rgb in enumerate([(200, 40, 40), (40, 160, 60), (50, 60, 200)]):
    path = tmp_path / f'{i}.png'
    Image.new('RGB', (160, 120), rgb).save(path)
    paths.append(str(path))
  figure = gallery_figure.make_figure(MeanColourRunner(), Embedder(),
                                      paths[:2], paths)
  height, width = gallery_figure.TILE
  assert figure.size == (6 * width, 2 * (height + gallery_figure.CAPTION))
  pixels = np.asarray(figure)
  # Row 0, choice 1 is the partner: its green frame's top-left pixel.
  np.testing.assert_array_equal(pixels[1, width + 1], (0x1a, 0x98, 0x50))
