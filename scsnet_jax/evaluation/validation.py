"""Validation during training: the same held-out photos every time, the
model (EMA weights) against the trivial baselines, per mode.

The photos (``config.validation``): scikit-image's colour photographs by
default (none is in the photo corpus), or the first files of a folder
source's eval split; each is resized so its shorter side is ``crop_size``,
centre-cropped to a square, and bicubically reduced by ``scale``. Modes:

  automatic             gray input only           baseline: bicubic_gray
  self_reference        + the photo's own LR colours         color_copy
  mirrored_reference    + the same, flipped L-R              global_transfer,
                                                              exemplar_transfer
  other_view_reference  + another framing of the scene:      global_transfer,
                          the photo's top-left square of     exemplar_transfer
                          0.6x its short side, at LR size

``global_transfer`` (bicubic L + the reference's mean a, b) is what a model
gets by reading the reference's colour statistics only; beating it with the
mirrored reference shows that colours are matched by content, not position.
``exemplar_transfer`` is the classical content-matching transfer (Welsh et
al. 2002, ``evaluation.exemplar_transfer``) on the bicubic L. The other view
differs in position and scale (x1.67) and holds only part of the target's
content, as a second photo of the same scene would.

Metrics per image, averaged: ``l_psnr`` (CIE L, peak 100, dB), ``rgb_psnr``
(8-bit sRGB, dB), ``ciede2000`` (mean CIEDE2000 over pixels), and
``colorfulness`` (Hasler-Suesstrunk M3, 0-255 sRGB). Used by the trainer
(``train.eval_every_steps``) and by ``launch/photos_cpu.sh`` for the final
table; rendering is one jit per mode over a batch sharded on the mesh.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from PIL import Image, ImageDraw
from skimage import color as skcolor

from scsnet_jax import atomic, color, image_io, sharding
from scsnet_jax.errors import UserError
from scsnet_jax import workdir as workdir_lib
from scsnet_jax.config_lib import VALIDATION_SOURCES
from scsnet_jax.data import degradations
from scsnet_jax.data import sources as data_sources
from scsnet_jax.evaluation import baselines, common, exemplar_transfer, metrics

# scikit-image's natural colour photographs (bundled in its wheel).
SKIMAGE_PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket',
                  'motorcycle_left', 'motorcycle_right')
MODES = ('automatic', 'self_reference', 'mirrored_reference',
         'other_view_reference')
BASELINES_OF_MODE = {
    'automatic': ('bicubic_gray',),
    'self_reference': ('color_copy',),
    'mirrored_reference': ('global_transfer', 'exemplar_transfer'),
    'other_view_reference': ('global_transfer', 'exemplar_transfer')}
# The other view: the photo's top-left square of this share of its short
# side (validation's module docstring).
OTHER_VIEW_FRACTION = 0.6
METRICS = ('l_psnr', 'rgb_psnr', 'ciede2000', 'colorfulness')


@dataclasses.dataclass
class ValidationSet:
  """Fixed held-out photos: LR gray (N,h,w,1), LR colour (N,h,w,3) and HR
  target (N,H,W,3), all normalised LAB float32; names (N,)."""
  names: list[str]
  gray: np.ndarray
  lr_color: np.ndarray
  target: np.ndarray
  other_view: np.ndarray   # (N, h, w, 3) LR colour of another framing

  def reference(self, mode: str) -> Optional[np.ndarray]:
    if mode == 'automatic':
      return None
    if mode == 'self_reference':
      return self.lr_color
    if mode == 'mirrored_reference':
      return np.ascontiguousarray(self.lr_color[:, :, ::-1])
    if mode == 'other_view_reference':
      return self.other_view
    raise ValueError(f'unknown validation mode {mode!r}')


def _square_view(pixels: np.ndarray, side: int) -> np.ndarray:
  """uint8 (H, W, 3) -> float32 (side, side, 3): shorter side resized to
  ``side`` (bicubic, antialiased), then the centre square."""
  image = image_io.to_float01(pixels)
  h, w = image.shape[:2]
  factor = side / min(h, w)
  size = (max(side, round(h * factor)), max(side, round(w * factor)))
  resized = degradations.resize_bicubic(image, size)
  return np.clip(degradations.center_crop(resized, side), 0.0, 1.0)


def other_view(pixels: np.ndarray, side: int) -> np.ndarray:
  """uint8 (H, W, 3) -> float32 (side, side, 3): the top-left square of
  ``OTHER_VIEW_FRACTION`` x min(H, W), resized (bicubic, antialiased)."""
  image = image_io.to_float01(pixels)
  crop = max(1, round(OTHER_VIEW_FRACTION * min(image.shape[:2])))
  resized = degradations.resize_bicubic(image[:crop, :crop], (side, side))
  return np.clip(resized, 0.0, 1.0)


def _photo_source(validation: ml_collections.ConfigDict):
  if validation.source == 'demo':
    return data_sources.DemoSource('all', names=SKIMAGE_PHOTOS)
  if validation.source == 'folder':
    # The eval split of the folder(s): all files with eval_fraction 1.
    return data_sources.folder_source(validation.folder_path, 'eval',
                                      validation.get('eval_fraction', 1.0))
  raise UserError(f'config.validation.source must be one of {VALIDATION_SOURCES}, '
                  f'got {validation.source!r}')


def load_validation_set(validation: ml_collections.ConfigDict
                        ) -> ValidationSet:
  """The photos ``config.validation`` names, prepared as described above."""
  source = _photo_source(validation)
  count = min(int(validation.num_images), len(source))
  side = int(validation.crop_size)
  lr_side = degradations.lr_size_for_scale(side, float(validation.scale))
  names, gray, lr_color, target, others = [], [], [], [], []
  for index in range(count):
    pixels = source.load(index)
    hr = _square_view(pixels, side)
    lr = np.clip(degradations.resize_bicubic(hr, (lr_side, lr_side)), 0, 1)
    lr_nlab = color.rgb01_to_nlab(lr, xp=np).astype(np.float32)
    names.append(source.describe(index))
    gray.append(lr_nlab[..., :1])
    lr_color.append(lr_nlab)
    target.append(color.rgb01_to_nlab(hr, xp=np).astype(np.float32))
    others.append(color.rgb01_to_nlab(other_view(pixels, lr_side),
                                      xp=np).astype(np.float32))
  return ValidationSet(names, np.stack(gray), np.stack(lr_color),
                       np.stack(target), np.stack(others))


# ------------------------------------------------------------- baselines ---
def global_transfer(gray, reference, out_size):
  """Bicubic L of ``gray`` plus the reference's mean a, b everywhere -> sRGB."""
  lightness = baselines.upsampled_luminance(gray, out_size)
  mean_ab = jnp.mean(reference[..., 1:], axis=(1, 2), keepdims=True)
  chroma = jnp.broadcast_to(mean_ab, lightness.shape[:-1] + (2,))
  return color.nlab_to_rgb01(jnp.concatenate([lightness, chroma], -1), jnp)


def baseline_rgb(method: str, gray, reference, out_size) -> np.ndarray:
  """sRGB [0, 1] (N, H, W, 3) of one baseline (``BASELINES_OF_MODE``)."""
  if method == 'bicubic_gray':
    out = baselines.bicubic_gray(gray, out_size)
  elif method == 'color_copy':
    out = baselines.color_copy(gray, reference, out_size)
  elif method == 'global_transfer':
    out = global_transfer(gray, reference, out_size)
  elif method == 'exemplar_transfer':
    out = exemplar_transfer.exemplar_transfer(
        np.asarray(baselines.upsampled_luminance(gray, out_size)),
        np.asarray(reference))
  else:
    raise ValueError(f'unknown baseline {method!r}')
  return np.clip(np.asarray(out), 0.0, 1.0)


# --------------------------------------------------------------- metrics ---
def image_metrics(rgb01: np.ndarray, target_rgb01: np.ndarray
                  ) -> dict[str, float]:
  """Mean of the per-image metrics of (N, H, W, 3) sRGB [0, 1] images."""
  pred8 = metrics.to_uint8(rgb01)
  true8 = metrics.to_uint8(target_rgb01)
  pred_lab = skcolor.rgb2lab(pred8)
  true_lab = skcolor.rgb2lab(true8)
  l_mse = np.mean((pred_lab[..., 0] - true_lab[..., 0])**2, axis=(1, 2))
  l_psnr = 10 * np.log10(100.0**2 / np.maximum(l_mse, 1e-10))
  delta_e = skcolor.deltaE_ciede2000(pred_lab, true_lab).mean(axis=(1, 2))
  return {
      'l_psnr': float(np.mean(l_psnr)),
      'rgb_psnr': float(np.mean(metrics.psnr(pred8, true8))),
      'ciede2000': float(np.mean(delta_e)),
      'colorfulness': float(np.mean(color.colorfulness(pred8))),
  }


# ------------------------------------------------------------- rendering ---
def make_render_fn(graphdef, mesh):
  """jit of ``common.render_nlab`` (params, gray, reference|None) -> (N, H,
  W, 3) nlab float32, the batch sharded over ``mesh``; ``out_size`` static."""
  def render(params, gray, reference, out_size):
    return common.render_nlab(graphdef, params, gray, reference, out_size)
  return jax.jit(render, static_argnums=(3,),
                 out_shardings=sharding.replicated(mesh))


class Validator:
  """Renders and scores the validation set; one instance per training run.

  A ``common.Evaluator``: ``run(params)`` -> ``Evaluation`` with scores
  {'<mode>/<method>/<metric>': value} and outputs {mode: nlab}. The
  baselines are computed once.
  """
  prefix = 'val'

  def __init__(self, data: ValidationSet, graphdef, mesh, referential: bool):
    self.data = data
    self.mesh = mesh
    self.modes = MODES if referential else MODES[:1]
    self.out_size = tuple(data.target.shape[1:3])
    self._render = make_render_fn(graphdef, mesh)
    self.target_rgb = np.clip(color.nlab_to_rgb01(data.target, np), 0, 1)
    self.baseline_scores = {}   # {'<mode>/<method>': metrics}
    for mode in self.modes:
      reference = data.reference(mode)
      for method in BASELINES_OF_MODE[mode]:
        rgb = baseline_rgb(method, jnp.asarray(data.gray),
                           None if reference is None
                           else jnp.asarray(reference), self.out_size)
        self.baseline_scores[f'{mode}/{method}'] = image_metrics(
            rgb, self.target_rgb)

  def _global(self, array: np.ndarray):
    """Every process holds the whole set: each device takes its slice."""
    padded = common.pad_batch(array, self.mesh.devices.size)
    return jax.make_array_from_callback(
        padded.shape, sharding.batch_sharded(self.mesh),
        lambda index: padded[index])

  def render(self, params, mode: str) -> np.ndarray:
    """(N, H, W, 3) normalised LAB of the model in ``mode``."""
    reference = self.data.reference(mode)
    out = self._render(params, self._global(self.data.gray),
                       None if reference is None else self._global(reference),
                       self.out_size)
    return np.asarray(sharding.to_host(out))[:len(self.data.names)]

  def run(self, params) -> common.Evaluation:
    scores, outputs = {}, {}
    for mode in self.modes:
      nlab = self.render(params, mode)
      outputs[mode] = nlab
      rgb = np.clip(color.nlab_to_rgb01(nlab, np), 0, 1)
      for name, value in image_metrics(rgb, self.target_rgb).items():
        scores[f'{mode}/model/{name}'] = value
    for row, values in self.baseline_scores.items():
      for name, value in values.items():
        scores[f'{row}/{name}'] = value
    return common.Evaluation(scores, outputs, {})

  def summary(self, evaluation: common.Evaluation) -> str:
    return summary_table(evaluation.scores)


def summary_table(scores: dict[str, float]) -> str:
  """Markdown table of ``Validator.run`` scores: a row per (mode, method)."""
  rows = sorted({key.rsplit('/', 1)[0] for key in scores})
  lines = ['| mode | method | L-PSNR (dB) | RGB PSNR (dB) | CIEDE2000 | '
           'colourfulness |', '|---|---|---|---|---|---|']
  for mode in MODES:
    for row in rows:
      if not row.startswith(mode + '/'):
        continue
      method = row.split('/', 1)[1]
      values = [scores.get(f'{row}/{m}') for m in METRICS]
      cells = ' | '.join('n/a' if v is None else f'{v:.2f}' for v in values)
      lines.append(f'| {mode} | {method} | {cells} |')
  return '\n'.join(lines)


def labelled_grid(data: ValidationSet, outputs: dict[str, np.ndarray],
                  count: int) -> np.ndarray:
  """uint8 grid, a row per photo: gray input | automatic | with reference |
  reference | ground truth, under a header row naming the columns.

  'with reference' and 'reference' use the mirrored reference when the
  model has a referential mode (so the picture shows content matching).
  """
  count = min(count, len(data.names))
  size = data.target.shape[1:3]
  def rgb(nlab):
    return np.clip(color.nlab_to_rgb01(np.asarray(nlab, np.float32), np), 0, 1)
  def enlarge(nlab_lr):
    return np.asarray(jax.image.resize(jnp.asarray(nlab_lr),
                                       (nlab_lr.shape[0], *size, 3),
                                       method='nearest'))
  gray_lr = np.concatenate([data.gray, np.zeros_like(data.lr_color[..., 1:])],
                           -1)
  mode = 'mirrored_reference' if 'mirrored_reference' in outputs else None
  reference = data.reference(mode) if mode else None
  columns = [('gray input', rgb(enlarge(gray_lr[:count]))),
             ('automatic', rgb(outputs['automatic'][:count]))]
  if mode:
    columns += [('with reference', rgb(outputs[mode][:count])),
                ('reference (mirrored)', rgb(enlarge(reference[:count])))]
  columns.append(('ground truth', rgb(data.target[:count])))
  rows = np.concatenate([c for _, c in columns], axis=2)
  body = (rows.reshape((-1,) + rows.shape[2:]) * 255).round().astype(np.uint8)
  header_height = 18
  canvas = Image.new('RGB', (body.shape[1], body.shape[0] + header_height),
                     (255, 255, 255))
  canvas.paste(Image.fromarray(body), (0, header_height))
  draw = ImageDraw.Draw(canvas)
  for i, (label, _) in enumerate(columns):
    draw.text((i * size[1] + 4, 3), label, fill=(0, 0, 0))
  return np.asarray(canvas)


def write_sample_grid(workdir: str, step: int, grid: np.ndarray,
                      writer=None) -> Optional[str]:
  """Saves ``WORKDIR/samples/step_<N>.png`` (process 0) and sends the grid to
  the writer; returns the PNG path (None on other processes)."""
  if writer is not None:
    writer.write_images(step, {'samples': grid[None]})
  if jax.process_index() != 0:
    return None
  path = epath.Path(workdir_lib.sample_path(workdir, step))
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic.open_atomic(path) as f:     # local paths and gs:// alike
    Image.fromarray(grid).save(f, format='PNG')
  return str(path)
