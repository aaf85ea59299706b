"""One way to write a file so that a crash never leaves half of it.

Every output the package writes for a user (PNGs, JSON reports, converted
weights, a run's ``config.json``, export manifests) goes through here: the
bytes go to a temporary file in the destination's own folder (same file
system, so the rename is atomic), the file is fsynced, renamed over the
destination, and the folder is fsynced so the rename itself survives a
power cut. A reader sees the old file or the new one, never a mix; a
failed write leaves no temporary file behind.

URLs (``gs://...``) are written through ``etils.epath`` instead: object
stores replace an object whole, so there is nothing to rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any, Iterator, Union


def read_umask() -> int:
  """The umask, read without changing it (``/proc/self/status``).

  Setting and restoring it (``os.umask``) races with other threads that
  create files meanwhile; where /proc is missing, the one read here happens
  at import, before the package starts any thread.
  """
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('Umask:'):
          return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  umask = os.umask(0o022)
  os.umask(umask)
  return umask


_UMASK = read_umask()


def _fsync_folder(folder: str) -> None:
  try:
    fd = os.open(folder, os.O_RDONLY)
  except OSError:   # e.g. a platform without folder handles
    return
  try:
    os.fsync(fd)
  except OSError:   # some file systems refuse fsync on folders
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def open_atomic(path: Union[str, os.PathLike], mode: str = 'wb'
                ) -> Iterator[Any]:
  """``with open_atomic(path) as f:`` a file that appears at ``path`` only
  when the block ends without an exception (then fsynced and renamed, with
  the usual ``0o666 & ~umask`` permissions)."""
  if mode not in ('w', 'wb'):
    raise ValueError(f'open_atomic writes whole files: mode w or wb, not '
                     f'{mode!r}')
  path = os.fspath(path)
  if '://' in path:
    from etils import epath  # only for remote paths (gs://)
    with epath.Path(path).open(mode) as f:
      yield f
    return
  folder = os.path.dirname(os.path.abspath(path))
  handle, temp = tempfile.mkstemp(dir=folder, prefix='.tmp-',
                                  suffix='-' + os.path.basename(path)[-40:])
  try:
    with os.fdopen(handle, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.chmod(temp, 0o666 & ~_UMASK)   # mkstemp makes 0600 files
    os.replace(temp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(temp)
    raise
  _fsync_folder(folder)


def write_bytes(path: Union[str, os.PathLike], data: bytes) -> None:
  """``data`` at ``path``, all or nothing."""
  with open_atomic(path, 'wb') as f:
    f.write(data)


def write_text(path: Union[str, os.PathLike], text: str) -> None:
  """UTF-8 ``text`` at ``path``, all or nothing."""
  write_bytes(path, text.encode('utf-8'))


def write_json(path: Union[str, os.PathLike], value: Any, **dump_args) -> None:
  """``json.dumps(value, **dump_args)`` at ``path``, all or nothing (the
  value is encoded first, so an unencodable value writes nothing)."""
  write_text(path, json.dumps(value, **dump_args))
