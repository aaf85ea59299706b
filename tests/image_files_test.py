"""image_files: only regular files are read.

Devices, FIFOs and links to them must never be read (``/dev/zero`` is
endless, a FIFO blocks its reader).
"""

import os
import threading

import numpy as np
import pytest
from PIL import Image

from scsnet_jax import image_io
from scsnet_jax import image_files

needs_posix = pytest.mark.skipif(not hasattr(os, 'mkfifo') or
                                 not os.path.exists('/dev/zero'),
                                 reason='needs FIFOs and /dev/zero')


def _finishes(function, *args, seconds=10):
  """Runs ``function(*args)`` in a thread -> its result or exception; fails
  the test (not hangs it) if it has not finished within ``seconds``."""
  outcome = {}

  def target():
    try:
      outcome['result'] = function(*args)
    except BaseException as error:  # pylint: disable=broad-except
      outcome['error'] = error
  thread = threading.Thread(target=target, daemon=True)
  thread.start()
  thread.join(seconds)
  assert not thread.is_alive(), f'{function.__name__} blocked'
  return outcome


@pytest.fixture
def odd_folder(tmp_path):
  """good.png, zero.jpg -> /dev/zero, pipe.png (a FIFO), dead.jpg -> nothing."""
  Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / 'good.png')
  os.symlink('/dev/zero', tmp_path / 'zero.jpg')
  os.mkfifo(tmp_path / 'pipe.png')
  os.symlink(tmp_path / 'missing.png', tmp_path / 'dead.jpg')
  return tmp_path


@needs_posix
def test_folder_inputs_report_devices_and_fifos(odd_folder):
  files, errors = image_files.collect_inputs([str(odd_folder)])
  assert files == [str(odd_folder / 'good.png')]
  assert sorted(errors) == sorted(
      f'{odd_folder / name}: not a regular file (a device, FIFO, socket or '
      'broken link); skipped' for name in ('dead.jpg', 'pipe.png', 'zero.jpg'))


@needs_posix
@pytest.mark.parametrize('name', ['zero.jpg', 'pipe.png'])
def test_named_device_or_fifo_is_one_error_not_a_hang(odd_folder, name):
  path = str(odd_folder / name)
  for reader in (image_io.read_image_and_alpha, image_io.read_image,
                 image_io.read_file_bytes):
    outcome = _finishes(reader, path)
    assert isinstance(outcome.get('error'), image_io.ImageDecodeError), outcome
    assert str(outcome['error']) == (
        f'{path}: not a regular file (a folder, device, FIFO or socket); only '
        'regular files are read')


def test_reads_stop_at_the_byte_limit(tmp_path, monkeypatch):
  path = tmp_path / 'big.png'
  path.write_bytes(b'\x89PNG' + b'\0' * 96)
  with pytest.raises(image_io.ImageDecodeError,
                     match='big.png: file has 100 bytes, more than the limit '
                     'of 99'):
    image_io.read_file_bytes(path, max_bytes=99)
  assert len(image_io.read_file_bytes(path, max_bytes=100)) == 100


def test_max_pixels_is_checked_from_the_header(tmp_path):
  Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / 'a.png')
  with pytest.raises(image_io.ImageTooLargeError, match='40x30 pixels'):
    image_io.read_image_and_alpha(tmp_path / 'a.png', max_pixels=1199)
  pixels, alpha = image_io.read_image_and_alpha(tmp_path / 'a.png',
                                                   max_pixels=1200)
  assert pixels.shape == (30, 40, 3) and alpha is None


def test_alpha_gets_the_orientation_of_the_colour(tmp_path):
  rng = np.random.default_rng(3)
  rgba = rng.integers(0, 256, (6, 9, 4), np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(rgba).save(tmp_path / 'a.png', exif=exif)
  pixels, alpha = image_io.read_image_and_alpha(tmp_path / 'a.png')
  np.testing.assert_array_equal(pixels, np.rot90(rgba[..., :3], k=-1))
  np.testing.assert_array_equal(alpha, np.rot90(rgba[..., 3], k=-1))


def test_huge_header_is_refused_before_any_pixel(tmp_path):
  """A 100-byte PNG claiming 20000 x 10000 pixels (PIL's own limit) and one
  claiming 9000 x 9000 (ours, lowered here): both ImageTooLargeError."""
  import struct
  import zlib

  def png(width, height):
    def chunk(kind, body):
      return (struct.pack('>I', len(body)) + kind + body +
              struct.pack('>I', zlib.crc32(kind + body)))
    return (b'\x89PNG\r\n\x1a\n' +
            chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0,
                                       0)) +
            chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunk(b'IEND', b''))
  (tmp_path / 'pil.png').write_bytes(png(20000, 10000))
  (tmp_path / 'ours.png').write_bytes(png(9000, 9000))
  with pytest.raises(image_io.ImageTooLargeError, match='^.*pil.png: Image '
                     'size'):
    image_io.read_image_and_alpha(tmp_path / 'pil.png')
  with pytest.raises(image_io.ImageTooLargeError,
                     match=r'ours.png: 9000x9000 pixels .*decompression bomb'):
    image_io.read_image_and_alpha(tmp_path / 'ours.png',
                                     max_pixels=80_000_000)


def test_folder_references_are_not_held_between_inputs(tmp_path):
  """A folder of references is read per input (memory does not grow with
  the folder); a single reference file is read once and kept."""
  folder = tmp_path / 'refs'
  folder.mkdir()
  for name, value in (('a.png', 10), ('b.png', 200)):
    Image.fromarray(np.full((4, 5, 3), value, np.uint8)).save(folder / name)
  matcher = image_files.ReferenceMatcher(str(folder))
  np.testing.assert_array_equal(matcher.load('x/a.jpg'), 10)
  np.testing.assert_array_equal(matcher.load('x/b.jpg'), 200)
  assert not matcher._cache
  single = image_files.ReferenceMatcher(str(folder / 'a.png'))
  assert single.load('x/q.jpg') is single.load('x/r.jpg')


# ------------------------------------------- issue 20: one alpha helper ---
def test_attach_alpha_resizes_the_inputs_alpha_bicubically_to_the_output():
  rng = np.random.default_rng(5)
  pixels = rng.integers(0, 256, (12, 20, 3), np.uint8)
  assert image_files.attach_alpha(pixels, None, (12, 20)) is pixels
  alpha = rng.integers(0, 256, (12, 20), np.uint8)
  same = image_files.attach_alpha(pixels, alpha, (12, 20))
  np.testing.assert_array_equal(same, np.dstack([pixels, alpha]))
  small = rng.integers(0, 256, (5, 8), np.uint8)
  rgba = image_files.attach_alpha(pixels, small, (12, 20))
  assert rgba.shape == (12, 20, 4) and rgba.dtype == np.uint8
  np.testing.assert_array_equal(rgba[..., :3], pixels)
  # PIL's bicubic, computed in float and clipped here, is the reference.
  want = np.asarray(Image.fromarray(small.astype(np.float32), mode='F').resize(
      (20, 12), Image.Resampling.BICUBIC))
  assert np.abs(rgba[..., 3].astype(int) -
                np.clip(np.round(want), 0, 255)).max() <= 1
