"""Reads PyTorch ``.pth`` state dicts into numpy without importing torch.

Public weight files (torchvision's VGG16, pytorch-fid's InceptionV3) are
pickles, and unpickling runs whatever callables the file names. This reader
uses an allow-listed ``pickle.Unpickler`` (``torch_pickle``): the only globals
a file may name are ``collections.OrderedDict``, torch's tensor/parameter
rebuild functions and torch's storage classes, each replaced by an inert
stand-in, so a hostile file is refused before anything in it runs.

Both of torch's on-disk formats are read:
- zip (torch >= 1.6): ``<name>/data.pkl`` + one ``<name>/data/<key>`` entry of
  raw little-endian bytes per storage;
- legacy (torch < 1.6, e.g. torchvision's 2017 ``vgg16-397923af.pth``): a raw
  stream of pickles (magic number, protocol 1001, sys info, the object, the
  sorted storage keys) followed, per storage, by an int64 element count and
  its raw bytes.
Sizes are checked before anything is allocated, so zip bombs and absurd
shapes are refused: storages and tensors must fit a byte budget of at most
``torch_limits.BUDGET_FACTOR`` x the file size (+1 MiB, and never more than
``max_bytes``), a tensor may not read more elements than its storage holds
(no stride-0 broadcasts), and pickles are opcode-scanned for size, object
count and memo indices first, and a zip's entry count is checked against
the storages its pickle names (``torch_limits``). A file without tensors is
an error: every caller expects weights. Every problem is one
``CheckpointFormatError`` line naming the file.
"""

from __future__ import annotations

import argparse
import os
import zipfile
import zlib

import numpy as np

from scsnet_jax.pretrained import torch_limits, torch_pickle
# UnsafeCheckpointError is raised through torch_pickle; callers catch it here.
from scsnet_jax.pretrained.torch_limits import (  # noqa: F401
    CheckpointFormatError, UnsafeCheckpointError, short_repr)

DEFAULT_MAX_BYTES = 4 << 30  # 4 GiB: VGG16 is 0.55 GB, pytorch-fid's 0.1 GB.
_MAX_PICKLE_BYTES = torch_limits.MAX_PICKLE_BYTES
LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL_VERSION = 1001

# What zipfile raises for a damaged archive: bad CRC or headers
# (BadZipFile), bad deflate data (zlib.error, EOFError), an encrypted or
# unknown-method entry (RuntimeError, NotImplementedError).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError,
               NotImplementedError)


def _read_zip(path: str, max_bytes: int):
  entries = torch_limits.zip_entry_count(path)   # before ZipFile lists them
  try:
    with zipfile.ZipFile(path) as archive:
      return _read_zip_archive(path, archive, max_bytes, entries)
  except _ZIP_ERRORS as error:
    raise CheckpointFormatError(
        f'{path}: damaged zip archive ({type(error).__name__}: '
        f'{str(error)[:200]})') from None


def _read_zip_archive(path: str, archive: zipfile.ZipFile, max_bytes: int,
                      entries: int):
  infos = archive.infolist()
  total = sum(info.file_size for info in infos)
  if total > max_bytes:
    raise CheckpointFormatError(
        f'{path}: archive expands to {total} bytes, over the {max_bytes}-byte '
        'limit (a zip bomb, or raise max_bytes if the file is trusted)')
  pickles = [i.filename for i in infos if i.filename.endswith('data.pkl')
             and i.filename.count('/') == 1]
  if len(pickles) != 1:
    raise CheckpointFormatError(f'{path}: expected one <name>/data.pkl in '
                                f'the archive, found {short_repr(pickles)}')
  root = pickles[0][:-len('data.pkl')]
  if archive.getinfo(pickles[0]).file_size > _MAX_PICKLE_BYTES:
    raise CheckpointFormatError(f'{path}: data.pkl is implausibly large')
  names = set(archive.namelist())
  byteorder = 'little'
  if root + 'byteorder' in names:
    raw = archive.read(root + 'byteorder')
    byteorder = raw.decode('ascii', 'replace').strip()
    if byteorder not in ('little', 'big'):
      raise CheckpointFormatError(
          f'{path}: byteorder entry is {short_repr(raw)}, not little or big')
  obj, storages, _ = torch_pickle.unpickle(archive.read(pickles[0]),
                                           max_bytes, path)
  torch_limits.check_zip_entries(path, max(entries, len(infos)),
                                 len(storages))
  buffers = {}
  for key, storage in storages.items():
    entry = f'{root}data/{key}'
    if entry not in names:
      raise CheckpointFormatError(f'{path}: missing storage entry '
                                  f'{short_repr(entry)}')
    nbytes = storage.numel * storage.dtype.itemsize
    if archive.getinfo(entry).file_size != nbytes:
      raise CheckpointFormatError(
          f'{path}: storage {short_repr(key)} has '
          f'{archive.getinfo(entry).file_size} bytes, expected {nbytes}')
    dtype = storage.dtype if byteorder == 'little' else (
        storage.dtype.newbyteorder('>'))
    buffers[key] = np.frombuffer(archive.read(entry), dtype)
  return obj, buffers


def _read_legacy(path: str, max_bytes: int):
  file_size = os.path.getsize(path)
  with open(path, 'rb') as f:

    def next_pickle():
      start = f.tell()
      data = f.read(min(_MAX_PICKLE_BYTES + 1, file_size - start))
      obj, storages, end = torch_pickle.unpickle(data, max_bytes, path)
      f.seek(start + end)
      return obj, storages

    header = []
    for _ in range(3):  # Plain data (ints, a dict of ints): still allow-listed.
      header.append(next_pickle()[0])
    magic, protocol, sys_info = header
    if magic != LEGACY_MAGIC_NUMBER or protocol != LEGACY_PROTOCOL_VERSION:
      raise CheckpointFormatError(f'{path}: not a PyTorch checkpoint (bad '
                                  'magic number or protocol version)')
    little = not isinstance(sys_info, dict) or sys_info.get(
        'little_endian', True) is not False
    obj, storages = next_pickle()
    keys, _ = next_pickle()
    if not isinstance(keys, list) or {torch_pickle.storage_key(k) for k in keys} != set(storages):
      raise CheckpointFormatError(f'{path}: storage key list does not match '
                                  'the storages the pickle names')
    buffers = {}
    for key in (torch_pickle.storage_key(k) for k in keys):
      storage = storages[key]
      count = np.frombuffer(f.read(8), '<i8' if little else '>i8')
      if count.size != 1 or int(count[0]) != storage.numel:
        raise CheckpointFormatError(f'{path}: storage {short_repr(key)} '
                                    'header does not match its declared size')
      nbytes = storage.numel * storage.dtype.itemsize
      if nbytes > file_size - f.tell():
        raise CheckpointFormatError(f'{path}: truncated (storage '
                                    f'{short_repr(key)} needs {nbytes} bytes)')
      dtype = storage.dtype if little else storage.dtype.newbyteorder('>')
      buffers[key] = np.frombuffer(f.read(nbytes), dtype)
  return obj, buffers


def add_converter_arguments(parser: argparse.ArgumentParser, *, source: str,
                            digest_example: str) -> None:
  """--input (``source``), --output and --sha256 of the .pth -> .npz
  converters (``convert_vgg16``, ``convert_inception``)."""
  parser.add_argument('--input', required=True, help=source)
  parser.add_argument('--output', required=True, help='the .npz to write')
  parser.add_argument('--sha256', default=None,
                      help='refuse the input unless its SHA-256 starts with '
                           f'this hex (8+ digits; {digest_example}); checked '
                           'before parsing')


def load_torch_state_dict(path: str | os.PathLike, *,
                          max_bytes: int = DEFAULT_MAX_BYTES,
                          expected_sha256: str | None = None
                          ) -> dict[str, np.ndarray]:
  """Loads a ``torch.save``'d state dict as ``{name: np.ndarray}``.

  Nested dicts are flattened with '.'; non-tensor values are dropped. Arrays
  keep torch's layout (conv kernels OIHW). ``expected_sha256`` (hex, the
  whole digest or a prefix of at least 8 digits) is checked before anything
  is parsed. Storages and tensors together may use at most
  ``torch_limits.byte_budget(file size, max_bytes)`` bytes. Raises
  ``FileNotFoundError``, ``UnsafeCheckpointError`` (disallowed global,
  nothing executed) or ``CheckpointFormatError`` (corrupt, old tar format,
  wrong digest, or over a limit).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no such checkpoint file: {path}')
  if expected_sha256 is not None:
    torch_limits.check_sha256(path, expected_sha256)
  budget = torch_limits.byte_budget(os.path.getsize(path), max_bytes)
  if zipfile.is_zipfile(path):
    obj, buffers = _read_zip(path, budget)
  else:
    with open(path, 'rb') as f:
      start = f.read(263)
    if len(start) > 262 and start[257:262] == b'ustar':
      raise CheckpointFormatError(f'{path}: the tar-based format of torch<0.4 '
                                  'is not supported; re-save it with torch')
    if not start.startswith(b'\x80'):
      raise CheckpointFormatError(f'{path}: neither a zip nor a legacy pickle '
                                  'PyTorch checkpoint')
    obj, buffers = _read_legacy(path, budget)
  tensors: dict[str, torch_pickle.TensorRef] = {}
  try:
    torch_pickle.collect_tensors(obj, '', tensors)
  except CheckpointFormatError as error:
    raise CheckpointFormatError(f'{path}: {error}') from None
  if not tensors and not isinstance(obj, dict):
    raise CheckpointFormatError(f'{path}: holds a {type(obj).__name__}, not a '
                                'state dict')
  if not tensors:   # every caller expects weights: an empty dict is no file
    raise CheckpointFormatError(f'{path}: the state dict holds no tensors')
  left = [budget - sum(b.nbytes for b in buffers.values())]
  try:
    return {name: torch_pickle.materialise(t, buffers, left)
            for name, t in tensors.items()}
  except CheckpointFormatError as error:
    raise CheckpointFormatError(f'{path}: {error}') from None
