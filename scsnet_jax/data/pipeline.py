"""Grain input pipeline: a photo source -> per-process batches of LR gray / HR
colour / reference triples (numpy, float32 normalised LAB).

    source[i] -> (shard of this process) -> shuffle per epoch -> repeat
      -> ExampleMaker (decode, crop, flip, bicubic LR, LAB, reference)
      -> batch of global_batch_size / process_count -> grain workers

Every example is a pure function of (seed, process shard, position in the
stream), so runs are reproducible and the iterator state (a position) can be
checkpointed with grain's orbax handler (``train.checkpointing`` saves it).
The magnification is drawn per batch from (seed, batch number) only, so all
processes agree on the batch's shapes. Transforms are numpy-only: nothing here
imports JAX at module level (grain workers are spawned processes).

Batch (per process, b = global_batch_size / process_count, crop H = W):
  'gray'      (b, h, w, 1) float32  normalised L of the LR image
  'target'    (b, H, W, 3) float32  normalised LAB of the HR crop
  'reference' (b, h, w, 3) float32  normalised LAB colour reference
  'skipped_images' (b,) int32       unusable files skipped to make each example
with h = w = crop / scale rounded to a multiple of 4. See docs/data.md.
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from scsnet_jax import color
from scsnet_jax.data import sources as data_sources
from scsnet_jax.data import degradations, quality_filter
from scsnet_jax import image_io
from scsnet_jax.data.sources import DataError  # re-exported
from scsnet_jax.models.geometry import INPUT_MULTIPLE

__all__ = ['DataError', 'create_dataset',
           'create_iterator', 'MODEL_KEYS']

MODEL_KEYS = ('gray', 'target', 'reference')
_SCALE_SALT = 0x5CA1E      # separates the per-batch scale stream
_STARTUP_PROBE = 64        # items inspected before training to fail early
_MAX_CONSECUTIVE_BAD = 64  # unusable items tried in a row before giving up


@dataclasses.dataclass
class ExampleMaker(grain.transforms.MapWithIndex):
  """(stream position, shard-local item) -> one training/eval example dict."""
  source: object
  shard_index: int
  shard_count: int
  shard_len: int
  batch_size: int
  training: bool
  seed: int
  crop_size: int
  max_upscale: float
  scale: object
  scale_choices: int
  eval_scale: float
  elastic_alpha: float
  elastic_sigma: float
  other_reference_prob: float
  other_view_reference_prob: float = 0.0
  image_short_side: int = 0
  cache_images: bool = False
  _cache: dict = dataclasses.field(default_factory=dict, repr=False,
                                   compare=False)

  def lr_size(self, batch_number: int) -> int:
    """LR side of every example in this batch (same in all processes)."""
    if self.training:
      rng = np.random.default_rng([self.seed, _SCALE_SALT, batch_number])
      scale = degradations.draw_scale(self.scale, self.scale_choices, rng)
    else:
      scale = self.eval_scale
    return degradations.lr_size_for_scale(self.crop_size, scale)

  def _load(self, local: int) -> np.ndarray:
    """The shard item's pixels, or ImageDecodeError (also for tiny images)."""
    global_index = self.shard_index + int(local) * self.shard_count
    pixels = self._cache.get(global_index)
    if pixels is None:
      pixels = self._decode(global_index)
      if self.cache_images:
        self._cache[global_index] = pixels
    if min(pixels.shape[:2]) * self.max_upscale < self.crop_size:
      raise image_io.ImageDecodeError(
          f'{self.source.describe(global_index)}: {pixels.shape[1]}x'
          f'{pixels.shape[0]} needs more than {self.max_upscale}x upscaling '
          f'for a {self.crop_size} crop')
    return pixels

  def _decode(self, global_index: int) -> np.ndarray:
    """The item's pixels; with ``image_short_side``, JPEGs are decoded at a
    reduced size (PIL draft) and every image shrunk (antialiased bicubic) so
    its shorter side is at most that, as ImageNet-sized photos are."""
    side = self.image_short_side
    if not side:
      return self.source.load(global_index)
    pixels = image_io.decode_image(
        self.source.encoded(global_index),
        name=self.source.describe(global_index), draft_size=(side, side))
    short = min(pixels.shape[:2])
    if short <= side:
      return pixels
    size = (max(1, round(pixels.shape[0] * side / short)),
            max(1, round(pixels.shape[1] * side / short)))
    small = degradations.resize_bicubic(image_io.to_float01(pixels), size)
    return np.round(np.clip(small, 0, 1) * 255).astype(np.uint8)

  def _load_usable(self, local: int) -> tuple[np.ndarray, int]:
    """Pixels of the item or, if unusable, of the next usable one."""
    for skipped in range(min(self.shard_len, _MAX_CONSECUTIVE_BAD)):
      candidate = (int(local) + skipped) % self.shard_len
      try:
        return self._load(candidate), skipped
      except (OSError, image_io.ImageDecodeError) as error:
        data_sources.note_skipped(self.source.describe(
            self.shard_index + candidate * self.shard_count), error)
    raise DataError(f'{_MAX_CONSECUTIVE_BAD} unusable images in a row in '
                    f'shard {self.shard_index} from item {local}')

  def _hr_crop(self, pixels, rng) -> np.ndarray:
    image = degradations.upscale_to_min_side(image_io.to_float01(pixels),
                                             self.crop_size)
    if not self.training:
      return degradations.center_crop(image, self.crop_size)
    return degradations.random_flip(
        degradations.random_crop(image, self.crop_size, rng), rng)

  def _other_view(self, pixels, lr_side: int, rng) -> np.ndarray:
    """LR normalised LAB (lr_side, lr_side, 3) of another window of the same
    photo, 0.75-1.5x the crop's side, placed independently: the same
    objects and colours in another layout and scale, as a second photo of
    the same scene would show them."""
    image = degradations.upscale_to_min_side(image_io.to_float01(pixels),
                                             self.crop_size)
    side = min(int(round(self.crop_size * rng.uniform(0.75, 1.5))),
               *image.shape[:2])
    view = degradations.random_crop(image, side, rng)
    return color.rgb01_to_nlab(
        degradations.resize_bicubic(view, (lr_side, lr_side)), xp=np)

  def map_with_index(self, index: int, local: int) -> dict[str, np.ndarray]:
    lr_side = self.lr_size(index // self.batch_size)
    rng = np.random.default_rng([self.seed, self.shard_index, index])
    pixels, skipped = self._load_usable(local)
    hr = self._hr_crop(pixels, rng)
    lr_rgb = degradations.resize_bicubic(hr, (lr_side, lr_side))
    lr_nlab = color.rgb01_to_nlab(lr_rgb, xp=np)
    reference = lr_nlab
    if self.training and rng.random() < self.other_view_reference_prob:
      reference = self._other_view(pixels, lr_side, rng)
    elif self.training and rng.random() < self.other_reference_prob:
      try:
        other_pixels = self._load(rng.integers(self.shard_len))
        other_lr = degradations.resize_bicubic(
            self._hr_crop(other_pixels, rng), (lr_side, lr_side))
        reference = color.rgb01_to_nlab(other_lr, xp=np)
      except (OSError, image_io.ImageDecodeError) as error:
        data_sources.note_skipped('other reference', error)
    if self.training:
      reference = degradations.random_flip(reference, rng)
    reference = degradations.elastic_distortion(
        reference, self.elastic_alpha, self.elastic_sigma, rng)
    return {
        'gray': np.ascontiguousarray(lr_nlab[..., :1], dtype=np.float32),
        'target': color.rgb01_to_nlab(hr, xp=np).astype(np.float32),
        'reference': np.ascontiguousarray(reference, dtype=np.float32),
        'skipped_images': np.int32(skipped),
    }


def _check_source_usable(maker: ExampleMaker) -> None:
  """Fails before training if the first items hold no usable image."""
  largest = 0
  errors = []
  for local in range(min(maker.shard_len, _STARTUP_PROBE)):
    global_index = maker.shard_index + local * maker.shard_count
    try:
      pixels = maker.source.load(global_index)
    except (OSError, image_io.ImageDecodeError) as error:
      errors.append(str(error))
      continue
    largest = max(largest, min(pixels.shape[:2]))
    if largest * maker.max_upscale >= maker.crop_size:
      return
  if largest:
    raise DataError(
        f'data.crop_size={maker.crop_size} is too large: the checked images '
        f'have shorter sides up to {largest}px and may be upscaled at most '
        f'{maker.max_upscale}x (data.max_upscale)')
  raise DataError(f'no usable image among the first {len(errors)} items of '
                  f'the source (first error: {errors[0] if errors else "-"})')


def create_dataset(data, split: str = 'train', *,
                   global_batch_size: int | None = None,
                   seed: int | None = None,
                   process_index: int | None = None,
                   process_count: int | None = None,
                   num_workers: int | None = None,
                   num_epochs: int | None = None,
                   drop_remainder: bool | None = None,
                   source=None) -> grain.IterDataset:
  """The grain dataset of per-process batches for ``split`` ('train'|'eval').

  Args:
    data: the config's ``data`` section (``config.data``).
    global_batch_size: default ``data.global_batch_size``; must divide by
      ``process_count``.
    seed: default ``data.seed``.
    process_index, process_count: this process's shard; default
      ``jax.process_index()``, ``jax.process_count()`` (read now, not at import).
    num_workers: grain worker processes, default ``data.num_workers``.
    num_epochs: train default None = forever; eval always one pass.
    drop_remainder: default True for train, False for eval (the last eval
      batch may be smaller, and shards may differ by one item).
    source: a ready source object (tests, custom data); default from data.
  """
  training = split == 'train'
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    if process_index is None:
      process_index = jax.process_index()
    if process_count is None:
      process_count = jax.process_count()
  global_batch_size = global_batch_size or data.global_batch_size
  if global_batch_size % process_count:
    raise DataError(f'global batch size {global_batch_size} is not divisible '
                    f'by the {process_count} processes')
  batch_size = global_batch_size // process_count
  seed = data.seed if seed is None else seed
  drop_remainder = training if drop_remainder is None else drop_remainder
  if data.crop_size % INPUT_MULTIPLE:
    raise DataError(f'data.crop_size={data.crop_size} must be a multiple of 4')
  low, high = degradations.scale_bounds(data.scale)
  eval_scale = data.eval_scale if data.eval_scale > 0 else high
  if source is None:
    source = quality_filter.from_config(data_sources.make_source(data, split),
                                        data.quality_filter)
  total = len(source)
  shard_len = (total // process_count if drop_remainder else
               len(range(process_index, total, process_count)))
  if shard_len < 1:
    raise DataError(f'the {split!r} split has {total} images: too few for '
                    f'{process_count} processes')
  maker = ExampleMaker(
      source=source, shard_index=process_index, shard_count=process_count,
      shard_len=shard_len, batch_size=batch_size, training=training,
      seed=int(seed), crop_size=int(data.crop_size),
      max_upscale=float(data.max_upscale), scale=(low, high),
      scale_choices=int(data.scale_choices), eval_scale=float(eval_scale),
      elastic_alpha=float(data.elastic_alpha),
      elastic_sigma=float(data.elastic_sigma),
      other_reference_prob=float(data.other_reference_prob),
      other_view_reference_prob=float(data.get('other_view_reference_prob',
                                               0.0)),
      image_short_side=int(data.get('image_short_side', 0)),
      cache_images=bool(data.get('cache_images', False)))
  _check_source_usable(maker)
  dataset = grain.MapDataset.range(shard_len)
  if training:
    dataset = dataset.shuffle(seed=int(seed)).repeat(num_epochs)
  dataset = dataset.map_with_index(maker).batch(batch_size,
                                                drop_remainder=drop_remainder)
  dataset = dataset.to_iter_dataset(grain.ReadOptions(
      num_threads=max(1, data.read_threads),
      prefetch_buffer_size=max(1, data.read_buffer_size)))
  num_workers = data.num_workers if num_workers is None else num_workers
  if num_workers > 0:
    _ensure_absl_flags_parsed()
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=num_workers,
        per_worker_buffer_size=max(1, data.worker_buffer_size)))
  return dataset


def _ensure_absl_flags_parsed() -> None:
  """grain's worker launcher reads absl flags; outside an absl app (tests,
  notebooks) they were never parsed, so accept their defaults."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def create_iterator(data, split: str = 'train',
                    seed: int | None = None,
                    **kwargs) -> grain.DatasetIterator:
  """``iter(create_dataset(...))``: a checkpointable grain iterator."""
  return iter(create_dataset(data, split, seed=seed, **kwargs))


def model_inputs(batch: dict) -> dict:
  """The batch without bookkeeping keys: only 'gray', 'target', 'reference'."""
  return {key: batch[key] for key in MODEL_KEYS}
