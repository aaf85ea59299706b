"""The retrieval tests' shared gallery: six Debian photos, the real
EfficientNet-Lite0 (skipped where the package or the photos are absent)."""

import os

import numpy as np
import pytest
from PIL import Image

from scsnet_jax import color, image_io
from scsnet_jax.retrieval.api import Gallery
from scsnet_jax.retrieval.features import Embedder
from tests import helpers

PHOTOS = ['/usr/share/puzzle-jigsaw/samples/cat-animal-cat-portrait-mackerel.jpg',
          '/usr/share/palapeli/collection/citrus-fruits.jpg',
          '/usr/share/palapeli/collection/european-honey-bee.jpg',
          '/usr/share/palapeli/collection/castle-maintenon.jpg',
          '/usr/share/palapeli/collection/cincinnati-bridge.jpg',
          '/usr/share/backgrounds/mate/nature/LadyBird.jpg']


@pytest.fixture(scope='module')
def gallery(tmp_path_factory):
  params = helpers.efficientnet_lite0_params_or_skip()
  if not all(os.path.exists(p) for p in PHOTOS):
    pytest.skip('Debian photos absent (shared/corpus/photos-debian12.md)')
  folder = tmp_path_factory.mktemp('gallery')
  for path in PHOTOS:
    image = Image.fromarray(image_io.read_image(path, draft_size=(400, 400)))
    image.thumbnail((320, 320))
    image.save(folder / (os.path.basename(path)[:12] + '.png'))
  return Gallery.open(str(folder), embedder=Embedder(params, weights_id='t'),
                      cache_dir=str(tmp_path_factory.mktemp('cache')))


def gray_view(path):
  """A gray 3/4 crop from the top-left, at 96 px: another view."""
  pixels = np.asarray(Image.open(path).convert('RGB'))
  height, width = pixels.shape[:2]
  crop = Image.fromarray(pixels[:height * 3 // 4, :width * 3 // 4])
  crop.thumbnail((96, 96))
  return color.rgb8_to_gray(np.asarray(crop))
