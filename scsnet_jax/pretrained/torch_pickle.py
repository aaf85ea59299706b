"""The allow-listed unpickler of ``torch_reader``: torch's pickles rebuilt
into inert stand-ins, and the tensors they name cut out of raw storages.

The only globals a pickle may name are ``collections.OrderedDict``, torch's
tensor/parameter rebuild functions and its storage classes, each replaced by
a stand-in (``TensorRef``, ...), so nothing a file names runs. A tensor may
not read more elements than its storage holds, and all of them together stay
within a byte budget (``materialise``).
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle

import ml_dtypes
import numpy as np

from scsnet_jax.pretrained import torch_limits
from scsnet_jax.pretrained.torch_limits import (CheckpointFormatError,
                                                UnsafeCheckpointError,
                                                short_repr)

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
class TensorRef(_Sealed):
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
  torch_limits.check_rank(shape)
  if len(shape) != len(stride):
    raise CheckpointFormatError(f'size {shape} and stride {stride} differ in '
                                'rank')
  return TensorRef(storage, storage_offset, shape, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None,
                       *unused):
  """Stand-in for torch._utils._rebuild_parameter(_with_state)."""
  if not isinstance(data, TensorRef):
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


def storage_key(value) -> str:
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
    key = storage_key(key)
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


def materialise(tensor: TensorRef, buffers: dict[str, np.ndarray],
                 budget: list[int]) -> np.ndarray:
  """Copies the strided view out of its storage buffer, after
  ``torch_limits.check_view`` (bounds, no broadcasts, ``budget`` = [bytes
  left], shared by all tensors of the file)."""
  tensor = _rebuild_tensor(tensor.storage, tensor.offset, tensor.shape,
                           tensor.stride)  # Validated again, to be sure.
  storage = tensor.storage
  buffer = buffers[storage.key][storage.view_offset:storage.view_offset +
                                storage.numel]
  if 0 in tensor.shape:
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


def collect_tensors(obj, prefix: str, out: dict[str, TensorRef],
                     depth: int = 0):
  """Flattens (nested) string-keyed mappings; non-tensor leaves are dropped."""
  if isinstance(obj, TensorRef):
    out[prefix] = obj
  elif isinstance(obj, dict):
    if depth > _MAX_NESTING:
      raise CheckpointFormatError('dicts nested too deeply (or a cycle)')
    for key, value in obj.items():
      key = _decode(key)
      if not isinstance(key, str):
        raise CheckpointFormatError(
            f'state dict key {short_repr(key)} is not a str')
      collect_tensors(value, f'{prefix}.{key}' if prefix else key, out,
                       depth + 1)


def unpickle(data: bytes, max_bytes: int, where: str):
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
