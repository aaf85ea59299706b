"""Reads PyTorch ``.pth`` state dicts into numpy without importing torch.

Public weight files (torchvision's VGG16, pytorch-fid's InceptionV3) are
pickles, and unpickling runs whatever callables the file names. This reader
uses an allow-listed ``pickle.Unpickler``: the only globals a file may name
are ``collections.OrderedDict``, torch's tensor/parameter rebuild functions and
torch's storage classes, each replaced by an inert stand-in, so a hostile file
is refused before anything in it runs.

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
count and memo indices first (``torch_limits``). Every problem is one
``CheckpointFormatError`` line naming the file.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import os
import pickle
import zipfile
import zlib

import ml_dtypes
import numpy as np

from scsnet_jax.pretrained import torch_limits
from scsnet_jax.pretrained.torch_limits import (CheckpointFormatError,
                                           UnsafeCheckpointError, short_repr)

DEFAULT_MAX_BYTES = 4 << 30  # 4 GiB: VGG16 is 0.55 GB, pytorch-fid's 0.1 GB.
_MAX_PICKLE_BYTES = torch_limits.MAX_PICKLE_BYTES
LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL_VERSION = 1001

# torch storage class name -> numpy element type (little-endian on disk).
STORAGE_DTYPES = {
    'DoubleStorage': np.dtype('<f8'),
    'FloatStorage': np.dtype('<f4'),
    'HalfStorage': np.dtype('<f2'),
    'BFloat16Storage': np.dtype(ml_dtypes.bfloat16),
    'LongStorage': np.dtype('<i8'),
    'IntStorage': np.dtype('<i4'),
    'ShortStorage': np.dtype('<i2'),
    'CharStorage': np.dtype('i1'),
    'ByteStorage': np.dtype('u1'),
    'BoolStorage': np.dtype('?'),
    'ComplexFloatStorage': np.dtype('<c8'),
    'ComplexDoubleStorage': np.dtype('<c16'),
}


class _Sealed:
  """A record a pickle's BUILD opcode must not rewrite after validation."""

  def __setstate__(self, state):
    raise UnsafeCheckpointError(
        'refusing to load: the pickle tries to rewrite a tensor or storage '
        'record (BUILD opcode)')


@dataclasses.dataclass(frozen=True)
class _StorageType(_Sealed):
  """Inert stand-in for ``torch.<X>Storage`` (only its element type matters)."""
  name: str
  dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _StorageRef(_Sealed):
  """A storage named by the pickle; its bytes are read after unpickling."""
  key: str
  dtype: np.dtype
  numel: int
  view_offset: int = 0  # Legacy storage views: element offset into the root.


@dataclasses.dataclass(frozen=True)
class _TensorRef(_Sealed):
  """What ``_rebuild_tensor*`` returns: a strided view of a storage."""
  storage: _StorageRef
  offset: int
  shape: tuple[int, ...]
  stride: tuple[int, ...]


def _as_int_tuple(value, what: str) -> tuple[int, ...]:
  if not isinstance(value, (tuple, list)) or not all(
      isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**62
      for v in value):
    raise CheckpointFormatError(f'tensor {what} is not a tuple of ints in '
                                f'[0, 2**62): {short_repr(value)}')
  return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  """Stand-in for torch._utils._rebuild_tensor and _rebuild_tensor_v2."""
  if not isinstance(storage, _StorageRef):
    raise CheckpointFormatError('tensor rebuilt from something not a storage')
  if (not isinstance(storage_offset, int) or isinstance(storage_offset, bool)
      or storage_offset < 0):
    raise CheckpointFormatError(
        f'bad storage offset {short_repr(storage_offset)}')
  shape, stride = _as_int_tuple(size, 'size'), _as_int_tuple(stride, 'stride')
  if len(shape) != len(stride):
    raise CheckpointFormatError(f'size {shape} and stride {stride} differ in '
                                'rank')
  return _TensorRef(storage, storage_offset, shape, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None,
                       *unused):
  """Stand-in for torch._utils._rebuild_parameter(_with_state)."""
  if not isinstance(data, _TensorRef):
    raise CheckpointFormatError('parameter rebuilt from something not a tensor')
  return data


class _SealedFunction(_Sealed):
  """Wraps a stand-in so that BUILD cannot set attributes on the function."""

  def __init__(self, function):
    self._function = function

  def __call__(self, *args):
    return self._function(*args)


_ALLOWED_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor'): _SealedFunction(_rebuild_tensor),
    ('torch._utils', '_rebuild_tensor_v2'): _SealedFunction(_rebuild_tensor),
    ('torch._utils', '_rebuild_parameter'): _SealedFunction(
        _rebuild_parameter),
    ('torch._utils', '_rebuild_parameter_with_state'): _SealedFunction(
        _rebuild_parameter),
}
_ALLOWED_GLOBALS.update({('torch', name): _StorageType(name, dtype)
                         for name, dtype in STORAGE_DTYPES.items()})


def _decode(value):
  if not isinstance(value, bytes):
    return value
  try:
    return value.decode('ascii')
  except UnicodeDecodeError:
    raise CheckpointFormatError(f'name {short_repr(value)} is not ASCII'
                                ) from None


def _key(value) -> str:
  """A storage key (str, or bytes from Python 2), never ``str()`` of an
  arbitrary object (that could be a huge repr)."""
  value = _decode(value)
  if not isinstance(value, str):
    raise CheckpointFormatError(f'storage key {short_repr(value)} is not a '
                                'str')
  return value


class _AllowListUnpickler(pickle.Unpickler):
  """Resolves only allow-listed globals; storages become ``_StorageRef``s."""

  def __init__(self, file, *, max_bytes: int):
    super().__init__(file, encoding='utf-8')  # Python 2 str -> str.
    self._max_bytes = max_bytes
    self.storages: dict[str, _StorageRef] = {}  # Root storages by key.

  def find_class(self, module, name):
    try:
      return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise UnsafeCheckpointError(
          f'refusing to load: the pickle references {module}.{name}, which is '
          'not a tensor, storage or OrderedDict (not a plain state dict, or a '
          'malicious file)') from None

  def persistent_load(self, saved_id):
    if not isinstance(saved_id, tuple) or not saved_id or _decode(
        saved_id[0]) != 'storage':
      raise UnsafeCheckpointError(
          f'refusing to load: unknown persistent id {short_repr(saved_id)}')
    fields = saved_id[1:]
    if len(fields) not in (4, 5):
      raise CheckpointFormatError(f'bad storage record {short_repr(saved_id)}')
    storage_type, key, unused_location, numel = fields[:4]
    view = fields[4] if len(fields) == 5 else None
    if not isinstance(storage_type, _StorageType):
      raise CheckpointFormatError(
          f'bad storage type {short_repr(storage_type)}')
    if not isinstance(numel, int) or numel < 0:
      raise CheckpointFormatError(f'bad storage size {short_repr(numel)}')
    if numel * storage_type.dtype.itemsize > self._max_bytes:
      raise CheckpointFormatError(
          f'storage of {numel} elements exceeds the {self._max_bytes}-byte '
          'limit (a few times the file size, at most max_bytes)')
    key = _key(key)
    root = self.storages.setdefault(
        key, _StorageRef(key, storage_type.dtype, numel))
    if root.numel != numel or root.dtype != storage_type.dtype:
      raise CheckpointFormatError(f'storage {key} declared twice differently')
    if view is None:
      return root
    # Legacy storage views: (view_key, element offset, element count).
    if not isinstance(view, tuple) or len(view) != 3:
      raise CheckpointFormatError(f'bad storage view {short_repr(view)}')
    _, view_offset, view_size = view
    if not (isinstance(view_offset, int) and isinstance(view_size, int) and
            0 <= view_offset and view_offset + view_size <= numel):
      raise CheckpointFormatError(f'bad storage view {short_repr(view)}')
    return _StorageRef(key, root.dtype, view_size, view_offset)


def _materialise(tensor: _TensorRef, buffers: dict[str, np.ndarray],
                 budget: list[int]) -> np.ndarray:
  """Copies the strided view out of its storage buffer, after
  ``torch_limits.check_view`` (bounds, no broadcasts, ``budget`` = [bytes
  left], shared by all tensors of the file)."""
  tensor = _rebuild_tensor(tensor.storage, tensor.offset, tensor.shape,
                           tensor.stride)  # Validated again, to be sure.
  storage = tensor.storage
  buffer = buffers[storage.key][storage.view_offset:storage.view_offset +
                                storage.numel]
  numel = math.prod(tensor.shape)
  if numel == 0:
    return np.zeros(tensor.shape, buffer.dtype)
  torch_limits.check_view(tensor.shape, tensor.stride, tensor.offset,
                          buffer.size, buffer.dtype.itemsize, budget)
  view = np.lib.stride_tricks.as_strided(
      buffer[tensor.offset:],
      shape=tensor.shape,
      strides=[s * buffer.dtype.itemsize for s in tensor.stride],
      writeable=False)
  return np.array(view, dtype=buffer.dtype.newbyteorder('='))


_MAX_NESTING = 8  # state_dict, or {'state_dict': ...}; also stops cycles.


def _collect_tensors(obj, prefix: str, out: dict[str, _TensorRef],
                     depth: int = 0):
  """Flattens (nested) string-keyed mappings; non-tensor leaves are dropped."""
  if isinstance(obj, _TensorRef):
    out[prefix] = obj
  elif isinstance(obj, dict):
    if depth > _MAX_NESTING:
      raise CheckpointFormatError('dicts nested too deeply (or a cycle)')
    for key, value in obj.items():
      key = _decode(key)
      if not isinstance(key, str):
        raise CheckpointFormatError(
            f'state dict key {short_repr(key)} is not a str')
      _collect_tensors(value, f'{prefix}.{key}' if prefix else key, out,
                       depth + 1)


def _unpickle(data: bytes, max_bytes: int, where: str):
  """One pickle (opcode-scanned first) -> (object, root storages)."""
  end = torch_limits.scan_pickle(data, where)
  unpickler = _AllowListUnpickler(io.BytesIO(data[:end]), max_bytes=max_bytes)
  try:
    obj = unpickler.load()
  except CheckpointFormatError as e:  # Ours: name the file, keep the class.
    raise type(e)(f'{where}: {e}') from None
  except Exception as e:  # Truncated/garbled pickles raise many types.
    raise CheckpointFormatError(
        f'{where}: corrupt pickle: {type(e).__name__}: {str(e)[:200]}'
    ) from None
  return obj, unpickler.storages, end


# What zipfile raises for a damaged archive: bad CRC or headers
# (BadZipFile), bad deflate data (zlib.error, EOFError), an encrypted or
# unknown-method entry (RuntimeError, NotImplementedError).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError,
               NotImplementedError)


def _read_zip(path: str, max_bytes: int):
  try:
    with zipfile.ZipFile(path) as archive:
      return _read_zip_archive(path, archive, max_bytes)
  except _ZIP_ERRORS as error:
    raise CheckpointFormatError(
        f'{path}: damaged zip archive ({type(error).__name__}: '
        f'{str(error)[:200]})') from None


def _read_zip_archive(path: str, archive: zipfile.ZipFile, max_bytes: int):
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
  obj, storages, _ = _unpickle(archive.read(pickles[0]), max_bytes, path)
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
      obj, storages, end = _unpickle(data, max_bytes, path)
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
    if not isinstance(keys, list) or {_key(k) for k in keys} != set(storages):
      raise CheckpointFormatError(f'{path}: storage key list does not match '
                                  'the storages the pickle names')
    buffers = {}
    for key in (_key(k) for k in keys):
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
  tensors: dict[str, _TensorRef] = {}
  try:
    _collect_tensors(obj, '', tensors)
  except CheckpointFormatError as error:
    raise CheckpointFormatError(f'{path}: {error}') from None
  if not tensors and not isinstance(obj, dict):
    raise CheckpointFormatError(f'{path}: holds a {type(obj).__name__}, not a '
                                'state dict')
  left = [budget - sum(b.nbytes for b in buffers.values())]
  try:
    return {name: _materialise(t, buffers, left)
            for name, t in tensors.items()}
  except CheckpointFormatError as error:
    raise CheckpointFormatError(f'{path}: {error}') from None
