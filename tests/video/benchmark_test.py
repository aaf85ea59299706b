"""scsnet_jax/video/benchmark.py: its 240p frames, and its rows on a
stand-in model (the real figures: docs/video.md)."""

import numpy as np

from scsnet_jax.video import benchmark
from tests.video.propagate_test import FakeRunner


def test_benchmark_frames_are_240p():
  frames = benchmark.pan_frames(2)
  assert [f.shape for f in frames] == [(240, 426, 1)] * 2
  assert not np.array_equal(frames[0], frames[1])


class _Predictor:
  _compiled = {'a': None, 'b': None}


def test_one_row_per_mode_with_the_sizes_and_a_rate(monkeypatch):
  runner = FakeRunner()
  runner.predictor = _Predictor()
  asked = {}
  def load_runner(path, **kwargs):
    asked.update(path=path, **kwargs)
    return runner
  monkeypatch.setattr(benchmark.runner_lib, 'load_runner', load_runner)
  rows = benchmark.bench_video(frames=2)
  assert asked['path'].endswith('starter') and asked['dtype'] == 'float32'
  assert [r['mode'] for r in rows] == ['propagated', 'per-frame']
  for row in rows:
    assert row['input'] == '426x240' and row['output'] == '852x480'
    assert row['frames'] == 2 and row['frames_per_s'] > 0
    assert row['compiled_programs'] == 2
  # Propagated frames after the first take a reference; per-frame never.
  assert runner.references[0] is None and runner.references[1] is not None
  assert runner.references[-4:] == [None] * 4
