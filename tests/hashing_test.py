"""hashing.file_sha256 against hashlib on the whole bytes, across the block
size and for an empty file."""

import hashlib

from scsnet_jax import hashing


def test_file_sha256_matches_hashlib_of_the_whole_file(tmp_path):
  for size in (0, 1, hashing.BLOCK_BYTES, hashing.BLOCK_BYTES + 7):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path = tmp_path / f'{size}.bin'
    path.write_bytes(data)
    assert hashing.file_sha256(str(path)) == hashlib.sha256(data).hexdigest()
  assert hashing.file_sha256(str(tmp_path / '0.bin')) == (
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
