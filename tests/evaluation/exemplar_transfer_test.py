"""exemplar_transfer: Welsh et al. 2002 against brute-force re-derivations."""

import numpy as np
import pytest
import scipy.ndimage
import skimage.color
import skimage.data
import skimage.transform

from scsnet_jax import color
from scsnet_jax.evaluation import exemplar_transfer as welsh


def test_local_std_matches_a_brute_force_window():
  image = np.random.default_rng(0).random((9, 7)) * 100
  got = welsh.local_std(image, 3)
  # scipy's 'mirror' reflects about the edge pixel: numpy's 'reflect'.
  padded = np.pad(image, 1, mode='reflect')
  expected = np.array([[padded[r:r + 3, c:c + 3].std() for c in range(7)]
                       for r in range(9)])
  np.testing.assert_allclose(got, expected, atol=1e-9)


def test_remapped_reference_has_the_target_statistics():
  rng = np.random.default_rng(1)
  reference, target = rng.random((8, 8)) * 40 + 50, rng.random((5, 6)) * 10
  remapped = welsh.remap_luminance(reference, target)
  assert remapped.mean() == pytest.approx(target.mean())
  assert remapped.std() == pytest.approx(target.std())


def test_one_sample_per_cell():
  rows, cols = welsh.jittered_samples(30, 45, 3, np.random.default_rng(0))
  assert len(rows) == 9
  cells = {(r // 10, c // 15) for r, c in zip(rows, cols)}
  assert cells == {(i, j) for i in range(3) for j in range(3)}


def test_matches_brute_force_nearest_sample():
  """Every output a, b is the chroma of the L1-nearest sample in
  (0.5 L, 0.5 std) after remapping, found here by exhaustive search."""
  rng = np.random.default_rng(2)
  reference = np.stack([rng.random((20, 24)) * 60 + 20,
                        rng.random((20, 24)) * 80 - 40,
                        rng.random((20, 24)) * 80 - 40], -1)
  target = scipy.ndimage.gaussian_filter(rng.random((16, 18)) * 80, 1)
  out = welsh.transfer_lab(target, reference, grid=5, window=3, seed=7)
  np.testing.assert_array_equal(out[..., 0], target)
  rows, cols = welsh.jittered_samples(20, 24, 5, np.random.default_rng(7))
  ref_l = welsh.remap_luminance(reference[..., 0], target)
  samples = np.stack([ref_l[rows, cols],
                      welsh.local_std(ref_l, 3)[rows, cols]], -1) * 0.5
  pixels = np.stack([target, welsh.local_std(target, 3)], -1) * 0.5
  distance = np.abs(pixels[:, :, None, :] - samples[None, None]).sum(-1)
  nearest = distance.argmin(-1)
  np.testing.assert_allclose(out[..., 1:],
                             reference[rows, cols, 1:][nearest])


def test_content_decides_the_colour_not_the_position():
  """A reference whose dark flat half is blue and bright textured half is
  yellow colours a target laid out the other way round by content."""
  rng = np.random.default_rng(3)
  reference = np.zeros((32, 32, 3))
  reference[:, :16] = (30, 0, -50)                       # dark, flat, blue
  reference[:, 16:, 0] = 75 + rng.normal(0, 8, (32, 16))  # bright, textured
  reference[:, 16:, 1:] = (0, 70)                        # yellow
  target = np.zeros((24, 24))
  target[:, :12] = 75 + rng.normal(0, 8, (24, 12))       # bright left
  target[:, 12:] = 30                                    # dark right
  out = welsh.transfer_lab(target, reference, window=3)
  assert np.median(out[:, 3:9, 2]) == pytest.approx(70)
  assert np.median(out[:, 15:21, 2]) == pytest.approx(-50)


def test_batch_form_on_a_photo_beats_gray_with_its_own_colours():
  """On a real photo, transfer from its own colours (mirrored) is closer to
  the truth than gray (CIEDE2000 with scikit-image)."""
  rgb = skimage.transform.resize(skimage.data.chelsea(), (64, 96),
                                 anti_aliasing=True)
  nlab = color.rgb01_to_nlab(rgb, xp=np).astype(np.float32)
  out = welsh.exemplar_transfer(nlab[None, ..., :1],
                                nlab[None, :, ::-1][:, ::2, ::2])
  assert out.shape == (1, 64, 96, 3) and 0 <= out.min() <= out.max() <= 1
  truth = skimage.color.rgb2lab(rgb)
  gray = truth.copy()
  gray[..., 1:] = 0
  transferred = skimage.color.deltaE_ciede2000(
      skimage.color.rgb2lab(out[0]), truth).mean()
  assert transferred < 0.8 * skimage.color.deltaE_ciede2000(gray,
                                                            truth).mean()
