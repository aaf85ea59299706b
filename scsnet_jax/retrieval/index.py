"""A folder of colour photos, described once and cached on disk.

``build_index(folder, embedder)`` lists the folder's image files (recursive,
sorted, hidden names skipped), reuses every cached entry it can and embeds
only the rest, then writes the cache and returns a ``GalleryIndex``:

- the cache is one ``.npz`` per folder (``cache_path``: under
  ``$XDG_CACHE_HOME/scsnet_jax/galleries/``, named by the folder's real
  path's hash), holding names, SHA-256 content hashes, sizes, mtimes and the
  float16 descriptors; it is written atomically (``atomic``), without pickle;
- an entry is reused when its file's (name, size, mtime) are unchanged (no
  read), or its content hash is already known (a renamed or copied photo):
  so an unchanged folder is not re-read, and added, removed or edited
  files update incrementally;
- a cache that is corrupt, foreign (another format, another feature model:
  ``Embedder.version``), inconsistent or implausibly large is ignored with a
  warning and rebuilt: it is never trusted blindly;
- a bad photo (undecodable, too large, not a regular file) is one
  ``PATH: problem`` line through ``on_error`` and is skipped;
- memory is bounded: files are read one at a time and embedded in batches
  of ``embedder.batch_size``; only the descriptors are kept (8.4 KB a photo
  in float16: 84 MB for 10,000), and the cache is saved every
  ``save_every`` new photos so an interrupted run resumes.
Progress goes to ``on_progress(done, total)``; the caller draws it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import zipfile
from typing import Callable, Optional

import numpy as np

from scsnet_jax import atomic, image_io
from scsnet_jax.errors import UserError, first_line
from scsnet_jax.retrieval import features as features_lib
from scsnet_jax.retrieval.features import Embedder, Features

log = logging.getLogger(__name__)

FORMAT = 'scsnet_jax.gallery_index/1'
_ARRAYS = ('names', 'hashes', 'sizes', 'mtimes', 'pooled', 'grid', 'hist')
_DIMS = {'pooled': features_lib.POOLED_DIM, 'grid': features_lib.GRID_DIM,
         'hist': features_lib.HIST_BINS}
# A cache larger than this per entry (plus slack) is refused unread.
_MAX_BYTES_PER_ENTRY = 16 * 1024


@dataclasses.dataclass
class GalleryIndex:
  """Descriptors of a folder's photos, rows in ``names`` order (sorted
  relative paths, so ties broken by row are broken by file name)."""
  folder: str
  names: list[str]
  hashes: list[str]
  features: Features       # float16 arrays, N rows
  built: int = 0           # photos embedded by this build (0: all cached)
  failed: int = 0          # bad files skipped

  def __len__(self):
    return len(self.names)

  def path(self, row: int) -> str:
    return os.path.join(self.folder, self.names[row])


def default_cache_dir() -> str:
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'scsnet_jax', 'galleries')


def cache_path(folder: str, cache_dir: Optional[str] = None) -> str:
  """The cache file of ``folder`` (its real path's SHA-256 names it)."""
  key = hashlib.sha256(os.path.realpath(folder).encode()).hexdigest()[:24]
  return os.path.join(cache_dir or default_cache_dir(), f'{key}.npz')


def list_photos(folder: str) -> tuple[list[str], list[str]]:
  """Image files under ``folder`` -> (sorted relative paths, error lines);
  hidden files and folders are skipped, devices/FIFOs reported."""
  names, errors = [], []
  for root, dirs, files in os.walk(folder):
    dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
    for name in sorted(files):
      if name.startswith('.') or not name.lower().endswith(
          image_io.IMAGE_EXTENSIONS):
        continue
      path = os.path.join(root, name)
      if image_io.is_regular_file(path):
        names.append(os.path.relpath(path, folder))
      else:
        errors.append(f'{path}: not a regular file; skipped')
  return sorted(names), errors


# ------------------------------------------------------------------ cache ---
def _read_cache(path: str, version: str) -> Optional[dict]:
  """The cached entries {name: (hash, size, mtime, row arrays)}, or None
  (with a warning) if the file is absent, corrupt or foreign."""
  if not os.path.exists(path):
    return None
  try:
    with zipfile.ZipFile(path) as archive:
      declared = sum(info.file_size for info in archive.infolist())
    limit = (os.path.getsize(path) + (1 << 20)) * 4
    if declared > limit:
      raise ValueError(f'expands to {declared} bytes (a zip bomb?)')
    with np.load(path, allow_pickle=False) as data:
      if str(data['format']) != FORMAT or str(data['model']) != version:
        raise ValueError(f'written for {str(data["format"])!r} / '
                         f'{str(data["model"])!r}, need {FORMAT!r} / '
                         f'{version!r}')
      arrays = {key: data[key] for key in _ARRAYS}
    count = len(arrays['names'])
    if count * _MAX_BYTES_PER_ENTRY + (1 << 20) < declared:
      raise ValueError('larger than its entries need')
    for key in _ARRAYS:
      if arrays[key].shape[:1] != (count,):
        raise ValueError(f'{key} has {arrays[key].shape}, expected {count} '
                         'rows')
    for key, dim in _DIMS.items():
      if arrays[key].shape != (count, dim) or arrays[key].dtype != np.float16:
        raise ValueError(f'{key} is {arrays[key].dtype} {arrays[key].shape}')
      if not np.all(np.isfinite(arrays[key])):
        raise ValueError(f'{key} holds non-finite values')
  except Exception as error:  # pylint: disable=broad-except
    # np.load / zipfile raise many types for damaged files: rebuild.
    log.warning('gallery cache %s is unusable (%s); rebuilding it', path,
                first_line(error))
    return None
  entries = {}
  for row, name in enumerate(arrays['names']):
    entries[str(name)] = (str(arrays['hashes'][row]), int(arrays['sizes'][row]),
                          int(arrays['mtimes'][row]),
                          tuple(arrays[key][row] for key in _DIMS))
  return entries


def _write_cache(path: str, version: str, entries: dict) -> None:
  names = sorted(entries)
  rows = [entries[name] for name in names]
  arrays = {
      'format': np.array(FORMAT), 'model': np.array(version),
      'names': np.array(names, dtype=str),
      'hashes': np.array([r[0] for r in rows], dtype=str),
      'sizes': np.array([r[1] for r in rows], np.int64),
      'mtimes': np.array([r[2] for r in rows], np.int64),
  }
  for i, (key, dim) in enumerate(_DIMS.items()):
    arrays[key] = (np.stack([r[3][i] for r in rows]).astype(np.float16)
                   if rows else np.zeros((0, dim), np.float16))
  if not names:   # np.array([], str) is float64: keep the dtype a string
    arrays['names'] = np.zeros((0,), '<U1')
    arrays['hashes'] = np.zeros((0,), '<U1')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with atomic.open_atomic(path) as f:
    np.savez(f, **arrays)


# ------------------------------------------------------------------ build ---
def build_index(folder: str, embedder: Embedder, *,
                cache_dir: Optional[str] = None,
                on_progress: Optional[Callable[[int, int], None]] = None,
                on_error: Optional[Callable[[str], None]] = None,
                save_every: int = 1000) -> GalleryIndex:
  """Indexes ``folder`` (see the module docstring); raises UserError if it
  is not a folder. Bad files go to ``on_error`` (default: logged)."""
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise UserError(f'{folder}: reference gallery is not a folder')
  report = on_error or (lambda line: log.warning('%s', line))
  names, errors = list_photos(folder)
  for line in errors:
    report(line)
  path = cache_path(folder, cache_dir)
  cached = _read_cache(path, embedder.version) or {}
  by_hash = {entry[0]: entry[3] for entry in cached.values()}
  entries, pending, failed, built = {}, [], len(errors), 0

  def flush():
    nonlocal built
    if not pending:
      return
    described = embedder.embed_light(np.stack([p[4] for p in pending]))
    for row, (name, digest, size, mtime, _) in enumerate(pending):
      arrays = tuple(getattr(described, key)[row].astype(np.float16)
                     for key in _DIMS)
      entries[name] = (digest, size, mtime, arrays)
      by_hash[digest] = arrays
    built += len(pending)
    if built // save_every != (built - len(pending)) // save_every:
      _write_cache(path, embedder.version, entries)
    pending.clear()

  for done, name in enumerate(names, 1):
    full = os.path.join(folder, name)
    try:
      stat = os.stat(full)
      old = cached.get(name)
      if old is not None and old[1:3] == (stat.st_size, stat.st_mtime_ns):
        entries[name] = old
      else:
        data = image_io.read_file_bytes(full)
        digest = hashlib.sha256(data).hexdigest()
        if digest in by_hash:
          entries[name] = (digest, stat.st_size, stat.st_mtime_ns,
                           by_hash[digest])
        else:
          pixels = image_io.decode_image(data, name=full,
                                         draft_size=features_lib.DRAFT_SIZE)
          del data
          pending.append((name, digest, stat.st_size, stat.st_mtime_ns,
                          features_lib.lightness(pixels)))
          if len(pending) >= embedder.batch_size:
            flush()
    except (OSError, UserError) as error:   # ImageDecodeError is a UserError
      message = first_line(error)
      report(message if message.startswith(full) else f'{full}: {message}')
      failed += 1
    if on_progress is not None:
      on_progress(done, len(names))
  flush()
  dirty = entries.keys() != cached.keys() or any(
      entries[name][:3] != cached[name][:3] for name in entries)
  if dirty:
    _write_cache(path, embedder.version, entries)
  ordered = sorted(entries)
  rows = [entries[name] for name in ordered]
  stacked = [np.stack([r[3][i] for r in rows]) if rows else
             np.zeros((0, dim), np.float16)
             for i, dim in enumerate(_DIMS.values())]
  return GalleryIndex(folder=folder, names=ordered,
                      hashes=[r[0] for r in rows],
                      features=Features(*stacked), built=built, failed=failed)
