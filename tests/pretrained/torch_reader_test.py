"""torch_reader: both torch formats, strided views, and hostile files refused."""

import os
import pickle
import zipfile

import ml_dtypes
import numpy as np
import pytest

from scsnet_jax.pretrained import torch_reader
from scsnet_jax.pretrained.torch_reader import (CheckpointFormatError,
                                           UnsafeCheckpointError,
                                           load_torch_state_dict)
from tests import torch_pickle_writer as writer


def _sample_tensors():
  rng = np.random.default_rng(0)
  shared = writer.Storage(np.arange(30, dtype=np.float32), 'shared')
  return {
      'conv.weight': rng.standard_normal((4, 3, 2, 2)).astype(np.float32),
      'conv.bias': rng.standard_normal(4).astype(np.float64),
      'bn.num_batches_tracked': np.array(7, np.int64),
      'half': rng.standard_normal((2, 3)).astype(np.float16),
      'bf16': np.array([1.5, -2.0, 3.25], ml_dtypes.bfloat16),
      'mask': np.array([True, False, True]),
      'empty': np.zeros((0, 3), np.float32),
      # A transposed view at offset 2 of a shared storage: element (i, j)
      # lives at storage[2 + i * 1 + j * 3].
      'transposed': writer.TensorView(shared, 2, (3, 4), (1, 3)),
      # Another tensor of the same storage (torch saves the storage once).
      'row': writer.TensorView(shared, 10, (5,), (2,)),
  }


def _check_sample(state):
  expected = _sample_tensors()
  assert set(state) == set(expected)
  for name in ('conv.weight', 'conv.bias', 'half', 'bf16', 'mask', 'empty'):
    assert state[name].dtype == expected[name].dtype, name
    np.testing.assert_array_equal(state[name], expected[name])
  assert state['bn.num_batches_tracked'].shape == ()
  assert state['bn.num_batches_tracked'] == 7
  storage = np.arange(30, dtype=np.float32)
  transposed = np.array([[storage[2 + i + 3 * j] for j in range(4)]
                         for i in range(3)])
  np.testing.assert_array_equal(state['transposed'], transposed)
  np.testing.assert_array_equal(state['row'], [10, 12, 14, 16, 18])
  assert state['transposed'].flags.writeable


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_round_trip_both_formats(tmp_path, legacy):
  path = tmp_path / 'model.pth'
  writer.save_torch_state_dict(_sample_tensors(), path, legacy=legacy)
  assert zipfile.is_zipfile(path) != legacy
  _check_sample(load_torch_state_dict(path))


def test_zip_archive_named_after_the_file(tmp_path):
  path = tmp_path / 'pt_inception.pth'
  writer.save_torch_state_dict({'w': np.ones((2, 2), np.float32)}, path,
                               archive_name='pt_inception')
  np.testing.assert_array_equal(load_torch_state_dict(path)['w'], 1.0)


def test_legacy_torch03_rebuild_tensor(tmp_path):
  """torch 0.3 files (torchvision's VGG16 of 2017) use _rebuild_tensor."""
  weight = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
  path = tmp_path / 'old.pth'
  writer.save_torch_state_dict(
      {'features.0.weight': writer.contiguous_view(weight, 'k',
                                                   rebuild='_rebuild_tensor')},
      path, legacy=True)
  np.testing.assert_array_equal(
      load_torch_state_dict(path)['features.0.weight'], weight)


def test_legacy_storage_views_and_python2_dicts(tmp_path):
  root = writer.Storage(np.arange(10, dtype=np.float32), 'root',
                        legacy_view=('view', 4, 3))
  path = tmp_path / 'views.pth'
  writer.save_torch_state_dict(
      {'v': writer.TensorView(root, 1, (2,), (1,))}, path, legacy=True,
      python2_dict=True)
  np.testing.assert_array_equal(load_torch_state_dict(path)['v'], [5, 6])
  bad = writer.Storage(np.arange(10, dtype=np.float32), 'root',
                       legacy_view=('view', 8, 3))
  writer.save_torch_state_dict({'v': writer.TensorView(bad, 0, (1,), (1,))},
                               path, legacy=True)
  with pytest.raises(CheckpointFormatError, match='storage view'):
    load_torch_state_dict(path)


class _RunsShell:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


def test_refuses_disallowed_global_without_running_it(tmp_path):
  marker = tmp_path / 'pwned'
  evil = pickle.dumps({'w': _RunsShell(marker)}, protocol=2)
  assert pickle.loads(evil) is not None and marker.exists()  # The bait works.
  marker.unlink()
  path = tmp_path / 'evil.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', evil)
  with pytest.raises(UnsafeCheckpointError, match=r'\.system'):
    load_torch_state_dict(path)
  assert not marker.exists()


def test_refuses_disallowed_global_in_legacy_file(tmp_path):
  marker = tmp_path / 'pwned'
  path = tmp_path / 'evil_legacy.pth'
  with open(path, 'wb') as f:
    for header in (writer.LEGACY_MAGIC_NUMBER, writer.LEGACY_PROTOCOL_VERSION,
                   {'little_endian': True}):
      pickle.dump(header, f, protocol=2)
    pickle.dump(_RunsShell(marker), f, protocol=2)
  with pytest.raises(UnsafeCheckpointError, match='not a tensor'):
    load_torch_state_dict(path)
  assert not marker.exists()


def test_refuses_builtins_eval_via_stack_global(tmp_path):
  evil = pickle.dumps(eval, protocol=4)  # STACK_GLOBAL 'builtins' 'eval'.
  path = tmp_path / 'evil4.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', evil)
  with pytest.raises(UnsafeCheckpointError, match='builtins.eval'):
    load_torch_state_dict(path)


class _TensorViewWithState(writer.TensorView):
  """Appends a BUILD that tries to rewrite the validated tensor record."""

  def __reduce_ex__(self, protocol):
    return super().__reduce_ex__(protocol) + ({'offset': 10**9,
                                               'shape': (10**9,)},)


def test_pickle_cannot_rewrite_a_validated_tensor(tmp_path):
  storage = writer.Storage(np.ones(4, np.float32), '0')
  path = tmp_path / 'build.pth'
  writer.save_torch_state_dict(
      {'w': _TensorViewWithState(storage, 0, (4,), (1,))}, path)
  with pytest.raises(UnsafeCheckpointError, match='BUILD'):
    load_torch_state_dict(path)


def test_refuses_zip_bomb_before_decompressing(tmp_path):
  path = tmp_path / 'bomb.pth'
  writer.save_torch_state_dict({'w': np.ones(4, np.float32)}, path)
  with zipfile.ZipFile(path, 'a', zipfile.ZIP_DEFLATED) as archive:
    archive.writestr('archive/padding', b'\0' * (8 << 20))
  assert os.path.getsize(path) < (1 << 20)  # Small on disk, 8 MiB expanded.
  with pytest.raises(CheckpointFormatError, match='zip bomb'):
    load_torch_state_dict(path, max_bytes=4 << 20)


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_refuses_absurd_declared_storage_size(tmp_path, legacy):
  storage = writer.Storage(np.ones(4, np.float32), '0',
                           declared_numel=10**15)
  path = tmp_path / 'huge.pth'
  writer.save_torch_state_dict(
      {'w': writer.TensorView(storage, 0, (4,), (1,))}, path, legacy=legacy)
  with pytest.raises(CheckpointFormatError, match='exceeds'):
    load_torch_state_dict(path)


def test_refuses_storage_size_that_does_not_match_the_data(tmp_path):
  storage = writer.Storage(np.ones(4, np.float32), '0', declared_numel=8)
  path = tmp_path / 'lying.pth'
  writer.save_torch_state_dict(
      {'w': writer.TensorView(storage, 0, (4,), (1,))}, path)
  with pytest.raises(CheckpointFormatError, match='expected 32'):
    load_torch_state_dict(path)


def test_refuses_views_past_the_storage_and_huge_broadcasts(tmp_path):
  storage = writer.Storage(np.ones(6, np.float32), '0')
  path = tmp_path / 'view.pth'
  writer.save_torch_state_dict(
      {'w': writer.TensorView(storage, 2, (2, 3), (3, 1))}, path)
  with pytest.raises(CheckpointFormatError, match='past its storage'):
    load_torch_state_dict(path)
  writer.save_torch_state_dict(
      {'w': writer.TensorView(storage, 0, (10**6, 10**6), (0, 0))}, path)
  with pytest.raises(CheckpointFormatError, match='stride 0'):
    load_torch_state_dict(path)


def test_clear_errors_for_non_checkpoints(tmp_path):
  with pytest.raises(FileNotFoundError, match='nope.pth'):
    load_torch_state_dict(tmp_path / 'nope.pth')
  text = tmp_path / 'text.pth'
  text.write_text('hello')
  with pytest.raises(CheckpointFormatError, match='neither a zip'):
    load_torch_state_dict(text)
  wrong_magic = tmp_path / 'magic.pth'
  wrong_magic.write_bytes(pickle.dumps(123, protocol=2) * 3)
  with pytest.raises(CheckpointFormatError, match='magic number'):
    load_torch_state_dict(wrong_magic)
  truncated = tmp_path / 'truncated.pth'
  writer.save_torch_state_dict({'w': np.ones(1000, np.float32)}, truncated,
                               legacy=True)
  truncated.write_bytes(truncated.read_bytes()[:-100])
  with pytest.raises(CheckpointFormatError, match='truncated'):
    load_torch_state_dict(truncated)


def test_nested_dicts_flatten_and_cycles_are_refused(tmp_path):
  path = tmp_path / 'nested.pth'
  writer.save_torch_state_dict(
      {'model': {'conv': {'weight': writer.contiguous_view(
          np.ones((2,), np.float32), 'k')}}}, path)
  np.testing.assert_array_equal(
      load_torch_state_dict(path)['model.conv.weight'], [1, 1])
  cycle = {}
  cycle['self'] = cycle
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', pickle.dumps(cycle, protocol=2))
  with pytest.raises(CheckpointFormatError, match='nested too deeply'):
    load_torch_state_dict(path)


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_an_empty_state_dict_is_an_error(tmp_path, legacy):
  """Where weights are expected, a file without tensors is not a success."""
  path = tmp_path / 'empty.pth'
  writer.save_torch_state_dict({}, path, legacy=legacy)
  with pytest.raises(CheckpointFormatError, match='no tensors'):
    load_torch_state_dict(path)


def test_error_classes_are_value_errors():
  assert issubclass(UnsafeCheckpointError, CheckpointFormatError)
  assert issubclass(CheckpointFormatError, ValueError)
  assert torch_reader.DEFAULT_MAX_BYTES >= 1 << 30  # VGG16 is ~0.55 GB.


def test_cross_check_with_torch(tmp_path):
  torch = pytest.importorskip('torch')
  state = {'a': torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),
           'b': torch.tensor([1, 2], dtype=torch.int64)}
  path = tmp_path / 'real.pth'
  torch.save(state, path)
  loaded = load_torch_state_dict(path)
  np.testing.assert_array_equal(loaded['a'], state['a'].numpy())
  np.testing.assert_array_equal(loaded['b'], [1, 2])
  ours = tmp_path / 'ours.pth'
  writer.save_torch_state_dict({'w': np.arange(6.0, dtype=np.float32)}, ours)
  back = torch.load(ours, weights_only=True)
  np.testing.assert_array_equal(back['w'].numpy(), np.arange(6.0))
