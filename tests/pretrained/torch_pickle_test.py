"""pretrained/torch_pickle.py on its own: allow-listed globals only, nested
mappings flattened, storage keys never str() of an arbitrary object."""

import collections
import os
import pickle

import pytest

from scsnet_jax.pretrained import torch_pickle
from scsnet_jax.pretrained.torch_limits import (CheckpointFormatError,
                                                UnsafeCheckpointError)


class _Marker:
  """Would run ``os.system`` when unpickled by a plain ``pickle.load``."""

  def __reduce__(self):
    return (os.system, ('true',))


def test_plain_data_unpickles_and_names_no_storages():
  data = pickle.dumps(collections.OrderedDict(a=1, b=[2, 3]), protocol=2)
  obj, storages, end = torch_pickle.unpickle(data, 1 << 20, 'x.pth')
  assert obj == {'a': 1, 'b': [2, 3]} and storages == {}
  assert end == len(data)


def test_a_global_outside_the_allow_list_is_refused_unrun():
  data = pickle.dumps({'w': _Marker()}, protocol=2)
  with pytest.raises(UnsafeCheckpointError, match='x.pth: .*system'):
    torch_pickle.unpickle(data, 1 << 20, 'x.pth')


def test_collect_tensors_flattens_and_drops_non_tensors():
  ref = object.__new__(torch_pickle.TensorRef)
  out = {}
  torch_pickle.collect_tensors({'a': {'b': ref, 'n': 3}, 'c': ref}, '', out)
  assert out == {'a.b': ref, 'c': ref}


def test_storage_keys_are_strings():
  assert torch_pickle.storage_key(b'0') == '0'
  assert torch_pickle.storage_key('12') == '12'
  with pytest.raises(CheckpointFormatError, match='is not a str'):
    torch_pickle.storage_key(5)
