"""Image-quality metrics with explicit, published conventions (numpy, streaming).

Conventions (see docs/evaluation.md):
- PSNR/SSIM follow BasicSR: 8-bit sRGB images as float64 in [0, 255]; SSIM
  uses an 11x11 Gaussian window (sigma 1.5), C1 = (0.01*255)^2,
  C2 = (0.03*255)^2, population (not sample) statistics, the mean over the
  region where the window fits, averaged over channels. Both are computed per
  image and averaged over images. Defaults: all three RGB channels, no border
  crop; ``y_channel=True`` uses BT.601 luma (16-235, not rounded) and
  ``crop_border=k`` drops k pixels on each side first.
- Colourfulness is Hasler & Suesstrunk (2003) M3 on sRGB 0-255.
- FID statistics are float64 sums of x and x x^T, so they can be accumulated
  batch by batch and combined across processes by summing; the Frechet
  distance matches pytorch-fid's ``calculate_frechet_distance``.
"""

from __future__ import annotations

import dataclasses

from jax.experimental import multihost_utils
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.ndimage

SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
DATA_RANGE = 255.0
SSIM_C1 = (0.01 * DATA_RANGE)**2
SSIM_C2 = (0.03 * DATA_RANGE)**2
# BT.601 luma of sRGB in [0, 1], scaled to [16, 235] (BasicSR's rgb2ycbcr).
BT601_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
BT601_Y_OFFSET = 16.0


def _as_float_images(images, name):
  """uint8 (B,H,W,3) or (H,W,3) -> float64 (B,H,W,3)."""
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise ValueError(f'{name} must be uint8 sRGB in [0, 255], got dtype '
                     f'{images.dtype}; convert with to_uint8(rgb_01) first.')
  if images.ndim == 3:
    images = images[None]
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'{name} must have shape (B, H, W, 3) or (H, W, 3), got '
                     f'{images.shape}.')
  return images.astype(np.float64)


def to_uint8(rgb01):
  """sRGB in [0, 1] -> uint8, rounded to nearest (half to even): numpy in
  float64, or a jax array (on device, traced too) in its own dtype."""
  if isinstance(rgb01, jax.Array):
    xp = jnp
  else:
    xp, rgb01 = np, np.asarray(rgb01, np.float64)
  return xp.round(xp.clip(rgb01, 0.0, 1.0) * 255.0).astype(xp.uint8)


def rgb_to_y(rgb255):
  """float (..., 3) sRGB in [0, 255] -> (..., 1) BT.601 Y in [16, 235]."""
  y = rgb255 @ BT601_Y_WEIGHTS / 255.0 + BT601_Y_OFFSET
  return y[..., None]


def _prepare_pair(prediction, target, y_channel, crop_border):
  pred = _as_float_images(prediction, 'prediction')
  true = _as_float_images(target, 'target')
  if pred.shape != true.shape:
    raise ValueError(f'prediction {pred.shape} and target {true.shape} must '
                     'have the same shape.')
  if crop_border:
    if 2 * crop_border >= min(pred.shape[1:3]):
      raise ValueError(f'crop_border={crop_border} leaves nothing of a '
                       f'{pred.shape[1]}x{pred.shape[2]} image.')
    pred = pred[:, crop_border:-crop_border, crop_border:-crop_border]
    true = true[:, crop_border:-crop_border, crop_border:-crop_border]
  if y_channel:
    pred, true = rgb_to_y(pred), rgb_to_y(true)
  return pred, true


def psnr(prediction, target, *, y_channel=False, crop_border=0):
  """Per-image PSNR in dB of uint8 images (B,H,W,3) -> (B,) float64.

  Identical images give ``inf`` (as BasicSR).
  """
  pred, true = _prepare_pair(prediction, target, y_channel, crop_border)
  mse = np.mean((pred - true)**2, axis=(1, 2, 3))
  with np.errstate(divide='ignore'):
    return 10.0 * np.log10(DATA_RANGE**2 / mse)


def _gaussian_window_1d():
  radius = SSIM_WINDOW_SIZE // 2
  offsets = np.arange(-radius, radius + 1, dtype=np.float64)
  window = np.exp(-offsets**2 / (2 * SSIM_SIGMA**2))
  return window / window.sum()


def _filter_valid(image, window):
  """Separable 'valid' Gaussian filter of a (H, W) float64 map."""
  filtered = scipy.ndimage.correlate1d(image, window, axis=0, mode='reflect')
  filtered = scipy.ndimage.correlate1d(filtered, window, axis=1,
                                       mode='reflect')
  radius = len(window) // 2
  return filtered[radius:-radius, radius:-radius]


def _ssim_single_channel(x, y, window):
  mu_x, mu_y = _filter_valid(x, window), _filter_valid(y, window)
  var_x = _filter_valid(x * x, window) - mu_x**2
  var_y = _filter_valid(y * y, window) - mu_y**2
  cov_xy = _filter_valid(x * y, window) - mu_x * mu_y
  ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov_xy + SSIM_C2) /
              ((mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)))
  return ssim_map.mean()


def ssim(prediction, target, *, y_channel=False, crop_border=0):
  """Per-image SSIM of uint8 images (B,H,W,3) -> (B,) float64, BasicSR style."""
  pred, true = _prepare_pair(prediction, target, y_channel, crop_border)
  if min(pred.shape[1:3]) < SSIM_WINDOW_SIZE:
    raise ValueError(f'SSIM needs images of at least {SSIM_WINDOW_SIZE}x'
                     f'{SSIM_WINDOW_SIZE} pixels after cropping, got '
                     f'{pred.shape[1]}x{pred.shape[2]}.')
  window = _gaussian_window_1d()
  return np.array([
      np.mean([_ssim_single_channel(p[..., c], t[..., c], window)
               for c in range(p.shape[-1])]) for p, t in zip(pred, true)
  ])


def _jax_filter_valid(images, window):
  """Separable 'valid' filter over H, W of (B, H, W, C) float32 (jnp)."""
  taps = len(window)
  height, width = images.shape[1] - taps + 1, images.shape[2] - taps + 1
  rows = sum(float(w) * images[:, k:k + height] for k, w in enumerate(window))
  return sum(float(w) * rows[:, :, k:k + width] for k, w in enumerate(window))


def psnr_ssim_jax(prediction, target, *, y_channel=False, crop_border=0):
  """PSNR and SSIM (B,) of (B, H, W, 3) uint8-valued images, jittable.

  The device-side twin of ``psnr``/``ssim`` (same conventions) for long
  evaluations. float32: variances are taken about the image mean so that the
  E[x^2] - E[x]^2 cancellation stays far below the 1e-4 SSIM tolerance.
  """
  x = jnp.asarray(prediction, jnp.float32)
  y = jnp.asarray(target, jnp.float32)
  if crop_border:
    x = x[:, crop_border:-crop_border, crop_border:-crop_border]
    y = y[:, crop_border:-crop_border, crop_border:-crop_border]
  if y_channel:
    weights = jnp.asarray(BT601_Y_WEIGHTS / 255.0, jnp.float32)
    x = (x @ weights + BT601_Y_OFFSET)[..., None]
    y = (y @ weights + BT601_Y_OFFSET)[..., None]
  mse = jnp.mean((x - y)**2, axis=(1, 2, 3))
  psnr_db = 10.0 * jnp.log10(DATA_RANGE**2 / mse)
  window = _gaussian_window_1d()
  centre = 0.5 * (x.mean(axis=(1, 2), keepdims=True) +
                  y.mean(axis=(1, 2), keepdims=True))
  xc, yc = x - centre, y - centre
  mu_xc, mu_yc = _jax_filter_valid(xc, window), _jax_filter_valid(yc, window)
  var_x = _jax_filter_valid(xc * xc, window) - mu_xc**2
  var_y = _jax_filter_valid(yc * yc, window) - mu_yc**2
  cov_xy = _jax_filter_valid(xc * yc, window) - mu_xc * mu_yc
  mu_x, mu_y = mu_xc + centre, mu_yc + centre
  ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov_xy + SSIM_C2) /
              ((mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)))
  return psnr_db, ssim_map.mean(axis=(1, 2, 3))


@dataclasses.dataclass
class RunningMean:
  """Streaming mean of per-image scalars; combine processes by summing."""
  total: float = 0.0
  count: int = 0

  def update(self, values):
    values = np.asarray(values, np.float64).reshape(-1)
    self.total += float(values.sum())
    self.count += values.size

  def merge(self, other: 'RunningMean') -> 'RunningMean':
    return RunningMean(self.total + other.total, self.count + other.count)

  def result(self):
    """The mean, or None when nothing was seen."""
    return self.total / self.count if self.count else None


class FeatureStatistics:
  """Float64 streaming sums for the mean and covariance of (N, D) features.

  Holds count, sum(x) (D,) and sum(x x^T) (D, D); batches and processes are
  combined by adding these sums, which is exact up to float64 rounding.
  """

  def __init__(self, dim: int):
    self.dim = dim
    self.count = 0
    self.sum = np.zeros((dim,), np.float64)
    self.sum_outer = np.zeros((dim, dim), np.float64)

  def update(self, features):
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[1] != self.dim:
      raise ValueError(f'features must be (N, {self.dim}), got '
                       f'{features.shape}.')
    self.count += features.shape[0]
    self.sum += features.sum(axis=0)
    self.sum_outer += features.T @ features

  def merge(self, other: 'FeatureStatistics') -> 'FeatureStatistics':
    merged = FeatureStatistics(self.dim)
    merged.count = self.count + other.count
    merged.sum = self.sum + other.sum
    merged.sum_outer = self.sum_outer + other.sum_outer
    return merged

  def mean_and_covariance(self):
    """-> (mu (D,), sigma (D, D)), sigma unbiased (as np.cov, ddof=1)."""
    if self.count < 2:
      raise ValueError('FID statistics need at least 2 images, got '
                       f'{self.count}.')
    mean = self.sum / self.count
    covariance = (self.sum_outer - self.count * np.outer(mean, mean)) / (
        self.count - 1)
    return mean, covariance


def sum_across_processes(array):
  """Sums a float64 numpy array over JAX processes, without float32 loss.

  The float64 bits travel as uint32 pairs (x64 is usually off in JAX), and
  every process adds the gathered copies in float64.
  """
  array = np.ascontiguousarray(array, np.float64)
  if jax.process_count() == 1:
    return array
  bits = array.view(np.uint32)
  gathered = np.asarray(multihost_utils.process_allgather(bits))
  gathered = np.ascontiguousarray(gathered, np.uint32).view(np.float64)
  return gathered.reshape((-1,) + array.shape).sum(axis=0)


def all_reduce_statistics(stats: FeatureStatistics) -> FeatureStatistics:
  """The sums of ``stats`` over all processes (identity in one process)."""
  reduced = FeatureStatistics(stats.dim)
  reduced.count = int(sum_across_processes(np.array([stats.count], float))[0])
  reduced.sum = sum_across_processes(stats.sum)
  reduced.sum_outer = sum_across_processes(stats.sum_outer)
  return reduced


def all_reduce_mean(mean: RunningMean) -> RunningMean:
  total, count = sum_across_processes(np.array([mean.total, mean.count]))
  return RunningMean(float(total), int(count))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
  """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)), as pytorch-fid computes it.

  When sqrtm is not finite, eps is added to both diagonals; an imaginary
  part whose diagonal exceeds 1e-3 is an error, smaller ones are dropped.
  """
  mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
  sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError('the two sets of statistics have different dimensions: '
                     f'{mu1.shape} vs {mu2.shape}.')
  diff = mu1 - mu2
  covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
  if not np.isfinite(covmean).all():
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      largest = np.max(np.abs(covmean.imag))
      raise ValueError(f'Imaginary component {largest} in sqrtm(S1 S2).')
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) -
               2 * np.trace(covmean))


def fid_from_statistics(stats_a: FeatureStatistics,
                        stats_b: FeatureStatistics) -> float:
  mu_a, sigma_a = stats_a.mean_and_covariance()
  mu_b, sigma_b = stats_b.mean_and_covariance()
  return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
