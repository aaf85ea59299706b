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
Sizes are checked against ``max_bytes`` before anything is allocated, so zip
bombs and absurd shapes are refused.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np

from scsnet_jax.errors import UserError

DEFAULT_MAX_BYTES = 4 << 30  # 4 GiB: VGG16 is 0.55 GB, pytorch-fid's 0.1 GB.
_MAX_PICKLE_BYTES = 64 << 20  # The pickle holds only names and shapes.
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


class CheckpointFormatError(UserError):
  """The file is not a readable PyTorch checkpoint (or breaks a size limit)."""


class UnsafeCheckpointError(CheckpointFormatError):
  """The pickle names a global outside the allow-list; nothing was run."""


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
      isinstance(v, int) and not isinstance(v, bool) and v >= 0
      for v in value):
    raise CheckpointFormatError(f'tensor {what} is not a tuple of ints >= 0: '
                                f'{value!r:.80}')
  return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  """Stand-in for torch._utils._rebuild_tensor and _rebuild_tensor_v2."""
  if not isinstance(storage, _StorageRef):
    raise CheckpointFormatError('tensor rebuilt from something not a storage')
  if (not isinstance(storage_offset, int) or isinstance(storage_offset, bool)
      or storage_offset < 0):
    raise CheckpointFormatError(f'bad storage offset {storage_offset!r:.40}')
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
  return value.decode('ascii') if isinstance(value, bytes) else value


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
          f'refusing to load: unknown persistent id {saved_id!r:.80}')
    fields = saved_id[1:]
    if len(fields) not in (4, 5):
      raise CheckpointFormatError(f'bad storage record {saved_id!r:.80}')
    storage_type, key, unused_location, numel = fields[:4]
    view = fields[4] if len(fields) == 5 else None
    if not isinstance(storage_type, _StorageType):
      raise CheckpointFormatError(f'bad storage type {storage_type!r:.80}')
    if not isinstance(numel, int) or numel < 0:
      raise CheckpointFormatError(f'bad storage size {numel!r:.40}')
    if numel * storage_type.dtype.itemsize > self._max_bytes:
      raise CheckpointFormatError(
          f'storage of {numel} elements exceeds the {self._max_bytes}-byte '
          'limit (raise max_bytes if the file is trusted)')
    key = str(_decode(key))
    root = self.storages.setdefault(
        key, _StorageRef(key, storage_type.dtype, numel))
    if root.numel != numel or root.dtype != storage_type.dtype:
      raise CheckpointFormatError(f'storage {key} declared twice differently')
    if view is None:
      return root
    # Legacy storage views: (view_key, element offset, element count).
    _, view_offset, view_size = view
    if not (isinstance(view_offset, int) and isinstance(view_size, int) and
            0 <= view_offset and view_offset + view_size <= numel):
      raise CheckpointFormatError(f'bad storage view {view!r:.80}')
    return _StorageRef(key, root.dtype, view_size, view_offset)


def _materialise(tensor: _TensorRef, buffers: dict[str, np.ndarray],
                 max_bytes: int) -> np.ndarray:
  """Copies the strided view out of its (bounds-checked) storage buffer."""
  tensor = _rebuild_tensor(tensor.storage, tensor.offset, tensor.shape,
                           tensor.stride)  # Validated again, to be sure.
  storage = tensor.storage
  buffer = buffers[storage.key][storage.view_offset:storage.view_offset +
                                storage.numel]
  numel = math.prod(tensor.shape)
  if numel * buffer.dtype.itemsize > max_bytes:
    raise CheckpointFormatError(f'tensor of shape {tensor.shape} exceeds the '
                                f'{max_bytes}-byte limit')
  if numel == 0:
    return np.zeros(tensor.shape, buffer.dtype)
  last = tensor.offset + sum((n - 1) * s
                             for n, s in zip(tensor.shape, tensor.stride))
  if last >= buffer.size:
    raise CheckpointFormatError(
        f'tensor of shape {tensor.shape}, stride {tensor.stride} and offset '
        f'{tensor.offset} reads past its storage of {buffer.size} elements')
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
        raise CheckpointFormatError(f'state dict key {key!r:.40} is not a str')
      _collect_tensors(value, f'{prefix}.{key}' if prefix else key, out,
                       depth + 1)


def _unpickle(data: bytes | io.BufferedIOBase, max_bytes: int):
  file = io.BytesIO(data) if isinstance(data, bytes) else data
  unpickler = _AllowListUnpickler(file, max_bytes=max_bytes)
  try:
    obj = unpickler.load()
  except CheckpointFormatError:
    raise
  except Exception as e:  # Truncated/garbled pickles raise many types.
    raise CheckpointFormatError(f'corrupt pickle: {type(e).__name__}: {e}'
                                ) from e
  return obj, unpickler.storages


def _read_zip(path: str, max_bytes: int):
  with zipfile.ZipFile(path) as archive:
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
                                  f'the archive, found {pickles}')
    root = pickles[0][:-len('data.pkl')]
    if archive.getinfo(pickles[0]).file_size > _MAX_PICKLE_BYTES:
      raise CheckpointFormatError(f'{path}: data.pkl is implausibly large')
    names = set(archive.namelist())
    byteorder = 'little'
    if root + 'byteorder' in names:
      byteorder = archive.read(root + 'byteorder').decode().strip()
    obj, storages = _unpickle(archive.read(pickles[0]), max_bytes)
    buffers = {}
    for key, storage in storages.items():
      entry = f'{root}data/{key}'
      if entry not in names:
        raise CheckpointFormatError(f'{path}: missing storage entry {entry}')
      raw = archive.read(entry)
      nbytes = storage.numel * storage.dtype.itemsize
      if len(raw) != nbytes:
        raise CheckpointFormatError(
            f'{path}: storage {key} has {len(raw)} bytes, expected {nbytes}')
      dtype = storage.dtype if byteorder == 'little' else (
          storage.dtype.newbyteorder('>'))
      buffers[key] = np.frombuffer(raw, dtype)
  return obj, buffers


def _read_legacy(path: str, max_bytes: int):
  file_size = os.path.getsize(path)
  with open(path, 'rb') as f:
    header = []
    for _ in range(3):  # Plain data (ints, a dict of ints): still allow-listed.
      header.append(_unpickle(f, max_bytes)[0])
    magic, protocol, sys_info = header
    if magic != LEGACY_MAGIC_NUMBER or protocol != LEGACY_PROTOCOL_VERSION:
      raise CheckpointFormatError(f'{path}: not a PyTorch checkpoint (bad '
                                  'magic number or protocol version)')
    little = not isinstance(sys_info, dict) or sys_info.get(
        'little_endian', True)
    obj, storages = _unpickle(f, max_bytes)
    keys, _ = _unpickle(f, max_bytes)
    if not isinstance(keys, list) or {str(_decode(k)) for k in keys} != set(
        storages):
      raise CheckpointFormatError(f'{path}: storage key list does not match '
                                  'the storages the pickle names')
    buffers = {}
    for key in (str(_decode(k)) for k in keys):
      storage = storages[key]
      count = np.frombuffer(f.read(8), '<i8' if little else '>i8')
      if count.size != 1 or int(count[0]) != storage.numel:
        raise CheckpointFormatError(f'{path}: storage {key} header does not '
                                    'match its declared size')
      nbytes = storage.numel * storage.dtype.itemsize
      if nbytes > file_size - f.tell():
        raise CheckpointFormatError(f'{path}: truncated (storage {key} needs '
                                    f'{nbytes} bytes)')
      dtype = storage.dtype if little else storage.dtype.newbyteorder('>')
      buffers[key] = np.frombuffer(f.read(nbytes), dtype)
  return obj, buffers


def load_torch_state_dict(path: str | os.PathLike, *,
                          max_bytes: int = DEFAULT_MAX_BYTES
                          ) -> dict[str, np.ndarray]:
  """Loads a ``torch.save``'d state dict as ``{name: np.ndarray}``.

  Nested dicts are flattened with '.'; non-tensor values are dropped. Arrays
  keep torch's layout (conv kernels OIHW). Raises ``FileNotFoundError``,
  ``UnsafeCheckpointError`` (disallowed global, nothing executed) or
  ``CheckpointFormatError`` (corrupt, old tar format, or over ``max_bytes``).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no such checkpoint file: {path}')
  if zipfile.is_zipfile(path):
    obj, buffers = _read_zip(path, max_bytes)
  else:
    with open(path, 'rb') as f:
      start = f.read(263)
    if len(start) > 262 and start[257:262] == b'ustar':
      raise CheckpointFormatError(f'{path}: the tar-based format of torch<0.4 '
                                  'is not supported; re-save it with torch')
    if not start.startswith(b'\x80'):
      raise CheckpointFormatError(f'{path}: neither a zip nor a legacy pickle '
                                  'PyTorch checkpoint')
    obj, buffers = _read_legacy(path, max_bytes)
  tensors: dict[str, _TensorRef] = {}
  _collect_tensors(obj, '', tensors)
  if not tensors and not isinstance(obj, dict):
    raise CheckpointFormatError(f'{path}: holds a {type(obj).__name__}, not a '
                                'state dict')
  return {name: _materialise(t, buffers, max_bytes)
          for name, t in tensors.items()}
