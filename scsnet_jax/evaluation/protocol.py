"""``--mode=eval``: the paper's evaluation protocol, with explicit conventions.

Per dataset (the eval split), images are taken in order and split into three
modes: ``automatic`` (gray only, paper: 2,500 images), ``self_reference``
(the image's own elastically distorted LR colour version as reference, 500)
and ``other_reference`` (the reference of the previous image in the stream,
i.e. another image of the set, 2,000), interleaved in proportion to these
counts so that a small set still fills every mode it can. Per mode we report FID and
colourfulness (CN), plus PSNR/SSIM where a ground truth makes sense
(automatic and self-reference), for the model (EMA weights), the two
baselines of ``scsnet_jax.evaluation.baselines`` and CN of the real images. FID compares
each mode's images with the real HR images of all modes together.

Writes ``WORKDIR/eval/metrics_<step>.json`` and ``.md`` and the same scalars
to TensorBoard. Conventions and caveats: docs/evaluation.md.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Iterable, Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from scsnet_jax import color
from scsnet_jax.data import pipeline as input_pipeline
from scsnet_jax.errors import UserError
from scsnet_jax.evaluation import baselines, common, metrics
from scsnet_jax.evaluation import report as eval_report
from scsnet_jax import loading
from scsnet_jax.pretrained import inception

MODES = eval_report.MODES
METHODS = eval_report.METHODS
MODES_WITH_GROUND_TRUTH = eval_report.MODES_WITH_GROUND_TRUTH
FEATURE_DIM = 2048  # InceptionV3 pool features; a feature_fn may say otherwise


@dataclasses.dataclass
class MethodScores:
  """Streaming sums for one (mode, method) cell of the table."""
  psnr: metrics.RunningMean = dataclasses.field(
      default_factory=metrics.RunningMean)
  ssim: metrics.RunningMean = dataclasses.field(
      default_factory=metrics.RunningMean)
  colorfulness: metrics.RunningMean = dataclasses.field(
      default_factory=metrics.RunningMean)
  features: Optional[metrics.FeatureStatistics] = None

  def all_reduce(self) -> 'MethodScores':
    features = (metrics.all_reduce_statistics(self.features)
                if self.features is not None else None)
    return MethodScores(metrics.all_reduce_mean(self.psnr),
                        metrics.all_reduce_mean(self.ssim),
                        metrics.all_reduce_mean(self.colorfulness), features)


class EvalAccumulator:
  """Per-mode, per-method metric sums; uint8 HR images in, scalars out."""

  def __init__(self, feature_fn: Optional[Callable], y_channel: bool,
               crop_border: int, feature_dim: int = FEATURE_DIM):
    self.feature_fn, self.feature_dim = feature_fn, feature_dim
    self.y_channel, self.crop_border = y_channel, crop_border
    # Every cell exists on every process, so the all-reduce always matches.
    new_features = lambda: (metrics.FeatureStatistics(feature_dim)
                            if feature_fn is not None else None)
    self.scores = {mode: {m: MethodScores(features=new_features())
                          for m in METHODS + ('real',)} for mode in MODES}
    self.real_features = new_features()  # real images of all modes together

  def add(self, mode: str, method: str, images: np.ndarray,
          real: Optional[np.ndarray] = None, psnr_ssim=None):
    """images, real: uint8 (B, H, W, 3); PSNR/SSIM against ``real`` unless
    ``psnr_ssim`` ((B,), (B,)) gives them precomputed; neither: skipped."""
    cell = self.scores[mode][method]
    cell.colorfulness.update(color.colorfulness(images))
    if mode in MODES_WITH_GROUND_TRUTH and (
        real is not None or psnr_ssim is not None):
      if psnr_ssim is None:
        kwargs = dict(y_channel=self.y_channel, crop_border=self.crop_border)
        psnr_ssim = (metrics.psnr(images, real, **kwargs),
                     metrics.ssim(images, real, **kwargs))
      cell.psnr.update(psnr_ssim[0])
      cell.ssim.update(psnr_ssim[1])
    if self.feature_fn is not None:
      features = np.asarray(self.feature_fn(images), np.float64)
      cell.features.update(features)
      if method == 'real':
        self.real_features.update(features)

  def all_reduce(self) -> 'EvalAccumulator':
    """Sums over processes (every process must have seen the same cells)."""
    reduced = EvalAccumulator(self.feature_fn, self.y_channel,
                              self.crop_border, self.feature_dim)
    reduced.scores = {mode: {m: s.all_reduce() for m, s in cells.items()}
                      for mode, cells in self.scores.items()}
    if self.real_features is not None:
      reduced.real_features = metrics.all_reduce_statistics(
          self.real_features)
    return reduced


def _render_all(graphdef, params, gray, target, reference, *, out_size,
                y_channel, crop_border):
  """One batch -> ({method: uint8 sRGB}, {method: (psnr, ssim) vs real}).

  Methods: the model, the baselines and 'real'; PSNR/SSIM on device.
  """
  predicted = common.render_nlab(graphdef, params, gray, reference, out_size)
  images = {'scsnet': color.nlab_to_rgb01(predicted, jnp),
            'bicubic_gray': baselines.bicubic_gray(gray, out_size),
            'real': color.nlab_to_rgb01(target, jnp)}
  if reference is not None:
    images['color_copy'] = baselines.color_copy(gray, reference, out_size)
  images = {name: metrics.to_uint8(rgb) for name, rgb in images.items()}
  scores = {name: metrics.psnr_ssim_jax(pixels, images['real'],
                                        y_channel=y_channel,
                                        crop_border=crop_border)
            for name, pixels in images.items() if name != 'real'}
  return images, scores


def mode_counts(eval_config, referential: bool) -> dict[str, int]:
  """Images per mode for this process (the totals split over processes)."""
  totals = {'automatic': eval_config.num_automatic,
            'self_reference': eval_config.num_self_reference,
            'other_reference': eval_config.num_other_reference}
  for mode, total in totals.items():
    if total < 0:
      raise UserError(f'config.eval.num_{mode} must be >= 0, got {total}')
  if not referential:
    totals['self_reference'] = totals['other_reference'] = 0
  per_process = lambda n: math.ceil(n / jax.process_count())
  return {mode: per_process(n) for mode, n in totals.items()}


def eval_batches(config) -> Iterable[dict]:
  """Per-process eval batches (gray, target, reference) of ``config.data``.

  One pass over the split, or endless passes if ``config.eval.repeat_split``
  (for sets smaller than the counts; repeated images bias FID low).
  """
  eval_config = config.eval
  while True:
    iterator = input_pipeline.create_iterator(
        config.data, eval_config.split, seed=config.data.seed,
        global_batch_size=eval_config.batch_size * jax.process_count())
    for batch in iterator:
      yield input_pipeline.model_inputs(batch)
    if not eval_config.repeat_split:
      return


def split_into_modes(batches: Iterable[dict], counts: dict[str, int]):
  """Yields (mode, batch) in stream order until every mode has its count.

  For ``other_reference`` the reference of image i is the (self-)reference
  of image i-1 of the stream: another image of the same set.
  """
  remaining = dict(counts)
  taken = {mode: 0 for mode in MODES}
  previous_reference = None
  for batch in batches:
    references = np.asarray(batch['reference'])
    if previous_reference is None:  # first batch: wrap around within it
      previous_reference = references[-1:]
    others = np.concatenate([previous_reference, references[:-1]], axis=0)
    previous_reference = references[-1:]
    chosen = {mode: [] for mode in MODES}
    for index in range(len(references)):
      mode = _next_mode(counts, taken)
      if mode is None:
        break
      chosen[mode].append(index)
      taken[mode] += 1
      remaining[mode] -= 1
    for mode in MODES:
      rows = np.asarray(chosen[mode], np.int64)
      if not len(rows):
        continue
      piece = {k: np.asarray(v)[rows] for k, v in batch.items()
               if k in ('gray', 'target', 'reference')}
      if mode == 'automatic':
        piece['reference'] = None
      elif mode == 'other_reference':
        piece['reference'] = others[rows]
      yield mode, piece
    if not any(remaining.values()):
      return
  short = {m: n for m, n in remaining.items() if n}
  if short:
    logging.warning('the eval split ran out of images before the counts of '
                    'config.eval.num_*; missing per mode: %s (the scores '
                    'use the images there were)', short)


def _next_mode(counts: dict[str, int], taken: dict[str, int]):
  """The mode that is furthest from its requested count, as a fraction.

  Interleaves the modes in proportion to their counts (2500/500/2000: A, S,
  O, A, O, A, ...), so a set smaller than the total still fills every mode
  it can (the demo's 2 photos: automatic and self-reference) instead of
  giving them all to the first mode. Ties go to the earlier mode.
  """
  best, best_fill = None, None
  for mode in MODES:
    if taken[mode] >= counts[mode]:
      continue
    fill = taken[mode] / counts[mode]
    if best_fill is None or fill < best_fill:
      best, best_fill = mode, fill
  return best


MODEL_SHAPE_KEYS = (
    'referential', 'init_width', 'encoder_widths', 'source_res_blocks',
    'reference_res_blocks', 'cross_attention_qk', 'pyramid_levels',
    'self_attention_qk', 'decoder_res_blocks', 'texture_res_blocks',
    'fusion_width', 'cpm_hidden', 'luminance_residual')


def check_model_matches(config, checkpoint_config, workdir: str) -> None:
  """One-line ValueError when ``--config``'s model is not the checkpoint's."""
  if 'model' not in config or 'model' not in checkpoint_config:
    return
  ours, theirs = config.model, checkpoint_config.model
  normal = lambda v: list(v) if isinstance(v, (list, tuple)) else v
  differ = [f'{key} {normal(ours[key])} vs {normal(theirs[key])}'
            for key in MODEL_SHAPE_KEYS
            if key in ours and key in theirs
            and normal(ours[key]) != normal(theirs[key])]
  if differ:
    raise UserError(
        f'the model of --config does not match the checkpoint in {workdir} '
        f'(config vs checkpoint: {"; ".join(differ)}); leave out --config to '
        'evaluate with the workdir\'s own config.json')


def run_protocol(graphdef, params, referential: bool,
                 batches: Iterable[dict],
                 eval_config: ml_collections.ConfigDict,
                 feature_fn: Optional[Callable] = None) -> EvalAccumulator:
  """Runs the model and baselines over ``batches`` (per-process numpy nlab).

  ``feature_fn``: uint8 (B, H, W, 3) -> (B, D) features for FID, with D in
  its ``feature_dim`` attribute (default 2048); None skips FID.
  """
  accumulator = EvalAccumulator(
      feature_fn, eval_config.y_channel, eval_config.crop_border,
      feature_dim=getattr(feature_fn, 'feature_dim', FEATURE_DIM))
  counts = mode_counts(eval_config, referential)
  # This run's compilations: one per mode (output size, reference or not).
  render_all = jax.jit(_render_all, static_argnames=(
      'graphdef', 'out_size', 'y_channel', 'crop_border'))
  for mode, piece in split_into_modes(batches, counts):
    out_size = tuple(int(s) for s in piece['target'].shape[1:3])
    size = len(piece['gray'])
    # One compile per mode: a short piece is padded to the batch size.
    padded = {k: common.pad_batch(v, eval_config.batch_size)
              for k, v in piece.items()}
    images, scores = jax.device_get(render_all(
        graphdef, params, padded['gray'], padded['target'],
        padded['reference'], out_size=out_size,
        y_channel=bool(eval_config.y_channel),
        crop_border=int(eval_config.crop_border)))
    for method, pixels in images.items():
      psnr_ssim = None
      if method in scores:
        psnr_ssim = tuple(np.asarray(v, np.float64)[:size]
                          for v in scores[method])
      accumulator.add(mode, method, np.asarray(pixels)[:size],
                      psnr_ssim=psnr_ssim)
  return accumulator.all_reduce()


def load_feature_fn(eval_config) -> tuple[Optional[Callable], Optional[str]]:
  """(features fn, None) or (None, why FID is null)."""
  path = eval_config.inception_weights
  if not path:
    return None, ('no Inception weights (set config.eval.inception_weights to '
                  'the npz from scsnet_jax.pretrained.convert_inception)')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'config.eval.inception_weights={path} does not '
                            'exist; convert pytorch-fid\'s weights with '
                            'python -m scsnet_jax.pretrained.convert_inception')
  return inception.make_feature_fn(inception.load_fid_inception(path)), None


class ProtocolEvaluator:
  """The paper's protocol as a ``common.Evaluator``: ``run(params)`` scores
  the model and the baselines over ``batches`` (per-process numpy nlab, read
  once); its ``report`` holds the nested results and their conventions."""
  prefix = 'eval'

  def __init__(self, graphdef, referential: bool, batches: Iterable[dict],
               eval_config: ml_collections.ConfigDict,
               feature_fn: Optional[Callable] = None,
               fid_null_reason: Optional[str] = None):
    self.graphdef, self.referential = graphdef, referential
    self.batches, self.eval_config = batches, eval_config
    self.feature_fn, self.fid_null_reason = feature_fn, fid_null_reason

  def run(self, params) -> common.Evaluation:
    eval_config = self.eval_config
    accumulator = run_protocol(self.graphdef, params, self.referential,
                               self.batches, eval_config, self.feature_fn)
    results = eval_report.summarize(accumulator, self.fid_null_reason)
    return common.Evaluation(eval_report.flat_scalars(results), {}, {
        'requested_images': {
            'automatic': eval_config.num_automatic,
            'self_reference': eval_config.num_self_reference,
            'other_reference': eval_config.num_other_reference},
        'inception_weights': eval_config.inception_weights or None,
        'conventions': eval_report.conventions(eval_config),
        'fid_null_reason': self.fid_null_reason,
        'results': results})

  def summary(self, evaluation: common.Evaluation) -> str:
    return eval_report.markdown_table(evaluation.report)


def evaluate(config: ml_collections.ConfigDict, workdir: str, *,
             generator_bundle=None, batches: Optional[Iterable[dict]] = None,
             feature_fn: Optional[Callable] = None) -> dict[str, Any]:
  """Evaluates the run in ``workdir`` (EMA weights) on ``config``'s eval split.

  ``generator_bundle``, ``batches`` and ``feature_fn`` override the
  checkpoint, the data iterator and the Inception model (tests, notebooks).
  Returns the report that is written to ``WORKDIR/eval/metrics_<step>.json``.
  """
  eval_config = config.eval
  if generator_bundle is None:
    step = None if eval_config.step < 0 else int(eval_config.step)
    generator_bundle = loading.load_generator(
        workdir, step=step, use_ema=eval_config.use_ema)
    check_model_matches(config, generator_bundle.config, workdir)
  fid_null_reason = None
  if feature_fn is None:
    feature_fn, fid_null_reason = load_feature_fn(eval_config)
  evaluator = ProtocolEvaluator(
      generator_bundle.graphdef,
      bool(generator_bundle.config.model.referential),
      eval_batches(config) if batches is None else batches, eval_config,
      feature_fn, fid_null_reason)
  evaluation = evaluator.run(generator_bundle.params)
  report = {
      'step': int(generator_bundle.step),
      'weights': 'ema' if eval_config.use_ema else 'raw',
      'split': eval_config.split,
      'data': _data_description(config),
      **evaluation.report,
  }
  if jax.process_index() == 0:
    path = eval_report.write_report(workdir, report)
    logging.info('eval results:\n%s', eval_report.console_summary(report,
                                                                   path))
    if eval_config.write_tensorboard:
      eval_report.write_tensorboard(
          workdir, report['step'],
          common.prefixed(evaluator.prefix, evaluation.scores))
  return report


def _data_description(config) -> dict[str, Any]:
  """Which images were evaluated: source, dataset, crop and scale."""
  if 'data' not in config:
    return {}
  data = config.data
  keys = ('source', 'tfds_name', 'tfds_eval_split', 'folder_path',
          'crop_size', 'scale', 'eval_scale')
  return {k: data[k] for k in keys if k in data and not isinstance(
      data[k], ml_collections.ConfigDict)}
