"""Metrics vs independent references: scikit-image, numpy, closed forms."""

import numpy as np
import pytest
import scipy.linalg  # pylint: disable=unused-import
from skimage import metrics as skmetrics

from scsnet_jax.evaluation import metrics


def _random_pair(seed=0, shape=(2, 24, 20, 3)):
  rng = np.random.default_rng(seed)
  target = rng.integers(0, 256, shape, dtype=np.uint8)
  noise = rng.integers(-20, 21, shape)
  prediction = np.clip(target.astype(int) + noise, 0, 255).astype(np.uint8)
  return prediction, target


@pytest.mark.parametrize('crop_border', [0, 3])
def test_psnr_matches_skimage(crop_border):
  prediction, target = _random_pair()
  got = metrics.psnr(prediction, target, crop_border=crop_border)
  c = crop_border
  for i in range(len(target)):
    p, t = prediction[i], target[i]
    if c:
      p, t = p[c:-c, c:-c], t[c:-c, c:-c]
    want = skmetrics.peak_signal_noise_ratio(t, p, data_range=255)
    assert abs(got[i] - want) < 1e-4


def test_ssim_matches_skimage_rgb():
  prediction, target = _random_pair(1)
  got = metrics.ssim(prediction, target)
  for i in range(len(target)):
    want = skmetrics.structural_similarity(
        target[i], prediction[i], gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255, channel_axis=-1)
    assert abs(got[i] - want) < 1e-4
  assert np.all(got < 1.0)  # noisy images are not identical


def test_ssim_and_psnr_y_channel_with_crop_match_skimage_on_bt601():
  prediction, target = _random_pair(2, shape=(1, 30, 26, 3))
  crop = 2

  def luma(img):  # BT.601 studio-range luma written out per channel
    img = img[crop:-crop, crop:-crop].astype(np.float64) / 255.0
    return 16.0 + 65.481 * img[..., 0] + 128.553 * img[..., 1] + (
        24.966 * img[..., 2])

  want_ssim = skmetrics.structural_similarity(
      luma(target[0]), luma(prediction[0]), gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False, data_range=255)
  want_psnr = skmetrics.peak_signal_noise_ratio(
      luma(target[0]), luma(prediction[0]), data_range=255)
  got_ssim = metrics.ssim(prediction, target, y_channel=True,
                          crop_border=crop)
  got_psnr = metrics.psnr(prediction, target, y_channel=True,
                          crop_border=crop)
  assert abs(got_ssim[0] - want_ssim) < 1e-4
  assert abs(got_psnr[0] - want_psnr) < 1e-4


def test_identical_images_give_ssim_one_and_infinite_psnr():
  _, target = _random_pair(3)
  assert np.allclose(metrics.ssim(target, target), 1.0)
  assert np.all(np.isinf(metrics.psnr(target, target)))


def test_metrics_reject_float_images_and_shape_mismatch():
  _, target = _random_pair(4)
  with pytest.raises(ValueError, match='uint8'):
    metrics.psnr(target / 255.0, target)
  with pytest.raises(ValueError, match='same shape'):
    metrics.ssim(target[:, :-1], target)


def test_streaming_feature_statistics_equal_one_shot():
  rng = np.random.default_rng(6)
  features = rng.normal(size=(37, 5)) @ rng.normal(size=(5, 5)) + 3.0
  first, second = metrics.FeatureStatistics(5), metrics.FeatureStatistics(5)
  for chunk in np.array_split(features[:20], 3):
    first.update(chunk)
  second.update(features[20:])  # a second "process"
  mean, cov = first.merge(second).mean_and_covariance()
  np.testing.assert_allclose(mean, features.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(cov, np.cov(features, rowvar=False), rtol=1e-10,
                             atol=1e-12)
  reduced = metrics.all_reduce_statistics(first)  # one process: identity
  assert reduced.count == 20
  np.testing.assert_array_equal(reduced.sum_outer, first.sum_outer)


def test_running_mean_merges():
  a, b = metrics.RunningMean(), metrics.RunningMean()
  a.update([1.0, 2.0])
  b.update(np.array([6.0]))
  assert a.merge(b).result() == 3.0
  assert metrics.RunningMean().result() is None


def test_frechet_distance_closed_form_for_commuting_covariances():
  rng = np.random.default_rng(7)
  dim = 6
  rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
  eig1, eig2 = rng.uniform(0.5, 3, dim), rng.uniform(0.5, 3, dim)
  sigma1 = rotation @ np.diag(eig1) @ rotation.T  # same eigenvectors:
  sigma2 = rotation @ np.diag(eig2) @ rotation.T  # they commute
  mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
  want = np.sum((mu1 - mu2)**2) + np.sum((np.sqrt(eig1) - np.sqrt(eig2))**2)
  got = metrics.frechet_distance(mu1, sigma1, mu2, sigma2)
  assert abs(got - want) < 1e-8
  assert abs(metrics.frechet_distance(mu1, sigma1, mu1, sigma1)) < 1e-8


@pytest.mark.filterwarnings('ignore::scipy.linalg.LinAlgWarning')
def test_frechet_distance_with_singular_covariances():
  # Rank-deficient sigma (sqrtm of a singular product): FD = ||mu1 - mu2||^2.
  sigma = np.diag([1.0, 0.0])
  got = metrics.frechet_distance(np.zeros(2), sigma, np.ones(2), sigma)
  assert abs(got - 2.0) < 1e-3


def test_fid_from_statistics_univariate_closed_form():
  rng = np.random.default_rng(8)
  a = rng.normal(1.0, 2.0, size=(400, 1))
  b = rng.normal(-1.0, 0.5, size=(300, 1))
  sa, sb = metrics.FeatureStatistics(1), metrics.FeatureStatistics(1)
  sa.update(a)
  sb.update(b)
  va, vb = a.var(ddof=1), b.var(ddof=1)
  want = (a.mean() - b.mean())**2 + va + vb - 2 * np.sqrt(va * vb)
  assert abs(metrics.fid_from_statistics(sa, sb) - want) < 1e-9


@pytest.mark.parametrize('y_channel,crop_border', [(False, 0), (True, 2)])
def test_device_psnr_ssim_match_numpy_and_skimage(y_channel, crop_border):
  prediction, target = _random_pair(9, shape=(2, 40, 36, 3))
  # A smooth, bright pair too: the case where float32 variances cancel most.
  ramp = np.linspace(200, 250, 40 * 36 * 3).reshape(1, 40, 36, 3)
  smooth_target = ramp.astype(np.uint8)
  smooth_prediction = (ramp + 3 * np.sin(ramp)).astype(np.uint8)
  prediction = np.concatenate([prediction, smooth_prediction])
  target = np.concatenate([target, smooth_target])
  kwargs = dict(y_channel=y_channel, crop_border=crop_border)
  got_psnr, got_ssim = metrics.psnr_ssim_jax(prediction, target, **kwargs)
  np.testing.assert_allclose(got_psnr, metrics.psnr(prediction, target,
                                                    **kwargs), atol=1e-4)
  np.testing.assert_allclose(got_ssim, metrics.ssim(prediction, target,
                                                    **kwargs), atol=1e-4)
  if not y_channel:
    want = skmetrics.structural_similarity(
        target[-1], prediction[-1], gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255, channel_axis=-1)
    assert abs(float(got_ssim[-1]) - want) < 1e-4
