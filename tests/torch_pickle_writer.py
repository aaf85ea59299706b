"""Torch-free writer of state dicts in ``torch.save``'s two on-disk formats.

Tests use it to make realistic ``.pth`` files without installing torch. The
pickle is what torch 1.x/2.x emits for a state dict: an ``OrderedDict``
(with a ``_metadata`` attribute, set by BUILD) whose values are
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
requires_grad, OrderedDict())`` calls, storages being persistent ids
``('storage', torch.FloatStorage, key, 'cpu', numel)`` (zip format) or
``(..., numel, None)`` (legacy format). The global references are written as
GLOBAL opcodes by a pure-Python pickler, since torch is not importable here.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import sys
import zipfile

import ml_dtypes
import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL_VERSION = 1001
_STORAGE_NAMES = {
    np.dtype('float64'): 'DoubleStorage',
    np.dtype('float32'): 'FloatStorage',
    np.dtype('float16'): 'HalfStorage',
    np.dtype('int64'): 'LongStorage',
    np.dtype('int32'): 'IntStorage',
    np.dtype('int16'): 'ShortStorage',
    np.dtype('int8'): 'CharStorage',
    np.dtype('uint8'): 'ByteStorage',
    np.dtype('bool'): 'BoolStorage',
    np.dtype(ml_dtypes.bfloat16): 'BFloat16Storage',
}


@dataclasses.dataclass(frozen=True)
class TorchGlobal:
  """Pickles as ``GLOBAL module name`` (a torch object we cannot import)."""
  module: str
  name: str

  def __call__(self, *args):  # pickle insists that reduce functions are callable
    raise NotImplementedError


@dataclasses.dataclass(eq=False)
class Storage:
  """A flat storage: the 1-D array of its elements, saved under ``key``."""
  data: np.ndarray
  key: str
  declared_numel: int | None = None  # To forge a lying size record.
  # Legacy format only: (view_key, element offset, element count), the
  # storage views of torch < 0.4.
  legacy_view: tuple[str, int, int] | None = None


@dataclasses.dataclass(eq=False)
class TensorView:
  """A (possibly non-contiguous) view of a storage, as torch would save it."""
  storage: Storage
  offset: int
  shape: tuple[int, ...]
  stride: tuple[int, ...]
  rebuild: str = '_rebuild_tensor_v2'

  def __reduce_ex__(self, protocol):
    args = (self.storage, self.offset, tuple(self.shape), tuple(self.stride))
    if self.rebuild == '_rebuild_tensor_v2':
      args += (False, collections.OrderedDict())
    return TorchGlobal('torch._utils', self.rebuild), args


def contiguous_view(array: np.ndarray, key: str, **kwargs) -> TensorView:
  array = np.array(array, order="C")
  stride = tuple(s // array.itemsize for s in array.strides)
  return TensorView(Storage(array.reshape(-1), key), 0, array.shape, stride,
                    **kwargs)


def _little_endian_bytes(array: np.ndarray) -> bytes:
  big = array.dtype.byteorder == '>' or (array.dtype.byteorder == '=' and
                                         sys.byteorder == 'big')
  return array.byteswap().tobytes() if big else array.tobytes()


def _save_torch_global(pickler, obj: TorchGlobal):
  pickler.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
  pickler.memoize(obj)


class _TorchPickler(pickle._Pickler):  # pylint: disable=protected-access
  """Pure-Python pickler (the only one whose opcode writer we can extend)."""
  dispatch = pickle._Pickler.dispatch.copy()  # pylint: disable=protected-access
  dispatch[TorchGlobal] = _save_torch_global

  def __init__(self, file, legacy: bool):
    super().__init__(file, protocol=2)
    self.legacy = legacy
    self.storages: dict[str, Storage] = {}

  def persistent_id(self, obj):
    if not isinstance(obj, Storage):
      return None
    self.storages[obj.key] = obj
    storage_type = TorchGlobal('torch', _STORAGE_NAMES[obj.data.dtype])
    numel = obj.data.size if obj.declared_numel is None else obj.declared_numel
    record = ('storage', storage_type, obj.key, 'cpu', numel)
    return record + (obj.legacy_view,) if self.legacy else record


class _Python2OrderedDict:
  """Pickles as Python 2's OrderedDict did: OrderedDict([[k, v], ...])."""

  def __init__(self, items):
    self.items = items

  def __reduce_ex__(self, protocol):
    return collections.OrderedDict, ([[k, v] for k, v in self.items],)


def _state_dict_pickle(tensors, legacy: bool, file,
                       python2: bool = False) -> dict[str, Storage]:
  state = collections.OrderedDict()
  for name, value in tensors.items():
    if isinstance(value, np.ndarray):
      value = contiguous_view(value, str(len(state)))
    state[name] = value
  state._metadata = collections.OrderedDict({'': {'version': 1}})  # pylint: disable=protected-access
  if python2:
    state = _Python2OrderedDict(list(state.items()))
  pickler = _TorchPickler(file, legacy)
  pickler.dump(state)
  return pickler.storages


def save_torch_state_dict(tensors: dict[str, np.ndarray | TensorView], path,
                          *, legacy: bool = False,
                          archive_name: str = 'archive',
                          python2_dict: bool = False) -> None:
  """Writes ``tensors`` as torch.save would (zip, or legacy if ``legacy``).

  ``python2_dict`` pickles the OrderedDict as Python 2 did (legacy files
  saved from Python 2, like torchvision's 2017 VGG16).
  """
  if legacy:
    with open(path, 'wb') as f:
      for header in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION,
                     dict(protocol_version=LEGACY_PROTOCOL_VERSION,
                          little_endian=sys.byteorder == 'little',
                          type_sizes=dict(short=2, int=4, long=4))):
        pickle.dump(header, f, protocol=2)
      storages = _state_dict_pickle(tensors, True, f, python2_dict)
      keys = sorted(storages)
      pickle.dump(keys, f, protocol=2)
      for key in keys:
        data = storages[key].data
        f.write(np.int64(data.size).astype('<i8').tobytes())
        f.write(_little_endian_bytes(data))
    return
  buffer = io.BytesIO()
  storages = _state_dict_pickle(tensors, False, buffer)
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as archive:
    archive.writestr(f'{archive_name}/data.pkl', buffer.getvalue())
    archive.writestr(f'{archive_name}/byteorder', 'little')
    for key, storage in storages.items():
      archive.writestr(f'{archive_name}/data/{key}',
                       _little_endian_bytes(storage.data))
    archive.writestr(f'{archive_name}/version', '3\n')
