"""The reference chooser: one line per input, references.json with every
choice and its runners-up."""

import json

from scsnet_jax.retrieval import choices
from tests.retrieval.conftest import gray_view


def test_chooser_records_choices_and_runners_up(gallery, tmp_path):
  chooser = choices.ReferenceChooser(gallery, top_k=4)
  choice = chooser.choose('in/x.png', gray_view(gallery.path(2)), 'out/x.png')
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
