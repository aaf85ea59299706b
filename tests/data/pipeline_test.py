"""Tests for scsnet_jax.data.pipeline (tiny crops, inline workers)."""

import io
import logging

import numpy as np
import pytest
from PIL import Image

from scsnet_jax import config_lib
from scsnet_jax import color
from scsnet_jax.data import sources as data_sources
from scsnet_jax.data import pipeline as input_pipeline
from scsnet_jax.data.pipeline import DataError


def _config(**overrides):
  config = config_lib.data_defaults()
  config.source = 'demo'
  config.crop_size = 32
  config.num_workers = 0
  config.read_threads = 1
  config.update(overrides)
  return config


def _iterator(config, split='train', **kwargs):
  kwargs.setdefault('global_batch_size', 2)
  kwargs.setdefault('process_index', 0)
  kwargs.setdefault('process_count', 1)
  return input_pipeline.create_iterator(config, split, **kwargs)


class ColourCodedSource:
  """Item i is a flat image whose RGB value encodes i (for tracking items)."""

  def __init__(self, count, size=40):
    self.count, self.size = count, size

  def __len__(self):
    return self.count

  def describe(self, index):
    return f'coded[{index}]'

  def load(self, index):
    rgb = np.array([index * 10 % 250, index // 25 * 10, 128], np.uint8)
    return np.broadcast_to(rgb, (self.size, self.size, 3)).copy()


def _decode_ids(batch):
  rgb = color.nlab_to_rgb01(batch['target'].mean(axis=(1, 2)), xp=np) * 255
  return [int(round(r / 10)) + 25 * int(round(g / 10)) for r, g, _ in rgb]


def test_batch_shapes_dtypes_and_ranges():
  batch = next(_iterator(_config(), global_batch_size=3))
  assert batch['gray'].shape == (3, 8, 8, 1)
  assert batch['target'].shape == (3, 32, 32, 3)
  assert batch['reference'].shape == (3, 8, 8, 3)
  assert batch['skipped_images'].shape == (3,)
  for key in input_pipeline.MODEL_KEYS:
    assert batch[key].dtype == np.float32
    assert -1.0 <= batch[key].min() and batch[key].max() <= 1.0
  assert batch['target'].std() > 0.05  # real photo content, not constants


def test_gray_is_the_bicubic_downsampled_target_luminance():
  """Rebuild LR from the HR target with PIL's float bicubic: same L."""
  batch = next(_iterator(_config(elastic_alpha=0.0), 'eval'))
  hr_rgb = color.nlab_to_rgb01(batch['target'].astype(np.float64), xp=np)
  for hr, gray in zip(hr_rgb, batch['gray']):
    lr = np.stack([
        np.asarray(Image.fromarray(hr[..., c].astype(np.float32), 'F').resize(
            (8, 8), Image.BICUBIC, reducing_gap=None)) for c in range(3)], -1)
    want = color.rgb01_to_nlab(np.clip(lr, 0, 1), xp=np)[..., 0]
    np.testing.assert_allclose(gray[..., 0], want, atol=2e-3)


def test_eval_reference_without_distortion_is_the_lr_image():
  batch = next(_iterator(_config(elastic_alpha=0.0), 'eval'))
  np.testing.assert_array_equal(batch['reference'][..., :1], batch['gray'])
  distorted = next(_iterator(_config(), 'eval'))
  assert np.abs(distorted['reference'][..., :1] - distorted['gray']).mean() > 1e-3


def test_same_seed_same_batches_other_seed_different():
  first = [next(it) for it in [_iterator(_config())] for _ in range(2)]
  again = [next(it) for it in [_iterator(_config())] for _ in range(2)]
  other = next(_iterator(_config(), seed=1))
  for a, b in zip(first, again):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(first[0]['target'], other['target'])


def test_two_processes_read_disjoint_shards_covering_the_split():
  source = ColourCodedSource(12)
  seen = []
  for index in range(2):
    iterator = _iterator(_config(), global_batch_size=4, process_index=index,
                         process_count=2, num_epochs=1, source=source)
    batches = list(iterator)
    assert len(batches) == 3 and batches[0]['target'].shape[0] == 2
    seen.append([i for batch in batches for i in _decode_ids(batch)])
  assert not set(seen[0]) & set(seen[1])
  assert sorted(seen[0] + seen[1]) == list(range(12))


def test_scale_range_is_per_batch_quantised_and_agrees_across_processes():
  config = _config(crop_size=64, scale=[2.0, 4.0], scale_choices=3)
  sides = []
  for index in range(2):
    iterator = _iterator(config, global_batch_size=4, process_index=index,
                         process_count=2, source=ColourCodedSource(20, 64))
    sides.append([next(iterator)['gray'].shape[1] for _ in range(12)])
  assert sides[0] == sides[1]
  # 64/2, 64/3 -> 21.3 -> 20, 64/4: multiples of 4 from 3 choices.
  assert set(sides[0]) == {32, 20, 16}


def _write_folder(folder):
  rng = np.random.default_rng(0)
  folder.mkdir()
  for name in ['a.png', 'c.png', 'e.png']:
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
        folder / name)
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
      buffer, format='JPEG')
  (folder / 'b_truncated.jpg').write_bytes(buffer.getvalue()[:600])
  (folder / 'd_text.png').write_text('this is not a picture')
  (folder / 'f_empty.jpg').write_bytes(b'')


def test_corrupt_files_are_skipped_logged_once_and_counted(tmp_path, caplog):
  _write_folder(tmp_path / 'photos')
  config = _config(source='folder', folder_path=str(tmp_path / 'photos'),
                   eval_fraction=0.0)
  with caplog.at_level(logging.WARNING):
    batches = list(_iterator(config, global_batch_size=3, num_epochs=2))
  assert len(batches) == 4
  # Each bad file is replaced by the next good one: one skip per bad file
  # per epoch, visible in the batches.
  assert sum(int(b['skipped_images'].sum()) for b in batches) == 6
  for bad in ['b_truncated.jpg', 'd_text.png', 'f_empty.jpg']:
    assert sum(bad in r.getMessage() for r in caplog.records) == 1
  assert all(np.isfinite(b['target']).all() for b in batches)


def test_clear_errors_before_training(tmp_path):
  with pytest.raises(DataError, match='does not exist'):
    _iterator(_config(source='folder', folder_path=str(tmp_path / 'none')))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(DataError, match='no .jpg'):
    _iterator(_config(source='folder', folder_path=str(tmp_path / 'empty')))
  with pytest.raises(DataError, match='crop_size=8192 is too large'):
    _iterator(_config(crop_size=8192))
  (tmp_path / 'bad').mkdir()
  (tmp_path / 'bad' / 'x.png').write_text('nope')
  with pytest.raises(DataError, match='no usable image'):
    _iterator(_config(source='folder', folder_path=str(tmp_path / 'bad'),
                      eval_fraction=0.0), global_batch_size=1)
  with pytest.raises(DataError, match='not divisible'):
    _iterator(_config(), global_batch_size=3, process_count=2)


def test_grain_worker_processes_give_the_inline_batches():
  config = _config()
  inline = next(_iterator(config))
  with_worker = _iterator(config, num_workers=1)
  batch = next(with_worker)
  with_worker.close()
  for key in inline:
    np.testing.assert_array_equal(batch[key], inline[key])


def test_other_reference_comes_from_another_image():
  def ids(prob):
    config = _config(other_reference_prob=prob, elastic_alpha=0.0)
    batch = next(_iterator(config, source=ColourCodedSource(10),
                           global_batch_size=6))
    return _decode_ids(batch), _decode_ids({'target': batch['reference']})
  targets, references = ids(0.0)
  assert references == targets and len(set(targets)) == 6
  targets, references = ids(1.0)
  # Drawn uniformly from the 10 items: with 6 draws, all equal is ~1e-6.
  assert sum(r != t for r, t in zip(references, targets)) >= 2


class RampSource(ColourCodedSource):
  """Item i: a flat colour code (as above) times a horizontal ramp of
  brightness, so windows of one photo share its hue but not its layout."""

  def load(self, index):
    flat = super().load(index).astype(np.float32)
    ramp = np.linspace(0.3, 1.0, self.size, dtype=np.float32)[None, :, None]
    return np.round(flat * ramp).astype(np.uint8)


def test_other_view_reference_is_another_window_of_the_same_photo():
  """The reference has the photo's own colour code (unlike a reference from
  another image) but another layout than the target's LR image."""
  config = _config(other_view_reference_prob=1.0, elastic_alpha=0.0)
  batch = next(_iterator(config, source=ColourCodedSource(10, size=80),
                         global_batch_size=6))
  assert _decode_ids({'target': batch['reference']}) == _decode_ids(batch)
  batch = next(_iterator(config, source=RampSource(10, size=80),
                         global_batch_size=6))
  lr = batch['gray'][..., 0]
  differs = [np.abs(ref[..., 0] - lr_image).mean() > 1e-3
             for ref, lr_image in zip(batch['reference'], lr)]
  assert sum(differs) >= 4
  hue = np.arctan2(batch['reference'][..., 2], batch['reference'][..., 1])
  target_hue = np.arctan2(batch['target'][..., 2], batch['target'][..., 1])
  np.testing.assert_allclose(np.median(hue, axis=(1, 2)),
                             np.median(target_hue, axis=(1, 2)), atol=0.05)


def test_image_short_side_shrinks_photos_and_cache_decodes_once(tmp_path):
  from scsnet_jax import image_io
  from scsnet_jax.data import degradations
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(tmp_path / 'wide.png')
  source = data_sources.folder_source(str(tmp_path), 'train', 0.0)
  maker = input_pipeline.ExampleMaker(
      source=source, shard_index=0, shard_count=1, shard_len=1,
      batch_size=1, training=True, seed=0, crop_size=32, max_upscale=4.0,
      scale=(4.0, 4.0), scale_choices=0, eval_scale=4.0, elastic_alpha=1.0,
      elastic_sigma=1.0, other_reference_prob=0.0, image_short_side=48,
      cache_images=True)
  calls = []
  encoded = source.encoded
  source.encoded = lambda i: calls.append(i) or encoded(i)
  small = maker._load(0)
  assert small.shape == (48, 80, 3)
  expected = degradations.resize_bicubic(image_io.to_float01(pixels),
                                         (48, 80))
  np.testing.assert_allclose(small / 255.0, np.clip(expected, 0, 1),
                             atol=1 / 255 + 1e-6)
  assert maker._load(0) is small and calls == [0]
