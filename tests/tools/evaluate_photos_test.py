"""tools/evaluate_photos.py: the learning targets' pass/fail from scores
(the whole tool on a model: tests/evaluation/validation_test.py)."""

from scsnet_jax.tools import evaluate_photos


def _scores(**changes):
  scores = {'automatic/model/l_psnr': 30.0,
            'automatic/bicubic_gray/l_psnr': 29.0,
            'automatic/model/ciede2000': 8.0,
            'automatic/bicubic_gray/ciede2000': 9.0,
            'automatic/model/colorfulness': 25.0}
  scores.update(changes)
  return scores


def test_targets_pass_and_fail_at_their_bounds():
  checks = evaluate_photos.check_targets(_scores())
  assert all(check['pass'] for check in checks.values()), checks
  assert len(checks) == 3        # automatic only: no referential scores
  checks = evaluate_photos.check_targets(_scores(
      **{'automatic/model/l_psnr': 29.4, 'automatic/model/colorfulness': 20.0,
         'automatic/model/ciede2000': 9.0}))
  passed = {name: check['pass'] for name, check in checks.items()}
  assert passed == {'luminance: L-PSNR >= bicubic + 0.5 dB': False,
                    'automatic: CIEDE2000 <= gray baseline': True,
                    'automatic: colourfulness >= 20': True}
  assert checks['luminance: L-PSNR >= bicubic + 0.5 dB']['bound'] == 29.5


def test_referential_targets_compare_with_automatic_and_transfer():
  checks = evaluate_photos.check_targets(_scores(
      **{'self_reference/model/ciede2000': 4.8,
         'mirrored_reference/model/ciede2000': 7.0,
         'mirrored_reference/global_transfer/ciede2000': 7.0}))
  assert checks['self-reference: CIEDE2000 <= 0.6 x automatic']['pass']
  assert not checks['mirrored reference: CIEDE2000 < global colour '
                    'transfer']['pass']
