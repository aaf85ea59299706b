"""tools/evaluate_photos.py: the learning targets' pass/fail from scores
(the whole tool on a model: tests/evaluation/validation_test.py)."""

from scsnet_jax.tools import evaluate_photos


def _scores(**changes):
  scores = {'automatic/model/l_psnr': 30.5,
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
      **{'automatic/model/l_psnr': 30.4, 'automatic/model/colorfulness': 24.9,
         'automatic/model/ciede2000': 8.6}))
  passed = {name: check['pass'] for name, check in checks.items()}
  assert passed == {'luminance: L-PSNR >= bicubic + 1.5 dB': False,
                    'automatic: CIEDE2000 <= 0.95 x gray': False,
                    'automatic: colourfulness >= 25': False}
  assert checks['luminance: L-PSNR >= bicubic + 1.5 dB']['bound'] == 30.5
  assert checks['automatic: CIEDE2000 <= 0.95 x gray']['bound'] == 8.55


def test_referential_targets_compare_with_automatic_and_transfers():
  other = {'other_view_reference/global_transfer/ciede2000': 7.5,
           'other_view_reference/exemplar_transfer/ciede2000': 7.2}
  checks = evaluate_photos.check_targets(_scores(
      **{'self_reference/model/ciede2000': 4.0,
         'other_view_reference/model/ciede2000': 7.1}, **other))
  assert checks['aligned reference: CIEDE2000 <= 0.5 x automatic']['pass']
  name = ('other view: CIEDE2000 < global transfer, exemplar transfer and '
          'automatic')
  assert checks[name]['pass'] and checks[name]['bound'] == 7.2
  checks = evaluate_photos.check_targets(_scores(
      **{'self_reference/model/ciede2000': 4.1,
         'other_view_reference/model/ciede2000': 7.2}, **other))
  assert not checks['aligned reference: CIEDE2000 <= 0.5 x automatic']['pass']
  assert not checks[name]['pass']
