"""scsnet_jax/video/measure.py on a stand-in model (the
real runs are docs/video.md's)."""

import json

import numpy as np
from PIL import Image

from scsnet_jax.video import measure, synthetic
from tests.video.propagate_test import FakeRunner


def test_scores_table_and_figure(tmp_path):
  clip = synthetic.make_clip('cut', frames=6, size=32, scale=2)
  runner = FakeRunner()
  per_frame = measure.colour_clip(runner, clip, per_frame=True)
  propagated = measure.colour_clip(runner, clip, per_frame=False)
  assert per_frame['frames'].shape == clip.truth.shape
  scores = measure.score(clip, propagated)
  assert scores['cuts_found'] == clip.cuts == [3]
  assert len(scores['ciede2000_per_frame']) == 6
  assert scores['flicker'] >= 0 and np.isfinite(scores['ciede2000'])
  results = {'clips': {'cut': {
      'truth_flicker': 0.0, 'per-frame': measure.score(clip, per_frame),
      'keyframe': scores}}}
  text = measure.table(results)
  assert '| cut | keyframe |' in text and '[3] -> [3]' in text
  (tmp_path / 'r.json').write_text(json.dumps(results))
  assert measure.main(['--report', str(tmp_path / 'r.json')]) == 0
  path = tmp_path / 'fig.png'
  measure.figure(clip, per_frame['frames'], propagated['frames'], str(path),
                 columns=3)
  with Image.open(path) as image:
    assert image.size[1] > 4 * 32
