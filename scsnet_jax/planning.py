"""What a predict run may write, decided before it writes anything (the
output folder, one ``OUTPUT/<stem>.png`` per input), and the bounded
batching that streams its inputs.

``plan_outputs`` maps every input to ``OUTPUT/<stem>.png`` and refuses, per
input and before anything is decoded or run:
- an output that is an input or a protected file (a reference): the same
  file by ``os.stat`` identity (device, inode), so symlinks and hard links
  count; ``--input d --output d`` with ``a.jpg`` and ``a.png`` refuses both
  (``a.jpg`` -> ``d/a.png`` is an input; ``a.png`` -> itself);
- two inputs that would write the same output (all of them are refused:
  which one wins would be an accident of the listing order); names that
  differ only in case count as the same, for case-insensitive file systems;
- an output that is a folder, and an existing output unless ``overwrite``
  (or ``skip_existing``: then the input is left out, neither planned nor
  refused, as already done: a rerun after an interrupt).
The refused inputs get one line each; the other inputs are processed.

``Batcher`` groups inputs of the same shape into batches of at most
``batch_size``, holding at most ``batch_size`` decoded inputs and
``max_pixels`` pixels in all (an input counts the larger of its input and
output pixel counts; one larger input runs alone): a group runs as soon as it
is full, and the oldest group runs early when either bound is reached, so
decoding, inference and writing interleave and memory does not grow with the
folder (inputs of mixed sizes batch less).
"""

from __future__ import annotations

import collections
import os
import tempfile
from typing import Iterable, Optional, Sequence


# Default bound on the pixels held for batching (``--max-batch-pixels``):
# 16.8 M, e.g. four 2048 x 2048 outputs; one larger image runs alone.
DEFAULT_MAX_BATCH_PIXELS = 1 << 24


def _identity(path: str) -> Optional[tuple[int, int]]:
  try:
    status = os.stat(path)
  except OSError:   # absent (or a dangling link): it is nobody's input
    return None
  return status.st_dev, status.st_ino


def _name_key(path: str) -> str:
  return os.path.normcase(os.path.abspath(path)).casefold()


def output_path(output_dir: str, input_path: str) -> str:
  """OUTPUT/<input stem>.png"""
  stem = os.path.splitext(os.path.basename(input_path))[0]
  return os.path.join(output_dir, stem + '.png')


def check_output_dir(output_dir: str) -> None:
  """Creates the folder; raises OSError with a one-line reason if unusable."""
  output_dir = os.fspath(output_dir)
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise OSError(f'{output_dir}: --output is an existing file, but it must '
                  'be a folder (one <input name>.png is written into it per '
                  'input); give a folder path, e.g. --output out/')
  try:
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output_dir, prefix='.probe-'):
      pass
  except OSError as error:
    raise OSError(f'{output_dir}: output folder is not writable '
                  f'({error.strerror or error})') from None


def plan_outputs(files: Sequence[str], output_dir: str, *, overwrite: bool,
                 protected: Iterable[str] = (), skip_existing: bool = False
                 ) -> tuple[list[tuple[str, str]], list[str]]:
  """[(input, output)] safe to write, and one line per refused input
  (``PATH: problem``), in input order; with ``skip_existing`` the inputs
  whose output exists are in neither list."""
  guarded = {}
  for path in [*files, *protected]:
    identity = _identity(path)
    if identity is not None:
      guarded.setdefault(identity, path)
  dests = [output_path(output_dir, path) for path in files]
  by_name = collections.defaultdict(list)
  for path, dest in zip(files, dests):
    by_name[_name_key(dest)].append(path)
  inputs = set(files)
  plan, refused = [], []
  for path, dest in zip(files, dests):
    identity = _identity(dest)
    others = [p for p in by_name[_name_key(dest)] if p != path]
    if identity is not None and identity in guarded:
      owner = guarded[identity]
      what = ('this input itself' if owner == path else
              f'the input {owner}' if owner in inputs else
              f'the reference {owner}')
      refused.append(f'{path}: output {dest} is {what}; refusing to '
                     'overwrite it (give another --output folder)')
    elif others:
      refused.append(f'{path}: output {dest} would also be written for '
                     f'{others[0]}; refusing both (rename one, or run them '
                     'with separate --output folders)')
    elif os.path.isdir(dest):
      refused.append(f'{path}: output {dest} is an existing folder')
    elif os.path.lexists(dest) and skip_existing:
      continue
    elif os.path.lexists(dest) and not overwrite:
      refused.append(f'{path}: output {dest} already exists; refusing to '
                     'replace it (pass --overwrite to replace outputs)')
    else:
      plan.append((path, dest))
  return plan, refused


class Batcher:
  """Items of equal key -> batches; at most ``batch_size`` items and
  ``max_pixels`` pixels are held between calls.

  ``add`` returns the batches ready to run, as ``[(key, [item, ...])]``;
  ``drain`` returns the rest at the end.
  """

  def __init__(self, batch_size: int, max_pixels: int):
    self.batch_size, self.max_pixels = batch_size, max_pixels
    self._groups: dict = {}   # key -> [items]; insertion order = age
    self._pixels: dict = {}   # key -> pixels held
    self.held_pixels = self.held_items = 0

  def _pop(self, key):
    self.held_pixels -= self._pixels.pop(key)
    self.held_items -= len(self._groups[key])
    return key, self._groups.pop(key)

  def add(self, key, item, pixels: int) -> list:
    self._groups.setdefault(key, []).append(item)
    self._pixels[key] = self._pixels.get(key, 0) + pixels
    self.held_pixels += pixels
    self.held_items += 1
    ready = []
    if (len(self._groups[key]) >= self.batch_size
        or self._pixels[key] >= self.max_pixels):
      ready.append(self._pop(key))
    while self._groups and (self.held_items >= self.batch_size
                            or self.held_pixels > self.max_pixels):
      ready.append(self._pop(next(iter(self._groups))))
    return ready

  def drain(self) -> list:
    return [self._pop(key) for key in list(self._groups)]
