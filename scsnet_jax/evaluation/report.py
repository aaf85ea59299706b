"""Formats evaluation results: JSON, a markdown table, TensorBoard scalars.

``summarize`` gives ``report['results']``: mode -> {'num_images',
'real': {'colorfulness'}, method -> scores or None}, with scores
'colorfulness', 'colorfulness_ratio_to_real', 'fid' and, for modes with a
ground truth, 'psnr' and 'ssim' (None where undefined).
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional

from scsnet_jax import atomic, config_lib, writers
from scsnet_jax import workdir as workdir_lib
from scsnet_jax.evaluation import metrics

# The rows of every table: the model and the two baselines of baselines.py.
METHODS = ('scsnet', 'bicubic_gray', 'color_copy')
MODES = ('automatic', 'self_reference', 'other_reference')
MODES_WITH_GROUND_TRUTH = ('automatic', 'self_reference')


def _finite_or_none(value):
  if value is None or not math.isfinite(value):
    return None
  return float(value)


def summarize(accumulator, fid_null_reason: Optional[str]) -> dict[str, Any]:
  """``protocol.EvalAccumulator`` sums -> the nested JSON-able results, per
  mode and method (FID None with a reason, or with < 2 images)."""
  results = {}
  for mode in MODES:
    cells = accumulator.scores[mode]
    real_cn = cells['real'].colorfulness.result()
    entry = {'num_images': cells['real'].colorfulness.count,
             'real': {'colorfulness': _finite_or_none(real_cn)}}
    for method in METHODS:
      cell = cells[method]
      if not cell.colorfulness.count:
        entry[method] = None
        continue
      cn = cell.colorfulness.result()
      scores = {'colorfulness': cn,
                'colorfulness_ratio_to_real': (cn / real_cn if real_cn else
                                               None)}
      if mode in MODES_WITH_GROUND_TRUTH:
        scores['psnr'] = _finite_or_none(cell.psnr.result())
        scores['ssim'] = _finite_or_none(cell.ssim.result())
      scores['fid'] = _fid_or_none(cell.features, accumulator.real_features,
                                   fid_null_reason)
      entry[method] = scores
    results[mode] = entry
  return results


def _fid_or_none(features, real_features, fid_null_reason):
  if fid_null_reason is not None or features is None:
    return None
  if features.count < 2 or real_features.count < 2:
    return None
  return metrics.fid_from_statistics(features, real_features)


def flat_scalars(results: dict[str, Any]) -> dict[str, float]:
  """{'automatic/scsnet/fid': value, ...} for TensorBoard: the scores of
  every (mode, method), nulls and counts (num_images) dropped."""
  return {name: float(value)
          for name, value in config_lib.flatten(results, sep='/').items()
          if name.count('/') == 2 and value is not None}


def markdown_table(report: dict[str, Any]) -> str:
  """One table per mode: methods x (FID, CN, CN/real, PSNR, SSIM)."""
  fmt = lambda v, d: '-' if v is None else f'{v:.{d}f}'
  lines = [f"# Evaluation at step {report['step']}", ''] if (
      'step' in report) else []
  lines += [f"PSNR/SSIM: {report['conventions']['psnr_ssim']}. "
           f"CN: {report['conventions']['colorfulness']}. "
           f"FID: {report['conventions']['fid']}.", '']
  if report['fid_null_reason']:
    lines += [f"FID is null: {report['fid_null_reason']}", '']
  for mode, entry in report['results'].items():
    lines += [f"## {mode} ({entry['num_images']} images)", '']
    if not entry['num_images']:
      lines += ['n/a: no images in this mode (see num_' + mode +
                ' in config.eval, and the size of the eval split)', '']
      continue
    lines += ['| method | FID | CN | CN / real CN | PSNR (dB) | SSIM |',
              '|---|---|---|---|---|---|']
    for method in METHODS:
      s = entry[method]
      if s is None:
        lines.append(f'| {method} | n/a | | | | |')
        continue
      lines.append(
          f"| {method} | {fmt(s['fid'], 2)} | {fmt(s['colorfulness'], 2)} | "
          f"{fmt(s['colorfulness_ratio_to_real'], 3)} | "
          f"{fmt(s.get('psnr'), 2)} | {fmt(s.get('ssim'), 4)} |")
    real_cn = entry['real']['colorfulness']
    lines += [f"| real images | | {fmt(real_cn, 2)} "
              f"| {'n/a' if real_cn is None else '1.000'} | | |", '']
  return '\n'.join(lines)


def console_summary(report: dict[str, Any], json_path: str) -> str:
  """What ``--mode=eval`` prints: the table it wrote, then in plain words
  how many images each mode had (of how many asked for), whether FID is
  there, and where the files are."""
  requested = report.get('requested_images', {})
  counts = [f"{mode} {entry['num_images']}" + (
      f" of {requested[mode]}" if mode in requested else '')
            for mode, entry in report['results'].items()]
  lines = [markdown_table(report), f"images per mode: {', '.join(counts)}."]
  if any(entry['num_images'] < requested.get(mode, 0)
         for mode, entry in report['results'].items()):
    lines.append('The eval split has fewer images than config.eval asks for '
                 "(the demo's has 2: 1 automatic, 1 self-reference), so "
                 'these scores are a smoke test, not a measurement.')
  if not report.get('inception_weights'):
    lines.append('FID is not computed: it needs the Inception weights you '
                 'convert yourself (--config.eval.inception_weights=FILE, '
                 'docs/evaluation.md).')
  lines.append(f'written: {json_path} and {json_path[:-len(".json")]}.md')
  return '\n'.join(lines)


def conventions(eval_config) -> dict[str, str]:
  """One line per metric saying how it was computed (kept in the JSON)."""
  crop = eval_config.crop_border
  channel = 'BT.601 Y' if eval_config.y_channel else 'RGB, channel mean'
  return {
      'psnr_ssim': (f'8-bit sRGB, {channel}, crop_border={crop}, SSIM '
                    'Gaussian 11x11 sigma 1.5 (BasicSR), mean over images'),
      'colorfulness': ('Hasler-Suesstrunk M3 on sRGB 0-255, mean over '
                       'images (not the paper\'s ~4-5.5 scale)'),
      'fid': ('pytorch-fid InceptionV3 pool3 (2048-d), bilinear resize to '
              '299, real = HR images of all modes'),
  }


def write_report(workdir: str, report: dict[str, Any]) -> str:
  """Writes metrics_<step>.json and .md under WORKDIR/eval; returns the json."""
  json_path, md_path = workdir_lib.eval_report_paths(workdir, report['step'])
  os.makedirs(workdir_lib.eval_dir(workdir), exist_ok=True)
  atomic.write_json(json_path, report, indent=2, allow_nan=False)
  atomic.write_text(md_path, markdown_table(report) + '\n')
  return json_path


def write_tensorboard(workdir: str, step: int, scalars: dict[str, float]):
  """The (prefixed, ``common.prefixed``) scalars as summaries in
  WORKDIR/eval.

  Through ``writers.create_writer``: TensorBoard events with clu and
  TensorFlow, else its JSON-lines fallback (``metrics.jsonl``).
  """
  writer = writers.create_writer(workdir_lib.eval_dir(workdir))
  writer.write_scalars(step, scalars)
  writer.flush()
  writer.close()
