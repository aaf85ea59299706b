"""Tests for scsnet_jax.data.sources and scsnet_jax.image_io."""

import os
import io
import socket
import struct

import numpy as np
import pytest
from PIL import Image

from scsnet_jax import config_lib
from scsnet_jax.data import sources as data_sources
from scsnet_jax import image_io
from scsnet_jax.data.sources import DataError


def _png_bytes(array, mode=None):
  buffer = io.BytesIO()
  Image.fromarray(array, mode=mode).save(buffer, format='PNG')
  return buffer.getvalue()


def _jpeg_bytes(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='JPEG', quality=95)
  return buffer.getvalue()


@pytest.fixture
def no_network(monkeypatch):
  def refuse(*args, **kwargs):
    raise OSError('network disabled in this test')
  monkeypatch.setattr(socket.socket, 'connect', refuse)
  monkeypatch.setattr(socket, 'create_connection', refuse)


def test_decode_image_round_trips_png_and_converts_modes():
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
  np.testing.assert_array_equal(image_io.decode_image(_png_bytes(rgb)), rgb)
  gray = rng.integers(0, 256, (6, 4), dtype=np.uint8)
  decoded = image_io.decode_image(_png_bytes(gray))
  assert decoded.shape == (6, 4, 3)
  np.testing.assert_array_equal(decoded, np.repeat(gray[..., None], 3, -1))
  rgba = np.concatenate([rgb, np.full((7, 5, 1), 9, np.uint8)], -1)
  np.testing.assert_array_equal(image_io.decode_image(_png_bytes(rgba)), rgb)


@pytest.mark.parametrize('payload,problem', [
    (b'', 'empty file'),
    (b'hello, this is text', 'cannot decode'),
    ('truncated', 'cannot decode'),
])
def test_decode_image_rejects_bad_bytes_naming_the_file(payload, problem):
  if payload == 'truncated':
    rng = np.random.default_rng(0)
    full = _jpeg_bytes(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    payload = full[:len(full) // 2]
  with pytest.raises(image_io.ImageDecodeError, match=f'photo.png: {problem}'):
    image_io.decode_image(payload, name='photo.png')


def test_decode_image_refuses_too_many_pixels():
  # Our limit is checked from the header; PIL's process-wide one is PIL's.
  assert Image.MAX_IMAGE_PIXELS == 89_478_485
  data = _png_bytes(np.zeros((20, 30, 3), np.uint8))
  with pytest.raises(image_io.ImageDecodeError, match='decompression bomb'):
    image_io.decode_image(data, name='big.png', max_pixels=599)
  assert image_io.decode_image(data, max_pixels=600).shape == (20, 30, 3)


def test_read_image_missing_file(tmp_path):
  with pytest.raises(image_io.ImageDecodeError, match='nope.jpg: cannot read'):
    image_io.read_image(tmp_path / 'nope.jpg')


def test_folder_listing_is_recursive_sorted_and_filtered(tmp_path):
  for rel in ['b/z.PNG', 'a.jpg', 'b/c/d.webp', 'notes.txt', 'e.jpeg']:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'x')
  assert data_sources.list_image_files(str(tmp_path)) == [
      'a.jpg', 'b/c/d.webp', 'b/z.PNG', 'e.jpeg']


def test_hash_split_is_stable_disjoint_and_near_the_fraction(tmp_path):
  names = [f'dir{i % 7}/img_{i}.jpg' for i in range(2000)]
  in_eval = [data_sources.in_eval_split(n, 0.1) for n in names]
  assert 0.08 < np.mean(in_eval) < 0.12
  # Independent of which other files exist: recomputing per name agrees.
  assert in_eval == [data_sources.in_eval_split(n, 0.1) for n in names[::-1]
                     ][::-1]
  for rel in names[:40]:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'x')
  train = data_sources.folder_source(str(tmp_path), 'train', 0.3).relpaths
  evals = data_sources.folder_source(str(tmp_path), 'eval', 0.3).relpaths
  assert not set(train) & set(evals)
  assert sorted(train + evals) == sorted(names[:40])


def test_missing_and_empty_folders_are_data_errors(tmp_path):
  with pytest.raises(DataError, match='does not exist'):
    data_sources.folder_source(str(tmp_path / 'absent'), 'train', 0.1)
  (tmp_path / 'readme.txt').write_text('no images here')
  with pytest.raises(DataError, match='no .jpg'):
    data_sources.folder_source(str(tmp_path), 'train', 0.1)


def test_demo_source_is_bundled_and_offline(no_network):
  train = data_sources.DemoSource('train')
  evals = data_sources.DemoSource('eval')
  assert sorted(train.names + evals.names) == sorted(data_sources.DEMO_FILES)
  assert evals.names == ['chelsea', 'coffee']
  shapes = {name: train.load(i).shape for i, name in enumerate(train.names)}
  assert shapes['astronaut'] == (512, 512, 3)
  assert shapes['motorcycle_left'] == (500, 741, 3)
  chelsea = evals.load(0)
  assert chelsea.shape == (300, 451, 3) and chelsea.dtype == np.uint8


def test_tfds_not_prepared_says_how_to_prepare(tmp_path, no_network):
  with pytest.raises(DataError) as caught:
    data_sources.TfdsSource('imagenet2012', 'train', str(tmp_path))
  message = str(caught.value)
  for needed in ['is not prepared', 'downloads/manual', 'tfds build',
                 'array_record', 'data.source=folder', 'configs/demo.py']:
    assert needed in message
  assert '\n' not in message


def test_make_source_rejects_unknown_kind():
  config = config_lib.data_defaults()
  config.source = 'ftp'
  with pytest.raises(DataError, match="'tfds', 'folder' or 'demo'"):
    data_sources.make_source(config, 'train')
  config.source = 'folder'
  with pytest.raises(DataError, match='folder_path'):
    data_sources.make_source(config, 'train')


@pytest.mark.slow
def test_tfds_array_record_dataset_feeds_the_pipeline(tmp_path):
  """Builds a 6+2 image TFDS dataset in ArrayRecord format (imports TF)."""
  import tensorflow_datasets as tfds
  from etils import epath
  from scsnet_jax.data import pipeline as input_pipeline

  class TinyPhotos(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version('1.0.0')
    # tfds locates a builder's code through importlib_resources, which is not
    # installed here; point it at this file instead.
    code_path = epath.Path(__file__)

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self, features=tfds.features.FeaturesDict(
              {'image': tfds.features.Image(shape=(None, None, 3))}))

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples(6, 0),
              'validation': self._generate_examples(2, 1)}

    def _generate_examples(self, count, seed):
      rng = np.random.default_rng(seed)
      for i in range(count):
        yield i, {'image': rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)}

  data_dir = str(tmp_path / 'tfds')
  TinyPhotos(data_dir=data_dir, file_format='array_record').download_and_prepare()
  source = data_sources.TfdsSource('tiny_photos', 'validation', data_dir)
  assert len(source) == 2
  np.testing.assert_array_equal(
      source.load(1),
      np.random.default_rng(1).integers(0, 256, (2, 40, 48, 3),
                                        dtype=np.uint8)[1])
  with pytest.raises(DataError, match="no split 'test'"):
    data_sources.TfdsSource('tiny_photos', 'test', data_dir)
  config = config_lib.data_defaults()
  config.update(dict(tfds_name='tiny_photos', tfds_data_dir=data_dir,
                     crop_size=32, num_workers=0))
  iterator = input_pipeline.create_iterator(
      config, 'train', global_batch_size=4, process_index=0, process_count=1)
  assert next(iterator)['target'].shape == (4, 32, 32, 3)


def test_several_folders_files_and_globs_make_one_corpus(tmp_path):
  for rel in ['a/x.jpg', 'a/sub/y.png', 'b/p1.jpg', 'b/p2.jpg', 'b/q.png',
              'c/single.jpg']:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'x')
  spec = (f'{tmp_path / "a"}, {tmp_path / "b" / "p*.jpg"},'
          f'{tmp_path / "c" / "single.jpg"}')
  train = data_sources.folder_source(spec, 'train', 0.0)
  expected = sorted(str(tmp_path / r) for r in
                    ['a/x.jpg', 'a/sub/y.png', 'b/p1.jpg', 'b/p2.jpg',
                     'c/single.jpg'])
  assert sorted(train.describe(i) for i in range(len(train))) == expected
  # The same as a list; the split hashes names within their entry, so it
  # does not depend on where the corpus is installed.
  as_list = data_sources.folder_source(
      [str(tmp_path / 'a'), str(tmp_path / 'b' / 'p*.jpg'),
       str(tmp_path / 'c' / 'single.jpg')], 'eval', 0.5)
  keys = ['x.jpg', 'sub/y.png', 'p1.jpg', 'p2.jpg',
          str(tmp_path / 'c' / 'single.jpg')]
  want = sum(data_sources.in_eval_split(k, 0.5) for k in keys)
  assert len(as_list.relpaths) == want
  with pytest.raises(DataError, match='matches no image'):
    data_sources.folder_source(str(tmp_path / 'b' / '*.gif'), 'train', 0.0)
  with pytest.raises(DataError, match='does not exist'):
    data_sources.folder_source(f'{tmp_path / "a"},{tmp_path / "nope"}',
                               'train', 0.0)


def test_files_sharing_a_name_are_split_independently(tmp_path):
  """Plasma installs nine different photos all named 2560x1600.jpg: the
  split must hash where each one is, not its bare name."""
  names = [f'w{i}/contents/images/2560x1600.jpg' for i in range(40)]
  for rel in names:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'x')
  files = [str(tmp_path / r) for r in names]
  held_out = data_sources.folder_source(files, 'eval', 0.5)
  assert 0 < len(held_out) < len(files)
  globbed = data_sources.folder_source(
      str(tmp_path / '*' / 'contents' / 'images' / '2560x1600.jpg'),
      'eval', 0.5)
  assert 0 < len(globbed) < len(files)
  # A glob's key is relative to its wildcard-free directory: moving the
  # corpus elsewhere keeps the same split.
  assert sorted(os.path.relpath(globbed.describe(i), tmp_path)
                for i in range(len(globbed))) == sorted(
      r for r in names if data_sources.in_eval_split(r, 0.5))


# ------------------------------------------ hostile files in a folder ---
def _jpeg_with_malformed_exif(pixels):
  """Orientation 6, and tag 0x0116 (a number) stored as ASCII: Pillow's
  ``exif_transpose`` raises struct.error on it (tests/image_io_test.py)."""
  ifd = (struct.pack('>2sHIH', b'MM', 42, 8, 2) +
         struct.pack('>HHI4s', 0x0112, 3, 1, b'\0\6\0\0') +
         struct.pack('>HHI4s', 0x0116, 2, 4, b'Cam\0') + struct.pack('>I', 0))
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='JPEG', exif=b'Exif\0\0' + ifd)
  return buffer.getvalue()


@pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='needs FIFOs')
def test_folder_listing_skips_devices_fifos_and_broken_links(tmp_path,
                                                             monkeypatch):
  skipped = []
  monkeypatch.setattr(data_sources, 'note_skipped',
                      lambda what, error: skipped.append(str(error)))
  (tmp_path / 'sub').mkdir()
  (tmp_path / 'sub' / 'good.png').write_bytes(b'x')
  os.symlink('/dev/zero', tmp_path / 'zero.jpg')
  os.mkfifo(tmp_path / 'sub' / 'pipe.png')
  os.symlink(tmp_path / 'gone.png', tmp_path / 'dead.jpg')
  os.symlink(tmp_path / 'sub' / 'good.png', tmp_path / 'link.png')
  assert data_sources.list_image_files(str(tmp_path)) == ['link.png',
                                                          'sub/good.png']
  assert sorted(skipped) == sorted(
      f'{tmp_path / name}: not a regular file (a device, FIFO, socket or '
      'broken link)' for name in ('dead.jpg', 'sub/pipe.png', 'zero.jpg'))
  pattern = data_sources.folder_source(str(tmp_path / '*.*'), 'train', 0.0)
  assert pattern.relpaths == [str(tmp_path / 'link.png')]


@pytest.mark.parametrize('short_side', [0, 40])
def test_example_maker_skips_hostile_files_and_goes_on(tmp_path, monkeypatch,
                                                       short_side):
  from scsnet_jax.data import pipeline as input_pipeline
  skipped = []
  monkeypatch.setattr(data_sources, 'note_skipped',
                      lambda what, error: skipped.append(what))
  pixels = np.random.default_rng(1).integers(0, 256, (48, 64, 3), np.uint8)
  (tmp_path / 'a_exif.jpg').write_bytes(_jpeg_with_malformed_exif(pixels))
  (tmp_path / 'b_postscript.jpg').write_bytes(
      b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n')
  (tmp_path / 'c_cut.png').write_bytes(_png_bytes(pixels)[:300])
  (tmp_path / 'd_good.png').write_bytes(_png_bytes(pixels))
  source = data_sources.folder_source(str(tmp_path), 'train', 0.0)
  maker = input_pipeline.ExampleMaker(
      source=source, shard_index=0, shard_count=1, shard_len=len(source),
      batch_size=1, training=False, seed=0, crop_size=32, max_upscale=4.0,
      scale=(4.0, 4.0), scale_choices=0, eval_scale=4.0, elastic_alpha=0.0,
      elastic_sigma=1.0, other_reference_prob=0.0,
      image_short_side=short_side)
  counts = [int(maker.map_with_index(i, i)['skipped_images'])
            for i in range(len(source))]
  assert counts == [0, 2, 1, 0]   # b and c skipped, to the next usable one
  assert sorted(set(skipped)) == [str(tmp_path / 'b_postscript.jpg'),
                                  str(tmp_path / 'c_cut.png')]
