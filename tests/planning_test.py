"""planning.py on its own (no model): which outputs a predict run
may write, decided from the file system alone, and the bounded batcher.
tests/predict_outputs_test.py drives the same through the CLI."""

import os

import numpy as np
import pytest

from scsnet_jax import planning


def test_plan_refuses_inputs_shared_names_references_and_existing(tmp_path):
  for name in ('a.jpg', 'a.png', 'b.png', 'c.webp', 'd.png', 'ref.png'):
    (tmp_path / name).write_bytes(b'x')
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'c.png').write_bytes(b'old')
  os.symlink(tmp_path / 'ref.png', out / 'd.png')   # output -> reference
  same_dir = [str(tmp_path / n) for n in ('a.jpg', 'a.png', 'b.png')]
  plan, refused = planning.plan_outputs(same_dir, str(tmp_path),
                                        overwrite=True)
  # a.jpg and a.png both map to a.png (an input, and a shared name); b.png
  # maps to itself.
  assert plan == [] and len(refused) == 3
  assert all(line.startswith(path + ': ') for line, path in
             zip(refused, same_dir))
  files = [str(tmp_path / n) for n in ('b.png', 'c.webp', 'd.png')]
  plan, refused = planning.plan_outputs(
      files, str(out), overwrite=False, protected=[str(tmp_path / 'ref.png')])
  assert plan == [(files[0], str(out / 'b.png'))]
  assert [line.split(': ')[0] for line in refused] == files[1:]
  assert 'already exists' in refused[0] and '--overwrite' in refused[0]
  assert f'the reference {tmp_path / "ref.png"}' in refused[1]
  plan, refused = planning.plan_outputs(
      files[1:2], str(out), overwrite=True)   # --overwrite: c.png replaced
  assert plan == [(files[1], str(out / 'c.png'))] and refused == []
  assert (out / 'c.png').read_bytes() == b'old'   # planning writes nothing


@pytest.mark.parametrize('batch_size,max_pixels', [(1, 100), (3, 1000),
                                                   (4, 250), (8, 10**9)])
def test_batcher_bounds_what_it_holds(batch_size, max_pixels):
  rng = np.random.default_rng(batch_size)
  batcher = planning.Batcher(batch_size, max_pixels)
  keys = rng.integers(0, 3, 60)
  out = []
  for index, key in enumerate(keys):
    out += batcher.add(int(key), index, 50 * (int(key) + 1))
    assert batcher.held_items < batch_size
    assert batcher.held_pixels <= max_pixels
  out += batcher.drain()
  assert sorted(i for _, items in out for i in items) == list(range(60))
  for key, items in out:
    assert 1 <= len(items) <= batch_size
    assert all(keys[i] == key for i in items)
  same = planning.Batcher(batch_size, 10**9)   # one shape: full batches
  full = [len(items) for i in range(2 * batch_size)
          for _, items in same.add('k', i, 50)]
  assert full == [batch_size, batch_size] and same.drain() == []
