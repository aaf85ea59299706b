"""Random-access sources of HR colour photos: TFDS, image folders, the demo.

Every source is indexable and picklable (grain sends it to spawned workers)
and hands out encoded bytes, decoded by ``image_io`` into (H, W, 3) uint8, so
all sources share one safe decoder. ``make_source(data_config, split)`` picks
one from ``config.data``; ``split`` is 'train' or 'eval'.

- ``tfds``: any TFDS image dataset prepared in ArrayRecord format, read with
  ``tfds.data_source`` (images left encoded with ``SkipDecoding``).
- ``folder``: JPEG/PNG/WebP files under a directory (recursive), or under
  several comma-separated directories, files and globs; a file is in 'eval'
  when a stable hash of its path relative to its entry (a file entry: its
  path as written) falls below ``eval_fraction``, so adding files never
  moves others between splits.
- ``demo``: colour photographs bundled inside the scikit-image wheel (no
  network); 'eval' holds chelsea and coffee, 'train' the other seven.

The optional "ImageNet-C" quality filter is in ``quality_filter``.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import threading

import numpy as np

from scsnet_jax.errors import UserError
from scsnet_jax import image_io

# Bundled in skimage/data/ of the scikit-image wheel (checked with 0.26):
# loading them never touches the network (unlike pooch-fetched images).
DEMO_FILES = {
    'astronaut': 'astronaut.png', 'chelsea': 'chelsea.png',
    'coffee': 'coffee.png', 'rocket': 'rocket.jpg',
    'hubble_deep_field': 'hubble_deep_field.jpg',
    'immunohistochemistry': 'ihc.png', 'retina': 'retina.jpg',
    'motorcycle_left': 'motorcycle_left.png',
    'motorcycle_right': 'motorcycle_right.png',
}
DEMO_EVAL_NAMES = ('chelsea', 'coffee')
EVAL_SPLIT_NAMES = ('eval', 'validation', 'test')

_logged_bad_paths: set[str] = set()
_skip_lock = threading.Lock()


class DataError(UserError):
  """A data source that cannot feed training (raised before training starts)."""


def note_skipped(description: str, error: Exception) -> None:
  """Logs an unusable image, each path once per process (the batches
  count the skips: ``skipped_images``)."""
  with _skip_lock:  # grain's reader threads call this concurrently
    first_time = description not in _logged_bad_paths
    _logged_bad_paths.add(description)
  if first_time:
    logging.warning('skipping unusable image %s', error)


class FolderSource:
  """Image files under ``root``; ``relpaths`` are '/'-separated, sorted."""

  def __init__(self, root: str, relpaths: list[str]):
    self.root = root
    self.relpaths = list(relpaths)

  def __len__(self) -> int:
    return len(self.relpaths)

  def describe(self, index: int) -> str:
    return os.path.join(self.root, self.relpaths[index])

  def encoded(self, index: int) -> bytes:
    """The file's bytes (regular files only, at most the byte limit)."""
    return image_io.read_file_bytes(self.describe(index))

  def load(self, index: int) -> np.ndarray:
    return image_io.read_image(self.describe(index))

  def fingerprint(self) -> str:
    joined = '\n'.join(self.relpaths).encode()
    return f'folder:{os.path.abspath(self.root)}:' + hashlib.sha1(
        joined).hexdigest()


def list_image_files(root: str) -> list[str]:
  """Sorted relative paths of image files under ``root`` (recursive; links
  to folders are not followed, as ``os.walk``).

  Only regular files (or links to them) count: a device, FIFO, socket or
  broken link with an image name is skipped and logged (``note_skipped``),
  so ``zero.jpg -> /dev/zero`` is never read and a FIFO never blocks a
  worker.
  """
  if not os.path.isdir(root):
    raise DataError(f'{root}: image folder does not exist (data.folder_path)')
  found, pending = [], [root]
  while pending:
    directory = pending.pop()
    try:
      entries = list(os.scandir(directory))
    except OSError as error:   # unreadable subfolder: as os.walk, skipped
      note_skipped(directory, image_io.ImageDecodeError(
          f'{directory}: cannot list folder ({error.strerror or error})'))
      continue
    for entry in entries:
      if entry.is_dir(follow_symlinks=False):
        pending.append(entry.path)
      elif entry.name.lower().endswith(image_io.IMAGE_EXTENSIONS):
        if entry.is_file():   # regular (or a link to one); no extra stat
          found.append(os.path.relpath(entry.path, root))
        else:
          note_skipped(entry.path, image_io.ImageDecodeError(
              f'{entry.path}: not a regular file (a device, FIFO, socket or '
              'broken link)'))
  return sorted(p.replace(os.sep, '/') for p in found)


def in_eval_split(relpath: str, eval_fraction: float) -> bool:
  """Stable split: the first 8 bytes of sha1(relpath) as a fraction in [0, 1)."""
  digest = hashlib.sha1(relpath.encode('utf-8')).digest()
  return int.from_bytes(digest[:8], 'big') / 2.0**64 < eval_fraction


def folder_entries(path_spec) -> list[str]:
  """``data.folder_path`` -> its entries: a list/tuple, or a string of
  comma-separated entries; each a directory, an image file or a glob."""
  if isinstance(path_spec, (list, tuple)):
    entries = [str(e) for e in path_spec]
  else:
    entries = str(path_spec).split(',')
  return [os.path.expanduser(e.strip()) for e in entries if e.strip()]


def _literal_dir(pattern: str) -> str:
  """The wildcard-free directory a glob pattern starts from."""
  parts = pattern.split(os.sep)
  for i, part in enumerate(parts):
    if any(ch in part for ch in '*?['):
      return os.sep.join(parts[:i]) or os.sep
  return os.path.dirname(pattern)


def _entry_files(entry: str) -> list[tuple[str, str]]:
  """(split key, absolute path) of the images one entry names.

  The key (what the eval split hashes) is what the config itself names, so
  a corpus keeps its split on every machine and distinct files land
  independently even when they share a file name (Plasma's nine
  ``2560x1600.jpg``): a directory's files and a glob's matches by their
  path relative to the entry's wildcard-free directory, a file entry by
  its path as written.
  """
  if os.path.isdir(entry):
    return [(rel, os.path.abspath(os.path.join(entry, rel)))
            for rel in list_image_files(entry)]
  if any(ch in entry for ch in '*?['):
    matches = sorted(p for p in glob.glob(entry)
                     if image_io.is_regular_file(p) and
                     p.lower().endswith(image_io.IMAGE_EXTENSIONS))
    if not matches:
      raise DataError(f'{entry}: the pattern matches no image file '
                      '(data.folder_path)')
    base = _literal_dir(entry)
    return [(os.path.relpath(p, base), os.path.abspath(p)) for p in matches]
  if os.path.isfile(entry):
    return [(os.path.normpath(entry), os.path.abspath(entry))]
  raise DataError(f'{entry}: image folder does not exist (data.folder_path)')


def folder_source(path_spec, split: str, eval_fraction: float) -> FolderSource:
  """Images of one split from one folder, or several folders/globs/files.

  ``path_spec`` as in ``folder_entries``. One directory keeps paths
  relative to it; several entries give absolute paths (``root`` '').
  """
  entries = folder_entries(path_spec)
  if not entries:
    raise DataError('data.source=folder needs data.folder_path')
  if len(entries) == 1 and os.path.isdir(entries[0]):
    root = entries[0]
    keyed = [(p, p) for p in list_image_files(root)]
  else:
    root = ''
    found = {}
    for entry in entries:
      for key, path in _entry_files(entry):
        found.setdefault(path, key)
    keyed = sorted((key, path) for path, key in found.items())
  if not keyed:
    raise DataError(f'{",".join(entries)}: no .jpg/.jpeg/.png/.webp files found')
  want_eval = split in EVAL_SPLIT_NAMES
  chosen = [p for key, p in keyed
            if in_eval_split(key, eval_fraction) == want_eval]
  if not chosen:
    raise DataError(f'{",".join(entries)}: the {split!r} split is empty '
                    f'({len(keyed)} files, data.eval_fraction={eval_fraction})')
  return FolderSource(root, chosen)


class DemoSource:
  """The bundled scikit-image photographs, encoded bytes held in memory."""

  def __init__(self, split: str, names=None):
    """``split`` 'train' or 'eval'; or ``names``, a chosen list of photos."""
    # scikit-image: the train extra, and only the demo source needs it.
    import skimage  # pylint: disable=g-import-not-at-top
    data_dir = os.path.join(os.path.dirname(skimage.__file__), 'data')
    want_eval = split in EVAL_SPLIT_NAMES
    if names is not None:
      self.names = list(names)
    else:
      self.names = [n for n in DEMO_FILES
                    if (n in DEMO_EVAL_NAMES) == want_eval]
    self._files = []
    for name in self.names:
      path = os.path.join(data_dir, DEMO_FILES[name])
      if not os.path.isfile(path):
        raise DataError(f'{path}: demo photo {name!r} is missing from this '
                        'scikit-image installation')
      with open(path, 'rb') as f:
        self._files.append(f.read())

  def __len__(self) -> int:
    return len(self.names)

  def describe(self, index: int) -> str:
    return f'skimage.data:{self.names[index]}'

  def encoded(self, index: int) -> bytes:
    return self._files[index]

  def load(self, index: int) -> np.ndarray:
    return image_io.decode_image(self._files[index], name=self.describe(index))

  def fingerprint(self) -> str:
    return 'demo:' + ','.join(self.names)


def _not_prepared_message(name, split, data_dir, problem):
  return (
      f'TFDS dataset {name!r} (split {split!r}, data_dir {data_dir!r}) '
      f'{problem}. Prepare it once in ArrayRecord format: put the manual '
      'downloads (for imagenet2012: ILSVRC2012_img_train.tar and '
      'ILSVRC2012_img_val.tar) in <data_dir>/downloads/manual/, then run '
      f'`tfds build {name} --data_dir=<data_dir> --file_format=array_record`. '
      'Or train from a folder of images (--config.data.source=folder '
      '--config.data.folder_path=...) or the bundled photos (configs/demo.py).')


class TfdsSource:
  """A TFDS split through ``tfds.data_source`` (ArrayRecord), images encoded."""

  def __init__(self, name: str, split: str, data_dir: str | None,
               image_key: str = 'image'):
    # tfds (and TF): the train extra, and only the tfds source needs it.
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self.name, self.split, self.image_key = name, split, image_key
    data_dir = data_dir or None
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # DatasetNotFoundError and friends
      first = str(error).splitlines()[0] if str(error) else repr(error)
      raise DataError(f'TFDS dataset {name!r}: {first}') from None
    if not builder.is_prepared():
      raise DataError(_not_prepared_message(name, split, data_dir,
                                            'is not prepared'))
    if image_key not in builder.info.features:
      raise DataError(f'TFDS dataset {name!r} has no feature {image_key!r} '
                      f'(features: {list(builder.info.features)}); set '
                      'data.tfds_image_key')
    available = list(builder.info.splits)
    if split.split('[')[0] not in available:
      raise DataError(f'TFDS dataset {name!r} has no split {split!r} '
                      f'(available: {available})')
    try:
      self._records = tfds.data_source(
          name, split=split, data_dir=data_dir, download=False,
          decoders={image_key: tfds.decode.SkipDecoding()})
    except Exception as error:  # wrong split, TFRecord-only preparation, ...
      first = str(error).splitlines()[0] if str(error) else repr(error)
      raise DataError(_not_prepared_message(
          name, split, data_dir, f'cannot be read as ArrayRecord ({first})')
                     ) from None

  def __len__(self) -> int:
    return len(self._records)

  def describe(self, index: int) -> str:
    return f'tfds:{self.name}/{self.split}[{index}]'

  def encoded(self, index: int) -> bytes:
    return self._records[index][self.image_key]

  def load(self, index: int) -> np.ndarray:
    return image_io.decode_image(self.encoded(index),
                                 name=self.describe(index))

  def fingerprint(self) -> str:
    return f'tfds:{self.name}:{self.split}:{len(self)}'


def make_source(data_config, split: str):
  """``config.data`` -> the source of one split ('train' or 'eval')."""
  kind = data_config.source
  if kind == 'tfds':
    tfds_split = (data_config.tfds_eval_split if split in EVAL_SPLIT_NAMES
                  else data_config.tfds_train_split)
    source = TfdsSource(data_config.tfds_name, tfds_split,
                        data_config.tfds_data_dir, data_config.tfds_image_key)
  elif kind == 'folder':
    if not data_config.folder_path:
      raise DataError('data.source=folder needs data.folder_path')
    source = folder_source(data_config.folder_path, split,
                           data_config.eval_fraction)
  elif kind == 'demo':
    source = DemoSource(split)
  else:
    raise DataError(f"data.source must be 'tfds', 'folder' or 'demo', got "
                    f'{kind!r}')
  if len(source) == 0:
    raise DataError(f'{source.fingerprint()}: the {split!r} split is empty')
  return source
