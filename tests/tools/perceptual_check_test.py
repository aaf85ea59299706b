"""perceptual_check's measures on photos built so the answer is known."""

import numpy as np
import pytest

from scsnet_jax.pretrained import vgg
from scsnet_jax.tools import perceptual_check


@pytest.fixture(scope='module')
def random_vgg():
  return vgg.init_vgg16_params(0)


def _twin_photos():
  """Three 96x192 photos whose left and right halves are the same image,
  each photo a different random texture."""
  rng = np.random.default_rng(0)
  halves = [rng.random((96, 96, 3)).astype(np.float32) for _ in range(3)]
  return [np.concatenate([h, h], axis=1) for h in halves]


def test_crop_pair_takes_the_left_and_right_squares():
  photo = np.arange(96 * 192 * 3, dtype=np.float32).reshape(96, 192, 3)
  left, right = perceptual_check._crop_pair(photo)
  np.testing.assert_allclose(left, photo[:, :96], rtol=1e-6)
  np.testing.assert_allclose(right, photo[:, 96:], rtol=1e-6)


def test_identical_halves_always_find_their_partner(random_vgg):
  """Each crop's twin has identical features, so retrieval is exactly 1
  (gray and colour) whatever the weights: checks the pairing, not VGG."""
  photos = _twin_photos()
  assert perceptual_check.crop_retrieval(random_vgg, photos, gray=True) == 1.0
  assert perceptual_check.crop_retrieval(random_vgg, photos,
                                         gray=False) == 1.0


def test_distortions_get_worse_with_strength_by_psnr(random_vgg):
  """PSNR falls with every kind's strength (closed form for the distortions
  themselves); the table has one row per (kind, strength)."""
  rows = perceptual_check.distortion_table(random_vgg, _twin_photos()[:1])
  assert len(rows) == sum(len(s) for s in perceptual_check.DISTORTIONS.values())
  for kind in perceptual_check.DISTORTIONS:
    psnr = [r['psnr'] for r in rows if r['kind'] == kind]
    assert all(b < a for a, b in zip(psnr, psnr[1:])), (kind, psnr)
    assert all(r['perceptual'] > 0 for r in rows if r['kind'] == kind)


def test_noise_is_seeded_and_clipped():
  rgb = np.full((8, 8, 3), 0.99, np.float32)
  a = perceptual_check.distort(rgb, 'noise', 0.5, seed=1)
  np.testing.assert_array_equal(a, perceptual_check.distort(rgb, 'noise', 0.5,
                                                            seed=1))
  assert a.max() <= 1.0 and a.min() >= 0.0 and not np.allclose(a, rgb)


def test_monotone_within_kinds():
  rows = [{'kind': k, 'perceptual': float(i)}
          for k in perceptual_check.DISTORTIONS for i in range(3)]
  assert perceptual_check.monotone_within_kinds(rows)
  rows[1]['perceptual'] = -1.0
  assert not perceptual_check.monotone_within_kinds(rows)


def test_unreadable_weights_are_one_line_and_exit_1(tmp_path, capsys):
  missing = str(tmp_path / 'absent.npz')
  assert perceptual_check.main(['--weights', missing]) == 1
  err = capsys.readouterr().err.strip()
  assert err.startswith('perceptual_check: error:') and '\n' not in err
