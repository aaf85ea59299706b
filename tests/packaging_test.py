"""``pip install .`` alone (pyproject ``dependencies``) runs predict,
export and the benchmark import: the promise of the core install."""

import os
import subprocess
import sys

from tests.paths import REPO_ROOT as ROOT
from tests.predict_test import SAMPLE, workdir  # noqa: F401  (a fixture)


def _core_site_packages(view):
  """A folder of links to what ``pip install .`` would install: the
  pyproject ``dependencies`` and theirs, transitively (from the installed
  metadata), each distribution's top-level files and its dist-info."""
  import importlib.metadata as md
  import tomllib
  from packaging.requirements import Requirement
  from packaging.utils import canonicalize_name

  def name_of(requirement):
    return canonicalize_name(Requirement(requirement).name)

  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    todo = [name_of(d) for d in tomllib.load(f)['project']['dependencies']]
  done = set()
  while todo:
    name = todo.pop()
    if name in done:
      continue
    done.add(name)
    dist = md.distribution(name)   # a declared dependency must be installed
    for text in dist.requires or []:
      requirement = Requirement(text)
      if (requirement.marker is None or
          requirement.marker.evaluate({'extra': ''})):
        todo.append(canonicalize_name(requirement.name))
    for file in dist.files or []:
      top = file.parts[0]
      if top == '..' or top == '__pycache__' or top.endswith('.pth'):
        continue
      source = os.path.join(str(dist.locate_file('')), top)
      target = os.path.join(view, top)
      if os.path.exists(source) and not os.path.lexists(target):
        os.symlink(source, target)
  return done


_CORE_ONLY = r'''
import sys
assert not [p for p in sys.path if 'site-packages' in p], sys.path
workdir, tmp, image = sys.argv[1:4]
import scsnet_jax.benchmark
from scsnet_jax import predict
from scsnet_jax.export import cli as export
exported = f'{tmp}/export'
assert export.main(['--checkpoint', workdir, '--output', exported,
                    '--scales', '2', '--modes', 'automatic',
                    '--platforms', 'cpu']) == 0
for index, checkpoint in enumerate([workdir, exported]):
  assert predict.main(['--checkpoint', checkpoint, '--input', image,
                       '--output', f'{tmp}/out{index}', '--scale', '2']) == 0
print('core ok')
'''


def test_core_dependencies_are_enough_for_predict_and_export(workdir,
                                                             tmp_path):
  """With only what ``pip install .`` installs on the path (no
  site-packages), export, predict on a workdir and on the export run and
  the benchmark imports. (.ci/core_install_check.sh does it for real, in a
  fresh venv.)"""
  view = tmp_path / 'site'
  view.mkdir()
  installed = _core_site_packages(str(view))
  assert 'tensorflow' not in installed and 'grain' not in installed
  result = subprocess.run(
      [sys.executable, '-S', '-c', _CORE_ONLY, workdir, str(tmp_path),
       SAMPLE], capture_output=True, text=True, cwd=str(tmp_path),
      timeout=600, env={**os.environ, 'JAX_PLATFORMS': 'cpu',
                        'PYTHONPATH': f'{view}{os.pathsep}{ROOT}'})
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith('core ok')
  assert os.listdir(tmp_path / 'out0') == os.listdir(tmp_path / 'out1') == [
      'chelsea_gray_lr.png']
