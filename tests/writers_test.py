"""writers.py: writer selection, JSON-lines fallback, progress."""

import json
import logging
import sys

import numpy as np
import pytest

from scsnet_jax import writers


@pytest.fixture
def without_clu(monkeypatch):
  """Makes `import clu` and `import tensorflow` fail, as on a JAX-only image."""
  monkeypatch.setitem(sys.modules, 'clu', None)
  monkeypatch.setitem(sys.modules, 'tensorflow', None)


def test_fallback_writer_when_clu_cannot_be_imported(tmp_path, without_clu,
                                                     caplog):
  assert not writers.clu_available()
  with caplog.at_level(logging.INFO):
    writer = writers.create_writer(str(tmp_path))
    assert isinstance(writer, writers.JsonLinesWriter)
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
  report = writers.create_progress_reporter(100, None, every_secs=0,
                                                  every_steps=10)
  assert isinstance(report, writers.PlainProgress)
  with caplog.at_level(logging.INFO):
    assert not report(0, t=0.0)
    assert not report(5, t=1.0)
    assert report(10, t=2.0)            # 10 steps in 2 s
  assert 'step 10/100: 5 steps/s, ETA 0.3 min' in caplog.text


def test_clu_writer_when_available(tmp_path):
  if not writers.clu_available():
    pytest.skip('clu/TensorFlow not installed')
  writer = writers.create_writer(str(tmp_path))
  assert not isinstance(writer, writers.JsonLinesWriter)
  writer.write_scalars(1, {'loss': 1.0})
  writer.flush()
  assert any(p.name.startswith('events.out.tfevents') for p in tmp_path.iterdir())
