"""Final evaluation of a run on unseen photos: table, targets, picture grid.

  python -m scsnet_jax.tools.evaluate_photos --checkpoint WORKDIR \
      --json results.json [--grid grid.png] [--table table.md]

Scores the EMA generator of the latest checkpoint (``scsnet_jax.evaluation.validation``:
every mode beside its baselines) on the run's validation photos
(scikit-image's, by default) and, when the run trained on a folder corpus, on
that corpus's held-out share. Writes the scores, the markdown tables and the
pass/fail of the learning targets on each set (docs/results.md) as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys

from scsnet_jax import atomic
from scsnet_jax.errors import UserError

# The learning targets of the CPU recipe (issue 28, docs/results.md), on
# every set of unseen photos at x4 with the EMA weights.
LPSNR_MARGIN_DB = 1.5
AUTOMATIC_RATIO = 0.95        # automatic CIEDE2000 over the gray baseline's
MIN_COLORFULNESS = 25.0
SELF_REFERENCE_RATIO = 0.5    # own-colours CIEDE2000 over automatic's


def check_targets(scores: dict[str, float]) -> dict[str, dict]:
  """{target: {'pass': bool, 'value': ..., 'bound': ...}} from run() scores."""
  s = scores
  checks = {}
  def add(name, value, bound, passed):
    checks[name] = {'value': round(value, 3), 'bound': round(bound, 3),
                    'pass': bool(passed)}
  l_model = s['automatic/model/l_psnr']
  l_bicubic = s['automatic/bicubic_gray/l_psnr']
  add(f'luminance: L-PSNR >= bicubic + {LPSNR_MARGIN_DB} dB', l_model,
      l_bicubic + LPSNR_MARGIN_DB, l_model >= l_bicubic + LPSNR_MARGIN_DB)
  auto = s['automatic/model/ciede2000']
  gray = s['automatic/bicubic_gray/ciede2000']
  add(f'automatic: CIEDE2000 <= {AUTOMATIC_RATIO} x gray', auto,
      AUTOMATIC_RATIO * gray, auto <= AUTOMATIC_RATIO * gray)
  cn = s['automatic/model/colorfulness']
  add(f'automatic: colourfulness >= {MIN_COLORFULNESS:g}', cn,
      MIN_COLORFULNESS, cn >= MIN_COLORFULNESS)
  if 'self_reference/model/ciede2000' in s:
    self_ref = s['self_reference/model/ciede2000']
    add(f'aligned reference: CIEDE2000 <= {SELF_REFERENCE_RATIO} x automatic',
        self_ref, SELF_REFERENCE_RATIO * auto,
        self_ref <= SELF_REFERENCE_RATIO * auto)
  if 'other_view_reference/model/ciede2000' in s:
    other = s['other_view_reference/model/ciede2000']
    best = min(s['other_view_reference/global_transfer/ciede2000'],
               s['other_view_reference/exemplar_transfer/ciede2000'], auto)
    add('other view: CIEDE2000 < global transfer, exemplar transfer and '
        'automatic', other, best, other < best)
  return checks


def _heldout_config(config):
  """config.validation-like section for the corpus's held-out share."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  section = ml_collections.ConfigDict(config.validation.to_dict())
  section.source = 'folder'
  section.folder_path = config.data.folder_path
  section.eval_fraction = float(config.data.eval_fraction)
  return section


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m scsnet_jax.tools.evaluate_photos',
      description='Score a run on unseen photos against the baselines.')
  parser.add_argument('--checkpoint', required=True,
                      help='training workdir (or its checkpoints folder, or '
                      'one step folder)')
  parser.add_argument('--json', required=True,
                      help='where to write the results JSON')
  parser.add_argument('--grid', default='',
                      help='PNG of the labelled picture grid (default: none)')
  parser.add_argument('--grid_images', type=int, default=3,
                      help='photos in the picture grid')
  parser.add_argument('--table', default='',
                      help='markdown file for the tables (default: none)')
  return parser


def main(argv=None):
  args = build_parser().parse_args(argv)
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from scsnet_jax import sharding
  from scsnet_jax import loading
  from scsnet_jax.evaluation import validation
  try:
    bundle = loading.load_generator(args.checkpoint)
  except (OSError, UserError) as error:
    sys.exit(f'error: {error}')
  config = bundle.config
  mesh = sharding.create_mesh()
  referential = bool(config.model.referential)
  sets = {'validation_photos': config.validation}
  if config.data.source == 'folder':
    sets['corpus_heldout'] = _heldout_config(config)
  results = {'checkpoint': os.path.abspath(args.checkpoint),
             'step': int(bundle.step), 'sets': {}}
  tables = []
  for name, section in sets.items():
    data = validation.load_validation_set(section)
    validator = validation.Validator(data, bundle.graphdef, mesh, referential)
    scores, outputs, _ = validator.run(bundle.params)
    table = validation.summary_table(scores)
    results['sets'][name] = {
        'photos': data.names, 'scale': float(section.scale),
        'hr_size': int(section.crop_size), 'scores': scores,
        'targets': check_targets(scores)}
    tables.append(f'### {name} ({len(data.names)} photos, x'
                  f'{float(section.scale):g}, {section.crop_size} px outputs)'
                  f'\n\n{table}\n')
    if name == 'validation_photos':
      if args.grid:
        grid = validation.labelled_grid(data, outputs, args.grid_images)
        with atomic.open_atomic(args.grid) as f:
          Image.fromarray(np.asarray(grid)).save(
              f, format=Image.registered_extensions().get(
                  os.path.splitext(args.grid)[1].lower(), 'PNG'))
  text = '\n'.join(tables)
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
  atomic.write_json(args.json, results, indent=2)
  if args.table:
    atomic.write_text(args.table, text)
  print(text)
  for name, result in results['sets'].items():
    for target, check in result['targets'].items():
      print(f"{'PASS' if check['pass'] else 'MISS'}  {name}: {target}: "
            f"{check['value']} (bound {check['bound']})")


if __name__ == '__main__':
  main()
