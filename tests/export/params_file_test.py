"""params_file: the compact .npz form of generator parameters."""

import os
import zipfile

import jax
import numpy as np
import pytest

from scsnet_jax import hashing
from scsnet_jax.errors import UserError
from scsnet_jax.export import params_file


def _tree(seed=0):
  rng = np.random.default_rng(seed)
  return {'conv': {'kernel': rng.normal(0, 0.05, (3, 3, 2, 4)).astype(
              np.float32), 'bias': rng.normal(0, 0.01, 4).astype(np.float32)},
          'levels': {'0': {'w': rng.normal(0, 1, (5,)).astype(np.float32)}}}


def _like(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def test_round_trip_float16_and_float32(tmp_path):
  tree = _tree()
  path = str(tmp_path / 'p.npz')
  digest = params_file.save_params(tree, path)
  assert digest == hashing.file_sha256(path)
  loaded = params_file.load_params(path, _like(tree), digest)
  for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(tree)):
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want.astype(np.float16)
                                  .astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7)
  params_file.save_params(tree, str(tmp_path / 'q.npz'), 'float32')
  exact = params_file.load_params(str(tmp_path / 'q.npz'), _like(tree))
  for got, want in zip(jax.tree.leaves(exact), jax.tree.leaves(tree)):
    np.testing.assert_array_equal(got, want)


def test_foreign_damaged_and_tampered_files_are_one_line(tmp_path):
  tree = _tree()
  path = str(tmp_path / 'p.npz')
  params_file.save_params(tree, path)
  other = {**tree, 'extra': {'w': np.zeros(3, np.float32)}}
  with pytest.raises(UserError, match='not this generator'):
    params_file.load_params(path, _like(other))
  reshaped = {**tree, 'conv': {**tree['conv'], 'bias': np.zeros(5)}}
  with pytest.raises(UserError, match='expected a float array'):
    params_file.load_params(path, _like(reshaped))
  with pytest.raises(UserError, match='SHA-256'):
    params_file.load_params(path, _like(tree), '0' * 64)
  bad = {**tree, 'conv': {**tree['conv'], 'bias': np.full(4, np.inf)}}
  params_file.save_params(bad, str(tmp_path / 'inf.npz'), 'float32')
  with pytest.raises(UserError, match='non-finite'):
    params_file.load_params(str(tmp_path / 'inf.npz'), _like(tree))
  (tmp_path / 'text.npz').write_text('hello')
  with pytest.raises(UserError, match='not a parameters .npz'):
    params_file.load_params(str(tmp_path / 'text.npz'), _like(tree))
  os.mkfifo(tmp_path / 'pipe.npz')
  with pytest.raises(UserError, match='not a regular file'):
    params_file.load_params(str(tmp_path / 'pipe.npz'), _like(tree))


def test_an_entry_that_expands_past_its_parameter_is_refused_unread(tmp_path):
  """A deflated member of 64 MB of zeros in a file of ~64 KB."""
  tree = _tree()
  path = tmp_path / 'bomb.npz'
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
    with archive.open('conv/bias.npy', 'w', force_zip64=True) as member:
      zeros = bytes(1 << 20)
      for _ in range(64):
        member.write(zeros)
  assert os.path.getsize(path) < 1 << 20
  with pytest.raises(UserError, match='expands to'):
    params_file.load_params(str(path), _like(tree))
