"""retrieve() and the reference chooser on real photos with the real
network: a gray, smaller, shifted view of a gallery photo finds it."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from scsnet_jax import color, image_io
from scsnet_jax.retrieval import choices
from scsnet_jax.retrieval.api import Gallery, retrieve
from scsnet_jax.retrieval.features import Embedder
from tests import helpers
from tests.paths import REPO_ROOT

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


def _gray_view(path):
  """A gray 3/4 crop from the top-left, at 96 px: another view."""
  pixels = np.asarray(Image.open(path).convert('RGB'))
  height, width = pixels.shape[:2]
  crop = Image.fromarray(pixels[:height * 3 // 4, :width * 3 // 4])
  crop.thumbnail((96, 96))
  return color.rgb8_to_gray(np.asarray(crop))


def test_gray_view_finds_its_photo_first(gallery):
  for row, name in enumerate(gallery.index.names):
    matches = retrieve(_gray_view(gallery.path(row)), gallery, top_k=3)
    assert matches[0].name == name, (name, matches)
    assert len(matches) == 3 and matches[0].score > matches[1].score


def test_retrieve_accepts_a_folder_and_uint8(gallery, tmp_path, monkeypatch):
  pixels = np.asarray(Image.open(gallery.path(0)).convert('RGB'))
  # A path opens the gallery with the default embedder and cache folder.
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  assert retrieve(pixels, gallery.index.folder)[0].name == gallery.index.names[0]
  assert len(os.listdir(tmp_path / 'scsnet_jax' / 'galleries')) == 1


def test_docs_api_snippet_runs(gallery, tmp_path, monkeypatch, capsys):
  # gallery-api-snippet:start (docs/retrieval.md's block, run as written)
  with open(os.path.join(REPO_ROOT, 'docs', 'retrieval.md')) as f:
    text = f.read()
  code = text.split('<!-- gallery-api-snippet:start -->\n```python\n')[1]
  code = code.split('```')[0]
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  monkeypatch.chdir(tmp_path)
  os.symlink(gallery.index.folder, tmp_path / 'family_photos')
  Image.open(gallery.path(1)).convert('L').resize((60, 40)).save('scan.png')
  exec(compile(code, 'docs/retrieval.md', 'exec'), {})  # pylint: disable=exec-used
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 3
  assert lines[0].startswith(os.path.join('family_photos', gallery.index.names[1]))


def test_chooser_records_choices_and_runners_up(gallery, tmp_path):
  chooser = choices.ReferenceChooser(gallery, top_k=4)
  choice = chooser.choose('in/x.png', _gray_view(gallery.path(2)), 'out/x.png')
  assert choice.reference == gallery.path(2)
  line = choices.choice_line(choice)
  assert line.startswith(f'in/x.png -> {gallery.path(2)} (similarity 0.')
  path = chooser.write_json(str(tmp_path))
  with open(path) as f:
    record = json.load(f)
  assert record['format'] == choices.FORMAT and record['top_k'] == 4
  entry = record['inputs'][0]
  assert entry['reference'] == gallery.path(2) and entry['output'] == 'out/x.png'
  assert len(entry['runners_up']) == 3
  assert entry['choice']['score'] >= entry['runners_up'][0]['score']
