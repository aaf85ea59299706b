"""Generator parameters as one compact ``.npz`` (the starter weights' form).

An export folder's ``params`` is an orbax checkpoint folder, or, for weights
shipped inside the repository, one ``.npz`` file: every leaf of the pure-dict
parameter tree under its '/'-joined path, stored as float16 (half the size
of float32; the parameters are O(1e-3..1), well inside float16's range and
precision, and ``tests/export/params_file_test.py`` bounds what storage
changes in the output). Loading casts back to float32 and checks the file
against the generator's own tree: same keys, same shapes, finite values.
``np.load(allow_pickle=False)`` reads it: an untrusted file can hold no
code, and a regular file of at most ``MAX_BYTES`` is all that is read.
"""

from __future__ import annotations

import os
import stat
import zipfile
from typing import Any

import numpy as np

from scsnet_jax import atomic
from scsnet_jax.hashing import file_sha256
from scsnet_jax.errors import UserError

STORAGE_DTYPES = ('float16', 'float32')
MAX_BYTES = 256 << 20    # 15.2M parameters are 30 MB as float16


def flatten(params: dict, prefix: str = '') -> dict[str, Any]:
  """Nested dict -> {'a/b/c': leaf}."""
  flat = {}
  for key, value in params.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(flatten(value, name + '/'))
    else:
      flat[name] = value
  return flat


def save_params(params: dict, path: str, dtype: str = 'float16') -> str:
  """Writes ``params`` (pure dict) to ``path`` atomically; returns the
  file's SHA-256."""
  if dtype not in STORAGE_DTYPES:
    raise ValueError(f'storage dtype must be one of {STORAGE_DTYPES}')
  flat = {k: np.asarray(v).astype(dtype) for k, v in flatten(params).items()}
  with atomic.open_atomic(path) as f:
    np.savez(f, **flat)
  return file_sha256(path)




def _check_file(path: str) -> None:
  try:
    info = os.stat(path)
  except OSError as e:
    raise UserError(f'{path}: cannot read the parameters ({e.strerror})'
                    ) from None
  if not stat.S_ISREG(info.st_mode):
    raise UserError(f'{path}: the parameters are not a regular file')
  if info.st_size > MAX_BYTES:
    raise UserError(f'{path}: {info.st_size} bytes of parameters, more than '
                    f'the {MAX_BYTES >> 20} MiB a generator needs')


NPY_HEADER_SLACK = 4096   # an .npy header is 128 bytes or a little more


def _check_member_sizes(path: str, wanted: dict) -> None:
  """Before anything is decompressed: the archive holds one member per
  parameter, none larger than its parameter as float32 (a small file must
  not expand into gigabytes)."""
  try:
    with zipfile.ZipFile(path) as archive:
      members = archive.infolist()
      if len(members) > len(wanted):
        raise UserError(f'{path}: {len(members)} entries, more than the '
                        f'{len(wanted)} parameters of the generator')
      for member in members:
        spec = wanted.get(member.filename.removesuffix('.npy'))
        limit = (4 * int(np.prod(spec.shape)) if spec is not None else 0
                 ) + NPY_HEADER_SLACK
        if member.file_size > limit:
          raise UserError(f'{path}: entry {member.filename[:60]!r} expands '
                          f'to {member.file_size} bytes, more than its '
                          'parameter needs')
  except zipfile.BadZipFile as error:
    raise UserError(f'{path}: not a parameters .npz ({error})') from None


def load_params(path: str, like: dict, expected_sha256: str | None = None
                ) -> dict:
  """The float32 parameters in ``path``, as a pure dict shaped like
  ``like`` (a tree of arrays or ShapeDtypeStructs); a one-line UserError
  for a damaged, foreign or tampered file."""
  _check_file(path)
  if expected_sha256 and file_sha256(path) != expected_sha256:
    raise UserError(f'{path}: SHA-256 differs from the one recorded '
                    'beside it (damaged or replaced file)')
  wanted = flatten(like)
  _check_member_sizes(path, wanted)
  try:
    with np.load(path, allow_pickle=False) as data:
      names = set(data.files)
      if names != set(wanted):
        missing, extra = sorted(set(wanted) - names), sorted(names - set(wanted))
        raise UserError(f'{path}: not this generator\'s parameters '
                        f'({len(missing)} missing, e.g. {missing[:2]}; '
                        f'{len(extra)} unknown, e.g. {extra[:2]})')
      flat = {}
      for name, spec in wanted.items():
        value = data[name]
        if value.shape != tuple(spec.shape) or value.dtype.kind != 'f':
          raise UserError(f'{path}: {name} is {value.dtype} {value.shape}, '
                          f'expected a float array {tuple(spec.shape)}')
        value = value.astype(np.float32)
        if not np.all(np.isfinite(value)):
          raise UserError(f'{path}: {name} holds non-finite values')
        flat[name] = value
  except (OSError, ValueError, zipfile.BadZipFile) as error:
    raise UserError(f'{path}: not a readable parameters .npz '
                    f'({type(error).__name__}: {error})') from None

  def rebuild(node, prefix=''):
    return {key: (rebuild(value, f'{prefix}{key}/') if isinstance(value, dict)
                  else flat[f'{prefix}{key}'])
            for key, value in node.items()}
  return rebuild(like)
