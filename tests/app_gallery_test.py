"""The app's gallery suggestions (no gradio): ranked thumbnails for an
upload, names only from the index, bad uploads one line."""

import numpy as np
import pytest
from PIL import Image

from scsnet_jax import app_gallery
from scsnet_jax.app_requests import RequestError
from scsnet_jax.retrieval.api import Gallery
from scsnet_jax.retrieval.choices import ReferenceChooser
from scsnet_jax.retrieval.features import Embedder
from tests import helpers


def _pattern(seed):
  small = np.random.default_rng(seed).integers(0, 256, (3, 4, 3), np.uint8)
  return Image.fromarray(small).resize((400, 300), Image.Resampling.NEAREST)


@pytest.fixture(scope='module')
def suggestions(tmp_path_factory):
  params = helpers.efficientnet_lite0_params_or_skip()
  folder = tmp_path_factory.mktemp('gallery')
  for seed in range(5):
    _pattern(seed).save(folder / f'p{seed}.jpg', quality=95)
  gallery = Gallery.open(str(folder), embedder=Embedder(params, weights_id='t'),
                         cache_dir=str(tmp_path_factory.mktemp('cache')))
  return app_gallery.GallerySuggestions(ReferenceChooser(gallery, top_k=3),
                                        max_input_pixels=1 << 20)


def test_an_upload_gets_ranked_thumbnails(suggestions, tmp_path):
  upload = tmp_path / 'scan.png'
  _pattern(3).convert('L').resize((120, 90)).save(upload)
  items, names = suggestions.suggest(str(upload))
  assert names[0] == 'p3.jpg' and len(names) == 3 == len(items)
  thumbnail, caption = items[0]
  assert thumbnail.shape == (192, 256, 3) and caption.startswith('1. p3.jpg (')
  assert suggestions.reference_path('p3.jpg').endswith('p3.jpg')
  assert suggestions.suggest(None) == ([], [])


def test_only_gallery_names_and_good_uploads_are_accepted(suggestions,
                                                          tmp_path):
  assert suggestions.reference_path(None) is None
  with pytest.raises(RequestError, match='not a photo of the reference'):
    suggestions.reference_path('../../etc/passwd')
  bad = tmp_path / 'bad.png'
  bad.write_bytes(b'nope')
  with pytest.raises(RequestError, match='bad.png: '):
    suggestions.suggest(str(bad))
  big = tmp_path / 'big.png'
  Image.new('L', (2000, 1000)).save(big)
  with pytest.raises(RequestError, match='big.png: .*pixels'):
    suggestions.suggest(str(big))
