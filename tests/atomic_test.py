"""atomic.py: all-or-nothing writes (temp file in the same folder, fsync,
rename, fsync of the folder) and their users."""

import json
import os
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest

from scsnet_jax import atomic


def test_writes_replace_whole_files_with_umask_permissions(tmp_path):
  path = tmp_path / 'report.json'
  path.write_text('old')
  atomic.write_json(path, {'a': 1}, indent=2)
  assert json.loads(path.read_text()) == {'a': 1}
  assert os.listdir(tmp_path) == ['report.json']
  umask = os.umask(0o022)
  os.umask(umask)
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
  path = tmp_path / 'config.json'
  path.write_text('old')
  with pytest.raises(TypeError):
    atomic.write_json(path, {'a': object()})
  with pytest.raises(RuntimeError):
    with atomic.open_atomic(path) as f:
      f.write(b'half')
      raise RuntimeError('crash mid-write')
  assert path.read_text() == 'old'
  assert os.listdir(tmp_path) == ['config.json']


def test_file_and_folder_are_fsynced(tmp_path, monkeypatch):
  synced = []
  real = os.fsync
  def fsync(fd):
    synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
    real(fd)
  monkeypatch.setattr(os, 'fsync', fsync)
  atomic.write_text(tmp_path / 'a.txt', 'x')
  assert synced == [False, True]   # the file, then its folder after rename


def test_pngs_configs_and_converted_weights_go_through_the_helper(
    tmp_path, monkeypatch):
  from scsnet_jax import image_files
  from scsnet_jax.pretrained import vgg
  from scsnet_jax.train import loop
  import ml_collections
  written = []
  real = atomic.open_atomic
  def spy(path, mode='wb'):
    written.append(os.path.basename(os.fspath(path)))
    return real(path, mode)
  monkeypatch.setattr(atomic, 'open_atomic', spy)
  image_files.write_png_atomic(str(tmp_path / 'out.png'),
                               np.zeros((2, 2, 3), np.uint8))
  loop._write_config(str(tmp_path),   # pylint: disable=protected-access
                     ml_collections.ConfigDict({'train': {'steps': 3}}))
  vgg.save_vgg16_params({'conv1_1': {'kernel': np.zeros(1),
                                     'bias': np.zeros(1)}},
                        str(tmp_path / 'vgg.npz'))
  assert written == ['out.png', 'config.json', 'vgg.npz']
  assert sorted(os.listdir(tmp_path)) == ['config.json', 'out.png', 'vgg.npz']
  assert vgg.np.load(tmp_path / 'vgg.npz')['conv1_1/bias'].shape == (1,)


def test_read_umask_matches_the_shell_and_leaves_it_alone():
  old = os.umask(0o027)
  try:
    shell = subprocess.run(['sh', '-c', 'umask'], capture_output=True,
                           text=True, check=True).stdout
    assert atomic.read_umask() == int(shell.strip(), 8) == 0o027
  finally:
    os.umask(old)


def test_concurrent_umask_reads_never_loosen_new_folders(tmp_path):
  """Setting the umask to 0 to read it (the old helper) gives folders that
  other threads create meanwhile mode 0o777."""
  old_umask, old_interval = os.umask(0o022), sys.getswitchinterval()
  sys.setswitchinterval(1e-6)
  stop = threading.Event()

  def read_umask():
    while not stop.is_set():
      atomic.read_umask()

  def make_folders(worker):
    for i in range(400):
      os.mkdir(tmp_path / f'{worker}-{i}')

  readers = [threading.Thread(target=read_umask) for _ in range(3)]
  makers = [threading.Thread(target=make_folders, args=(w,)) for w in range(3)]
  try:
    for thread in readers + makers:
      thread.start()
    for thread in makers:
      thread.join()
  finally:
    stop.set()
    for thread in readers:
      thread.join()
    sys.setswitchinterval(old_interval)
    os.umask(old_umask)
  modes = {stat.S_IMODE(entry.stat().st_mode) for entry in os.scandir(tmp_path)}
  assert modes == {0o755}, sorted(oct(mode) for mode in modes)
