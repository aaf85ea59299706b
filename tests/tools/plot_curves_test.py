"""tools/plot_curves.py: metrics.jsonl -> series -> a PNG of four panels."""

import json

import numpy as np
from PIL import Image

from scsnet_jax.tools import plot_curves


def test_curves_from_metrics_jsonl(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  records = [
      {'kind': 'hparams', 'lr': 1},
      {'step': 10, 'kind': 'scalars', 'automatic/content_loss': 0.3,
       'referential/content_loss': 0.2},
      {'step': 10, 'kind': 'scalars', 'val/automatic/model/l_psnr': 24.0,
       'val/automatic/bicubic_gray/l_psnr': 25.0},
      {'step': 10, 'kind': 'images', 'samples': [1, 8, 8, 3]},
      {'step': 20, 'kind': 'scalars', 'automatic/content_loss': 0.25,
       'referential/content_loss': 0.15},
      # A resumed run writes step 20 again: the last value wins.
      {'step': 20, 'kind': 'scalars', 'automatic/content_loss': 0.2},
      {'step': 20, 'kind': 'scalars', 'val/automatic/model/l_psnr': 25.5,
       'val/automatic/model/ciede2000': 12.0,
       'val/automatic/model/colorfulness': 21.0},
  ]
  path.write_text('\n'.join(json.dumps(r) for r in records) + '\n\n')
  series = plot_curves.read_scalars(str(path))
  assert series['automatic/content_loss'] == [(10, 0.3), (20, 0.2)]
  assert series['val/automatic/model/l_psnr'] == [(10, 24.0), (20, 25.5)]
  assert 'samples' not in series and 'lr' not in series
  smoothed = plot_curves._smoothed([(0, 1.0), (1, 0.0)], weight=0.8)
  assert smoothed == [(0, 1.0), (1, 0.8)]
  output = tmp_path / 'curves.png'
  plot_curves.draw(series, str(output), 'test')
  image = np.asarray(Image.open(output))
  assert image.shape[0] > 400 and image.shape[1] > 600
  assert image.std() > 10   # not a blank canvas


def test_truncated_line_is_skipped_with_one_warning(tmp_path, capsys):
  """A crash mid-write leaves half a line; the resumed run appends after it.
  main() still draws, and one warning names the file and the line numbers."""
  path = tmp_path / 'metrics.jsonl'
  good = [json.dumps({'step': s, 'kind': 'scalars',
                      'automatic/content_loss': 1.0 / s}) for s in (1, 2, 3)]
  cut = good[1][:len(good[1]) // 2]
  lines = [good[0], cut, good[1], good[2], '[1, 2]',
           json.dumps({'kind': 'scalars', 'step': 'x'})]
  path.write_text('\n'.join(lines) + '\n')
  output = tmp_path / 'c.png'
  plot_curves.main(['--workdir', str(tmp_path), '--output', str(output)])
  err = capsys.readouterr().err
  warnings = [l for l in err.splitlines() if l.startswith('warning:')]
  assert len(warnings) == 1, err
  assert str(path) in warnings[0] and 'line 2, 5, 6' in warnings[0]
  assert plot_curves.read_scalars(str(path))['automatic/content_loss'] == [
      (1, 1.0), (2, 0.5), (3, 1.0 / 3)]
  assert output.exists()
