"""The gallery index with a stand-in embedder (numpy, no network): caching,
incremental updates, bad files, corrupt and foreign caches."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from scsnet_jax.errors import UserError
from scsnet_jax.retrieval import features as features_lib
from scsnet_jax.retrieval import index as index_lib
from scsnet_jax.retrieval.features import Features


class FakeEmbedder:
  """Descriptors from the L image's mean (so a photo's row is checkable);
  counts what it embeds."""
  version = 'fake/1'
  batch_size = 3

  def __init__(self):
    self.embedded = 0

  def embed_light(self, light):
    self.embedded += len(light)
    mean = light.mean(axis=(1, 2))[:, None]
    return Features(np.repeat(mean, features_lib.POOLED_DIM, 1),
                    np.repeat(mean, features_lib.GRID_DIM, 1),
                    features_lib.histogram(light))


def _photo(folder, name, value):
  path = os.path.join(folder, name)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.full((20, 30, 3), value, np.uint8)).save(path)
  return path


@pytest.fixture
def gallery(tmp_path):
  folder = tmp_path / 'photos'
  for i, name in enumerate(['b.png', 'a.jpg', 'sub/c.png', 'd.png']):
    _photo(str(folder), name, 40 + 40 * i)
  (folder / 'broken.jpg').write_bytes(b'not a jpeg')
  (folder / '.hidden.png').write_bytes(b'skipped unread')
  (folder / 'notes.txt').write_text('not an image name')
  return str(folder), str(tmp_path / 'cache')


def _build(folder, cache, embedder=None, errors=None):
  return index_lib.build_index(folder, embedder or FakeEmbedder(),
                               cache_dir=cache,
                               on_error=(errors if errors is not None
                                         else []).append)


def test_build_names_rows_and_bad_files(gallery):
  folder, cache = gallery
  errors, embedder = [], FakeEmbedder()
  index = _build(folder, cache, embedder, errors)
  assert index.names == ['a.jpg', 'b.png', 'd.png', os.path.join('sub', 'c.png')]
  assert embedder.embedded == 4 and index.built == 4 and index.failed == 1
  assert len(errors) == 1 and errors[0].startswith(
      os.path.join(folder, 'broken.jpg') + ': cannot decode')
  assert index.features.pooled.dtype == np.float16
  # a.jpg was written with value 80 (L of sRGB 80 is 33.8 -> 0.338).
  assert float(index.features.pooled[0, 0]) == pytest.approx(0.338, abs=0.01)
  assert os.path.exists(index_lib.cache_path(folder, cache))


def test_unchanged_folder_is_not_reembedded_and_changes_are_incremental(
    gallery):
  folder, cache = gallery
  first = _build(folder, cache)
  again = FakeEmbedder()
  second = _build(folder, cache, again)
  assert again.embedded == 0 and second.names == first.names
  np.testing.assert_array_equal(second.features.grid, first.features.grid)
  _photo(folder, 'e.png', 250)                            # added
  os.remove(os.path.join(folder, 'b.png'))                # removed
  os.rename(os.path.join(folder, 'd.png'), os.path.join(folder, 'z.png'))
  third_embedder = FakeEmbedder()
  third = _build(folder, cache, third_embedder)
  assert third_embedder.embedded == 1     # only e.png: z.png is d's content
  assert third.names == ['a.jpg', 'e.png', os.path.join('sub', 'c.png'),
                         'z.png']


@pytest.mark.parametrize('damage', ['garbage', 'foreign', 'shapes', 'empty'])
def test_corrupt_or_foreign_cache_is_rebuilt(gallery, damage, caplog):
  folder, cache = gallery
  _build(folder, cache)
  path = index_lib.cache_path(folder, cache)
  if damage == 'garbage':
    with open(path, 'r+b') as f:
      f.seek(40)
      f.write(b'\xff' * 200)
  elif damage == 'empty':
    open(path, 'wb').close()
  else:
    with np.load(path) as data:
      arrays = dict(data)
    if damage == 'foreign':
      arrays['model'] = np.array('another-model/2')
    else:
      arrays['grid'] = arrays['grid'][:, :7]
    np.savez(path, **arrays)
  embedder = FakeEmbedder()
  with caplog.at_level(logging.WARNING):
    index = _build(folder, cache, embedder)
  assert embedder.embedded == 4 and len(index) == 4
  assert 'rebuilding' in caplog.text
  assert _build(folder, cache, FakeEmbedder()).built == 0   # healthy again


def test_not_a_folder(tmp_path):
  with pytest.raises(UserError, match='not a folder'):
    _build(str(tmp_path / 'missing'), str(tmp_path / 'cache'))


def test_progress_counts_every_file(gallery):
  folder, cache = gallery
  seen = []
  index_lib.build_index(folder, FakeEmbedder(), cache_dir=cache,
                        on_progress=lambda d, n: seen.append((d, n)),
                        on_error=lambda line: None)
  assert seen == [(i, 5) for i in range(1, 6)]


def test_a_gallery_without_readable_photos_is_one_error(tmp_path):
  from scsnet_jax.retrieval.api import Gallery  # pylint: disable=import-outside-toplevel
  (tmp_path / 'photos').mkdir()
  (tmp_path / 'photos' / 'bad.jpg').write_bytes(b'no')
  with pytest.raises(UserError, match='holds no readable photo'):
    Gallery.open(str(tmp_path / 'photos'), embedder=FakeEmbedder(),
                 cache_dir=str(tmp_path / 'cache'), on_error=lambda l: None)
