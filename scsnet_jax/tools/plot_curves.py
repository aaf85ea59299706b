"""Training and validation curves of a run, from WORKDIR/metrics.jsonl.

  python -m scsnet_jax.tools.plot_curves --workdir WORKDIR --output curves.png

Nine panels: the content loss of automatic and referential steps; the
validation CIE-L PSNR of the model against bicubic; the validation CIEDE2000
per mode against each mode's baseline; the colourfulness of the outputs;
and the training-health instruments (train/health.py): parameter norm
relative to its start, update ratio and gradient norm per module, the CPM's
live activations and dead units per layer, and the spread of its output. Needs matplotlib (``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Iterable

from scsnet_jax import writers
from scsnet_jax.evaluation import validation
from scsnet_jax.tools import evaluate_photos


def read_scalars(path: str) -> dict[str, list[tuple[int, float]]]:
  """metrics.jsonl -> {name: [(step, value), ...]} sorted by step; a step
  written twice (a resumed run) keeps its last value.

  A line that is not a JSON object with an integer step (a run killed
  mid-write leaves a truncated line, and the resumed run appends after it) is
  skipped; one warning on stderr names the file and the skipped line numbers.
  """
  series: dict[str, dict[int, float]] = {}
  skipped = []
  with open(path, encoding='utf-8', errors='replace') as f:
    for number, line in enumerate(f, start=1):
      line = line.strip()
      if not line:
        continue
      try:
        record = json.loads(line)
        if not isinstance(record, dict):
          raise ValueError('not an object')
        if record.get('kind') != 'scalars':
          continue
        step = int(record['step'])
      except (ValueError, KeyError, TypeError, OverflowError):
        skipped.append(number)
        continue
      for key, value in record.items():
        if key not in ('step', 'kind') and isinstance(value, (int, float)):
          series.setdefault(key, {})[step] = float(value)
  if skipped:
    shown = ', '.join(map(str, skipped[:10]))
    more = f' and {len(skipped) - 10} more' if len(skipped) > 10 else ''
    print(f'warning: {path}: skipped {len(skipped)} unparsable line(s) '
          f'(line {shown}{more}); a run stopped mid-write leaves one',
          file=sys.stderr)
  return {k: sorted(v.items()) for k, v in series.items()}


def _plot(axis, series, name, label, **style):
  points = series.get(name)
  if points:
    steps, values = zip(*points)
    axis.plot(steps, values, label=label, **style)


def _smoothed(points: Iterable[tuple[int, float]], weight: float = 0.8):
  out, last = [], None
  for step, value in points:
    last = value if last is None else weight * last + (1 - weight) * value
    out.append((step, last))
  return out


MODULE_COLOURS = {
    'init_conv': 'tab:brown', 'source_encoder': 'tab:blue',
    'reference_encoder': 'tab:cyan', 'pvc_attention': 'tab:purple',
    'color_decoder': 'tab:orange', 'texture_encoder': 'tab:green',
    'fusion': 'tab:olive', 'cpm': 'tab:red'}


def _draw_health(series, norms, ratios, grads, alive, spread):
  """The training-health panels (train/health.py, docs/training.md)."""
  for module, colour in MODULE_COLOURS.items():
    points = series.get(f'health/param_norm/{module}')
    if points:
      first = points[0][1] or 1.0
      norms.plot([s for s, _ in points], [v / first for _, v in points],
                 color=colour, label=module)
    _plot(ratios, series, f'health/update_ratio/{module}', module,
          color=colour)
    _plot(grads, series, f'health/grad_norm/{module}', module, color=colour)
  norms.axhline(0.5, color='gray', linestyle=':', label='warning (0.5)')
  norms.set_title('parameter norm / first logged value, per module')
  ratios.set_title('update / parameter norm per step')
  ratios.set_yscale('log')
  grads.set_title('gradient norm per module (mean per log interval)')
  grads.set_yscale('log')
  for layer, colour in ((1, 'tab:red'), (2, 'tab:orange'), (3, 'tab:olive')):
    _plot(alive, series, f'health/cpm_alive/layer{layer}',
          f'layer {layer}: positive activations', color=colour, marker='o')
    _plot(alive, series, f'health/cpm_dead_units/layer{layer}',
          f'layer {layer}: dead units', color=colour, linestyle='--')
  alive.axhline(0.2, color='gray', linestyle=':', label='warning (0.2)')
  alive.set_title('CPM hidden layers on the validation photos')
  for channel, colour in (('L', 'k'), ('a', 'tab:green'), ('b', 'tab:blue')):
    _plot(spread, series, f'health/cpm_output_std/{channel}',
          f'{channel}', color=colour, marker='o')
  spread.set_title('CPM head output: std over each photo (nLAB)')
  for axis in (norms, ratios, grads, alive, spread):
    axis.set_xlabel('step')


def draw(series: dict[str, list[tuple[int, float]]], output: str,
         title: str) -> None:
  # matplotlib: the train extra, needed only to draw.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(3, 3, figsize=(17, 12))
  (losses, lpsnr, ciede, cn, norms, ratios, grads, alive,
   spread) = axes.ravel()
  _draw_health(series, norms, ratios, grads, alive, spread)
  for mode, colour in (('automatic', 'tab:blue'), ('referential', 'tab:red')):
    key = f'{mode}/content_loss'
    if key in series:
      losses.plot(*zip(*series[key]), color=colour, alpha=0.25)
      losses.plot(*zip(*_smoothed(series[key])), color=colour,
                  label=f'{mode} steps (L1, nLAB)')
  losses.set_title('training content loss')
  losses.set_xlabel('step')
  losses.set_yscale('log')

  _plot(lpsnr, series, 'val/automatic/model/l_psnr', 'model', color='k',
        marker='o')
  _plot(lpsnr, series, 'val/automatic/bicubic_gray/l_psnr', 'bicubic',
        color='gray', linestyle='--')
  lpsnr.ticklabel_format(axis='y', useOffset=False)
  lpsnr.set_title('validation CIE-L PSNR (dB), x4, unseen photos')
  lpsnr.set_xlabel('step')

  colours = dict(zip(validation.MODES, ('tab:blue', 'tab:green',
                                          'tab:orange', 'tab:purple')))
  for mode, colour in colours.items():
    _plot(ciede, series, f'val/{mode}/model/ciede2000', f'{mode}: model',
          color=colour, marker='o')
    for method, style in zip(validation.BASELINES_OF_MODE[mode], ('--', ':')):
      _plot(ciede, series, f'val/{mode}/{method}/ciede2000',
            f'{mode}: {method}', color=colour, linestyle=style)
    _plot(cn, series, f'val/{mode}/model/colorfulness', f'{mode}: model',
          color=colour, marker='o')
  cn.axhline(evaluate_photos.MIN_COLORFULNESS, color='gray', linestyle=':',
             label=f'target ({evaluate_photos.MIN_COLORFULNESS:g})')
  ciede.set_title('validation CIEDE2000 (lower is better)')
  ciede.set_xlabel('step')
  cn.set_title('validation colourfulness (M3)')
  cn.set_xlabel('step')
  for axis in axes.ravel():
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
      axis.legend(fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(output, dpi=90)
  plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m scsnet_jax.tools.plot_curves',
      description='Training and validation curves of a run as one PNG.')
  parser.add_argument('--workdir', required=True,
                      help='training workdir holding metrics.jsonl')
  parser.add_argument('--output', default=None,
                      help='PNG to write (default WORKDIR/curves.png)')
  parser.add_argument('--title', default='',
                      help='figure title (default: the workdir)')
  return parser


def main(argv=None):
  args = build_parser().parse_args(argv)
  path = os.path.join(args.workdir, writers.METRICS_FILE)
  if not os.path.isfile(path):
    sys.exit(f'error: {path}: no such file (was the run trained with this '
             'version? metrics.jsonl is written beside the TensorBoard events)')
  series = read_scalars(path)
  output = args.output or os.path.join(args.workdir, 'curves.png')
  draw(series, output, args.title or args.workdir)
  print(output)


if __name__ == '__main__':
  main()
