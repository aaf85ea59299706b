"""torch_reader under hostile files (issue 19, items 7 and 8): small files
that used to expand to hundreds of MiB, and damaged zips in the converters.

Each crafted file must give one ``CheckpointFormatError`` quickly while the
traced Python/numpy memory (tracemalloc peak) stays under ``PEAK_LIMIT``.
"""

import hashlib
import pickle
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from scsnet_jax.pretrained import convert_inception, convert_vgg16, torch_limits
from scsnet_jax.pretrained.torch_reader import (CheckpointFormatError,
                                           load_torch_state_dict)
from tests import torch_pickle_writer as writer

PEAK_LIMIT = 50 << 20


def _refused_cheaply(path, match, **kwargs):
  """Loads ``path``: one CheckpointFormatError naming it, < 5 s, < 50 MB."""
  tracemalloc.start()
  start = time.perf_counter()
  try:
    with pytest.raises(CheckpointFormatError, match=match) as info:
      load_torch_state_dict(path, **kwargs)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert time.perf_counter() - start < 5
  assert peak < PEAK_LIMIT, f'peak {peak >> 20} MiB'
  message = str(info.value)
  assert str(path) in message and '\n' not in message and len(message) < 500
  return message


def test_stride_zero_broadcast_is_refused(tmp_path):
  """772 bytes declaring 2**27 copies of one float (512 MiB)."""
  path = tmp_path / 'broadcast.pth'
  storage = writer.Storage(np.ones(1, np.float32), '0')
  writer.save_torch_state_dict(
      {'w': writer.TensorView(storage, 0, (2**27,), (0,))}, path)
  assert path.stat().st_size < 1000
  _refused_cheaply(path, 'stride 0')


def test_overlapping_views_and_total_budget(tmp_path):
  path = tmp_path / 'overlap.pth'
  storage = writer.Storage(np.arange(7, dtype=np.float32), '0')
  writer.save_torch_state_dict(   # 16 elements read from 7, stride 1, 1
      {'w': writer.TensorView(storage, 0, (4, 4), (1, 1))}, path)
  _refused_cheaply(path, 'more than its storage')
  # 200 full views of one 1 MiB storage: 200 MiB from a 1 MiB file.
  shared = writer.Storage(np.zeros(1 << 18, np.float32), 'shared')
  views = {f'v{i}': writer.TensorView(shared, 0, (1 << 18,), (1,))
           for i in range(200)}
  writer.save_torch_state_dict(views, path)
  _refused_cheaply(path, 'byte budget')
  # The same file is fine with a few views (shared storages are legitimate).
  writer.save_torch_state_dict(dict(list(views.items())[:3]), path)
  assert len(load_torch_state_dict(path)) == 3


class _BadView(writer.TensorView):
  """Its 'shape' is 50k references to one 4000-character string: a ~100 KB
  pickle whose full repr is 200 MB."""

  def __reduce_ex__(self, protocol):
    glob, args = super().__reduce_ex__(protocol)
    shape = ['x' * 4000] * 50_000
    return glob, (args[0], args[1], shape, args[3]) + args[4:]


def test_error_messages_use_bounded_reprs(tmp_path):
  path = tmp_path / 'repr.pth'
  storage = writer.Storage(np.ones(1, np.float32), '0')
  writer.save_torch_state_dict({'w': _BadView(storage, 0, (1,), (1,))}, path)
  assert path.stat().st_size < 1 << 20
  _refused_cheaply(path, 'not a tuple of ints')


def _legacy_with_pickle(path, body: bytes):
  with open(path, 'wb') as f:
    for header in (writer.LEGACY_MAGIC_NUMBER, writer.LEGACY_PROTOCOL_VERSION,
                   {'little_endian': True}):
      pickle.dump(header, f, protocol=2)
    f.write(body)


def test_many_objects_and_memo_bombs_are_refused_before_building(tmp_path):
  # A deflated zip: 8M empty dicts in an ~8 KB file (600 MiB unpickled).
  path = tmp_path / 'dicts.pth'
  dicts = b'\x80\x02](' + b'}' * 8_000_000 + b'e.'
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
    archive.writestr('archive/data.pkl', dicts)
  assert path.stat().st_size < 20_000
  _refused_cheaply(path, 'zip bomb|opcodes')
  # Stored (legacy stream): refused by the opcode count, not the budget.
  _legacy_with_pickle(path, b'\x80\x02](' + b'}' * 1_000_000 + b'e.')
  _refused_cheaply(path, 'opcodes')
  # LONG_BINPUT 2**23: the C unpickler would grow its memo to 2**24 slots.
  _legacy_with_pickle(path, b'\x80\x02}r' + (2**23).to_bytes(4, 'little')
                      + b'.')
  _refused_cheaply(path, 'memo index')
  # A pickle without STOP that runs to the end of the file.
  _legacy_with_pickle(path, b'\x80\x02](' + b'K\x01' * 1000)
  _refused_cheaply(path, 'corrupt pickle')


def test_sha256_is_checked_before_parsing(tmp_path, monkeypatch):
  path = tmp_path / 'w.pth'
  writer.save_torch_state_dict({'w': np.ones(3, np.float32)}, path)
  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  assert set(load_torch_state_dict(path, expected_sha256=digest[:8])) == {'w'}
  assert set(load_torch_state_dict(path, expected_sha256=digest.upper())) == {
      'w'}
  monkeypatch.setattr(zipfile, 'ZipFile', None)  # parsing would fail loudly
  other = 'f' * 8 if digest[0] != 'f' else '0' * 8
  with pytest.raises(CheckpointFormatError, match='not parsed'):
    load_torch_state_dict(path, expected_sha256=other)
  with pytest.raises(CheckpointFormatError, match='hex digits'):
    load_torch_state_dict(path, expected_sha256='abc')


def _damaged_files(tmp_path):
  """(name, path): a flipped byte in a stored member (bad CRC-32), and a
  byteorder entry of b'\\xff\\xfe'."""
  crc = tmp_path / 'crc.pth'
  weights = np.arange(64, dtype=np.float32)
  writer.save_torch_state_dict({'w': weights}, crc)
  data = bytearray(crc.read_bytes())
  at = bytes(data).index(weights.tobytes())
  data[at + 5] ^= 0xFF
  crc.write_bytes(bytes(data))
  byteorder = tmp_path / 'byteorder.pth'
  writer.save_torch_state_dict({'w': weights}, byteorder)
  with zipfile.ZipFile(byteorder) as archive:
    entries = {i.filename: archive.read(i) for i in archive.infolist()}
  entries['archive/byteorder'] = b'\xff\xfe'
  with zipfile.ZipFile(byteorder, 'w', zipfile.ZIP_STORED) as archive:
    for name, value in entries.items():
      archive.writestr(name, value)
  return [('CRC', crc), ('byteorder', byteorder)]


@pytest.mark.parametrize('converter', [convert_vgg16, convert_inception],
                         ids=['vgg16', 'inception'])
def test_converters_report_damaged_zips_in_one_line(tmp_path, capsys,
                                                    converter):
  for problem, path in _damaged_files(tmp_path):
    out = tmp_path / 'out.npz'
    assert converter.main(['--input', str(path), '--output', str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1, err
    assert str(path) in err and problem in err and 'Traceback' not in err
    assert not out.exists()
  good = tmp_path / 'good.pth'
  writer.save_torch_state_dict({'w': np.ones(2, np.float32)}, good)
  assert converter.main(['--input', str(good), '--output', str(out),
                         '--sha256', '00000000']) == 1
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'SHA-256' in err and 'not parsed' in err


def test_budget_is_a_few_times_the_file_size():
  assert torch_limits.byte_budget(1000, 4 << 30) == 4000 + (1 << 20)
  assert torch_limits.byte_budget(10 << 30, 4 << 30) == 4 << 30


# ------------------------------------------------------------ issue 32 ---
def _huge_rank_file(path, rank, side=2**61):
  storage = writer.Storage(np.ones(1, np.float32), '0')
  writer.save_torch_state_dict(
      {'w': writer.TensorView(storage, 0, (side,) * rank, (1,) * rank)}, path)
  return path


def test_huge_rank_is_refused_by_its_rank_quickly(tmp_path):
  """300 dims of 2**61 in 3.5 KB: refused by the rank, without the product
  (5600 digits, which str() refuses to format) or a quadratic walk."""
  path = _huge_rank_file(tmp_path / 'rank.pth', 300)
  assert path.stat().st_size < 8000
  message = _refused_cheaply(path, 'rank 300')
  assert str(torch_limits.MAX_TENSOR_RANK) in message
  big = _huge_rank_file(tmp_path / 'rank80k.pth', 80_000, side=2)
  _refused_cheaply(big, 'rank 80000')


def test_numel_is_bounded_with_an_early_exit():
  assert torch_limits.bounded_numel((3, 4, 5), limit=60) == 60
  assert torch_limits.bounded_numel((3, 4, 5), limit=59) is None
  assert torch_limits.bounded_numel((2**61,) * 8, limit=2**62) is None
  assert torch_limits.bounded_numel((0, 2**61, 2**61), limit=10) == 0
  assert torch_limits.bounded_numel((), limit=1) == 1


@pytest.mark.parametrize('converter', [convert_vgg16, convert_inception],
                         ids=['vgg16', 'inception'])
def test_converters_refuse_huge_ranks_in_one_line(tmp_path, capsys,
                                                  converter):
  path = _huge_rank_file(tmp_path / 'rank.pth', 300)
  out = tmp_path / 'out.npz'
  assert converter.main(['--input', str(path), '--output', str(out)]) == 1
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'rank 300' in err, err
  assert 'Traceback' not in err and not out.exists()


def _with_empty_entries(path, count, state=None):
  """A real state dict plus ``count`` empty entries (names the pickle never
  mentions)."""
  writer.save_torch_state_dict(
      {'w': np.ones(4, np.float32)} if state is None else state, path)
  with zipfile.ZipFile(path, 'a', zipfile.ZIP_STORED) as archive:
    for index in range(count):
      archive.writestr(f'archive/data/x{index}', b'')
  return path


def test_entry_count_is_refused_from_the_end_record_before_listing(
    tmp_path, monkeypatch):
  """More entries than any pickle within the opcode cap can name: refused
  from the end-of-central-directory record, before ZipFile builds one
  ZipInfo per entry (600,000 empty entries cost ~6x the file in memory)."""
  path = _with_empty_entries(tmp_path / 'many.pth',
                             torch_limits.MAX_ZIP_ENTRIES + 1)

  def no_listing(*args, **kwargs):
    raise AssertionError('ZipFile listed the archive')
  monkeypatch.setattr(zipfile, 'ZipFile', no_listing)
  message = _refused_cheaply(path, 'entries')
  assert str(torch_limits.MAX_ZIP_ENTRIES + 1 + 4) in message


def test_entries_the_pickle_does_not_name_are_refused(tmp_path):
  path = _with_empty_entries(tmp_path / 'extra.pth', 100)
  message = _refused_cheaply(path, 'entries')
  assert 'names 1 storage' in message
  # torch's own extra entries (byteorder, version, ...) are fine.
  assert len(load_torch_state_dict(_with_empty_entries(
      tmp_path / 'few.pth', 3))) == 1
