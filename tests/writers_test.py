"""logging_utils.py: writer selection, JSON-lines fallback, sample grids."""

import json
import logging
import sys

import numpy as np
import pytest

from scsnet_jax import writers as logging_utils


@pytest.fixture
def without_clu(monkeypatch):
  """Makes `import clu` and `import tensorflow` fail, as on a JAX-only image."""
  monkeypatch.setitem(sys.modules, 'clu', None)
  monkeypatch.setitem(sys.modules, 'tensorflow', None)


def test_fallback_writer_when_clu_cannot_be_imported(tmp_path, without_clu,
                                                     caplog):
  assert not logging_utils.clu_available()
  with caplog.at_level(logging.INFO):
    writer = logging_utils.create_writer(str(tmp_path))
    assert isinstance(writer, logging_utils.JsonLinesWriter)
    writer.write_scalars(3, {'generator_loss': np.float32(1.5), 'x': 2})
    writer.write_images(3, {'samples': np.zeros((1, 4, 8, 3), np.uint8)})
    writer.flush()
  assert 'clu/TensorFlow not importable' in caplog.text
  assert 'generator_loss=1.5' in caplog.text
  lines = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert lines[0] == {'step': 3, 'kind': 'scalars', 'generator_loss': 1.5,
                      'x': 2.0}
  assert lines[1] == {'step': 3, 'kind': 'images', 'samples': [1, 4, 8, 3]}
  writer.close()


def test_plain_progress_reports_rate_and_eta(without_clu, caplog):
  report = logging_utils.create_progress_reporter(100, None, every_secs=0,
                                                  every_steps=10)
  assert isinstance(report, logging_utils.PlainProgress)
  with caplog.at_level(logging.INFO):
    assert not report(0, t=0.0)
    assert not report(5, t=1.0)
    assert report(10, t=2.0)            # 10 steps in 2 s
  assert 'step 10/100: 5 steps/s, ETA 0.3 min' in caplog.text


def test_clu_writer_when_available(tmp_path):
  if not logging_utils.clu_available():
    pytest.skip('clu/TensorFlow not installed')
  writer = logging_utils.create_writer(str(tmp_path))
  assert not isinstance(writer, logging_utils.JsonLinesWriter)
  writer.write_scalars(1, {'loss': 1.0})
  writer.flush()
  assert any(p.name.startswith('events.out.tfevents') for p in tmp_path.iterdir())


def test_sample_grid_png_round_trips(tmp_path):
  grid = np.random.default_rng(0).integers(0, 256, (18, 40, 3), np.uint8)
  path = logging_utils.write_sample_grid(str(tmp_path), 12, grid)
  assert path.endswith('samples/step_12.png')
  from PIL import Image
  np.testing.assert_array_equal(np.asarray(Image.open(path)), grid)
