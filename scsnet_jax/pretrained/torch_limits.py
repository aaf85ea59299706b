"""Resource limits for reading untrusted PyTorch files (``torch_reader``).

The allow-listed unpickler stops a weight file from running code; these
limits stop it from costing much more memory or time than its size:
- ``byte_budget``: the bytes that may be materialised (storages expanded from
  the archive, and the tensors copied out of them) are at most
  ``BUDGET_FACTOR`` x the file size + ``BUDGET_SLACK`` (and never more than
  the caller's ``max_bytes``). A legitimate file needs about 1x: torch saves
  every storage once and every tensor is a view of one.
- ``scan_pickle``: before the C unpickler sees a pickle, a pure opcode scan
  (``pickletools.genops``, which builds no containers) refuses pickles over
  ``MAX_PICKLE_BYTES`` or ``MAX_PICKLE_OPS`` opcodes (each builds at most one
  object of ~100 bytes, so ~50 MB at most: an 8 KB deflated pickle of 8M
  empty dicts would otherwise cost 680 MiB) and memo indices beyond the
  opcode cap (the C unpickler grows its memo table to twice the index: a
  6-byte ``LONG_BINPUT 2**31`` would allocate 32 GiB).
- ``check_view``: a tensor may not read more elements than its storage holds,
  so a stride-0 broadcast (772 bytes declaring 2**27 copies of one float) is
  refused, not copied.
- ``check_rank`` and ``bounded_numel``: a tensor has at most
  ``MAX_TENSOR_RANK`` dimensions, and its element count is multiplied out
  only up to a limit (a 3.5 KB file with 300 dimensions of 2**61 names a
  5,600-digit count, which Python refuses to format, and 80,000 dimensions
  took 34 s of big-integer products).
- ``zip_entry_count``: a zip archive may hold one entry per storage its
  pickle names plus ``EXTRA_ZIP_ENTRIES`` (torch's byteorder, version, ...).
  ``zipfile.ZipFile`` builds a ZipInfo for every entry when it opens an
  archive (600,000 empty entries cost ~6x the file in memory), so the count
  is first read from the end-of-central-directory record, and an archive
  with more than ``MAX_ZIP_ENTRIES`` (more than a pickle within the opcode
  cap can name) is refused before it is listed; the exact check follows the
  pickle.
- ``short_repr``: error messages show bounded reprs (``reprlib``), never a
  full ``repr`` cut afterwards (that costs the whole repr first).
- ``check_sha256``: a known digest is checked before anything is parsed.
"""

from __future__ import annotations

import pickletools
import reprlib
import zipfile

from scsnet_jax.hashing import file_sha256
from scsnet_jax.errors import UserError

BUDGET_FACTOR = 4
BUDGET_SLACK = 1 << 20          # 1 MiB: tiny files, shared-storage views
MAX_PICKLE_BYTES = 16 << 20     # VGG16's pickle is ~5 KB, Inception's ~60 KB
MAX_PICKLE_OPS = 500_000        # ~32 opcodes per tensor: ~15k tensors
_MEMO_PUTS = ('PUT', 'BINPUT', 'LONG_BINPUT')
# Entries a torch zip holds besides one per storage: data.pkl, byteorder,
# version, .data/version, .data/serialization_id, .format_version,
# .storage_alignment, and folder entries some zip tools add.
EXTRA_ZIP_ENTRIES = 16
# ~32 opcodes per tensor: no pickle within MAX_PICKLE_OPS names more storages.
MAX_ZIP_ENTRIES = MAX_PICKLE_OPS // 32 + EXTRA_ZIP_ENTRIES
# Dimensions a tensor may have: weights have at most 5 (Conv3d); torch
# itself caps many kernels at 25.
MAX_TENSOR_RANK = 16


class CheckpointFormatError(UserError):
  """The file is not a readable PyTorch checkpoint (or breaks a size limit)."""


class UnsafeCheckpointError(CheckpointFormatError):
  """The pickle names a global outside the allow-list; nothing was run."""


class _ShortRepr(reprlib.Repr):
  """reprlib with small limits; huge ints by size (repr would be slow)."""

  def __init__(self):
    super().__init__()
    self.maxlevel, self.maxtuple, self.maxlist, self.maxdict = 3, 6, 6, 4
    self.maxstring = self.maxother = self.maxlong = 40

  def repr_int(self, x, level):
    if x.bit_length() > 128:
      return f'<int of {x.bit_length()} bits>'
    return super().repr_int(x, level)


_SHORT = _ShortRepr()


def short_repr(value) -> str:
  """A repr of at most ~100 characters, built without the full repr."""
  try:
    return _SHORT.repr(value)
  except Exception:  # A stand-in whose repr fails: its type is enough.
    return f'<{type(value).__name__}>'


def zip_entry_count(path: str) -> int:
  """The entry count of a zip archive's end-of-central-directory record
  (zip64 included), read without listing the entries; refuses more than
  ``MAX_ZIP_ENTRIES``."""
  with open(path, 'rb') as f:
    # zipfile's own reader of the end record (what ZipFile trusts too).
    end = zipfile._EndRecData(f)  # pylint: disable=protected-access
  if end is None:
    raise CheckpointFormatError(f'{path}: damaged zip archive (no end of '
                                'central directory record)')
  count = end[zipfile._ECD_ENTRIES_TOTAL]  # pylint: disable=protected-access
  if count > MAX_ZIP_ENTRIES:
    raise CheckpointFormatError(
        f'{path}: the archive has {count} entries, more than the '
        f'{MAX_ZIP_ENTRIES} any state dict within the pickle limits needs: '
        'refused before listing them')
  return count


def check_zip_entries(path: str, count: int, storages: int) -> None:
  """Refuses an archive with more entries than its pickle's ``storages``
  plus torch's few extra files."""
  if count > storages + EXTRA_ZIP_ENTRIES:
    raise CheckpointFormatError(
        f'{path}: the archive has {count} entries but its pickle names '
        f'{storages} storage(s) (at most {EXTRA_ZIP_ENTRIES} other entries '
        'are expected): refused')


def byte_budget(file_size: int, max_bytes: int) -> int:
  """The materialised bytes allowed for a file of ``file_size`` bytes."""
  return min(max_bytes, BUDGET_FACTOR * file_size + BUDGET_SLACK)


def check_rank(size) -> None:
  """Refuses a tensor size record (a tuple or list) with more than
  ``MAX_TENSOR_RANK`` entries, before any entry is looked at."""
  if isinstance(size, (tuple, list)) and len(size) > MAX_TENSOR_RANK:
    raise CheckpointFormatError(
        f'tensor of rank {len(size)}: refused, more than '
        f'{MAX_TENSOR_RANK} dimensions (no weight has that many)')


def bounded_numel(shape: tuple[int, ...], limit: int):
  """``math.prod(shape)`` if it is at most ``limit``, else None; stops as
  soon as the running product passes ``limit`` (an empty dimension makes
  it 0), so no huge integer is built."""
  if 0 in shape:
    return 0
  numel = 1
  for n in shape:
    numel *= n
    if numel > limit:
      return None
  return numel


def check_view(shape: tuple[int, ...], stride: tuple[int, ...], offset: int,
               storage_size: int, itemsize: int, budget: list[int]) -> None:
  """Refuses a strided view (element units) of a storage of
  ``storage_size`` elements that broadcasts (stride 0), overlaps into more
  elements than the storage has, reads past it, or needs more bytes than
  ``budget[0]``; otherwise takes its bytes from ``budget[0]``."""
  check_rank(shape)
  numel = bounded_numel(shape, storage_size)
  if any(n > 1 and s == 0 for n, s in zip(shape, stride)):
    raise CheckpointFormatError(
        f'tensor of shape {short_repr(shape)} has stride 0 (a broadcast): '
        'refused, it would multiply its storage in memory')
  if numel is None:   # never formatted: it may have thousands of digits
    raise CheckpointFormatError(
        f'tensor of shape {short_repr(shape)} reads more than its storage '
        f'of {storage_size} elements (overlapping strides)')
  last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
  if last >= storage_size:
    raise CheckpointFormatError(
        f'tensor of shape {short_repr(shape)}, stride {short_repr(stride)} '
        f'and offset {offset} reads past its storage of {storage_size} '
        'elements')
  if numel * itemsize > budget[0]:
    raise CheckpointFormatError(
        f'tensor of shape {short_repr(shape)} exceeds the byte budget left '
        f'({budget[0]} bytes; the limit is a few times the file size)')
  budget[0] -= numel * itemsize


def scan_pickle(data: bytes, where: str) -> int:
  """Checks one pickle's opcodes; returns its length (through STOP).

  ``data`` may continue past the pickle (the legacy format's stream), but
  must hold all of it: a pickle without STOP in the first
  ``MAX_PICKLE_BYTES`` bytes is refused as too large.
  """
  ops, end = 0, None
  try:
    for opcode, arg, pos in pickletools.genops(data):
      ops += 1
      if ops > MAX_PICKLE_OPS:
        raise CheckpointFormatError(
            f'{where}: the pickle has more than {MAX_PICKLE_OPS} opcodes '
            '(a state dict needs ~32 per tensor): refused, not built')
      if opcode.name in _MEMO_PUTS and (not isinstance(arg, int)
                                        or arg > MAX_PICKLE_OPS):
        raise CheckpointFormatError(
            f'{where}: pickle memo index {short_repr(arg)} is implausible '
            '(it would allocate a huge memo table)')
      end = pos + 1
      if end > MAX_PICKLE_BYTES:
        raise CheckpointFormatError(
            f'{where}: the pickle is over {MAX_PICKLE_BYTES} bytes')
  except CheckpointFormatError:
    raise
  except Exception as error:  # Truncated or garbled opcodes.
    if len(data) > MAX_PICKLE_BYTES:
      raise CheckpointFormatError(
          f'{where}: the pickle is over {MAX_PICKLE_BYTES} bytes') from None
    raise CheckpointFormatError(
        f'{where}: corrupt pickle ({type(error).__name__}: '
        f'{str(error)[:200]})') from None
  if end is None:
    raise CheckpointFormatError(f'{where}: empty pickle')
  return end


def check_sha256(path: str, expected: str) -> None:
  """Raises ``CheckpointFormatError`` unless the file's SHA-256 starts with
  ``expected`` (hex, at least 8 digits: torchvision's and pytorch-fid's file
  names carry the first 8)."""
  expected = expected.strip().lower()
  if len(expected) < 8 or len(expected) > 64 or any(
      c not in '0123456789abcdef' for c in expected):
    raise CheckpointFormatError(
        f'expected SHA-256 {short_repr(expected)} is not 8 to 64 hex digits')
  actual = file_sha256(path)
  if not actual.startswith(expected):
    raise CheckpointFormatError(
        f'{path}: SHA-256 is {actual[:len(expected)]}..., expected '
        f'{expected}: a different or damaged file (not parsed)')
