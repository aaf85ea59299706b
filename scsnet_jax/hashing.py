"""SHA-256 of a file, read in 1 MiB blocks (memory flat in the file's size).

One helper for every place that names a file by its content: shipped and
exported weights (``export.params_file``), registry packages' weight files
(``pretrained``), gallery cache keys (``retrieval.features``).
"""

from __future__ import annotations

import hashlib

BLOCK_BYTES = 1 << 20


def file_sha256(path: str) -> str:
  """The file's SHA-256 as 64 lowercase hex digits."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(BLOCK_BYTES), b''):
      digest.update(block)
  return digest.hexdigest()
