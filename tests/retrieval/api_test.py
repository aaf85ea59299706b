"""retrieve() and the reference chooser on real photos with the real
network: a gray, smaller, shifted view of a gallery photo finds it."""

import os

import numpy as np
from PIL import Image

from scsnet_jax.retrieval.api import retrieve
from tests.retrieval.conftest import gray_view
from tests.paths import REPO_ROOT

def test_gray_view_finds_its_photo_first(gallery):
  for row, name in enumerate(gallery.index.names):
    matches = retrieve(gray_view(gallery.path(row)), gallery, top_k=3)
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
