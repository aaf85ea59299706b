"""The README walkthrough: its commands, in order, as a new user runs them;
and every python snippet of README.md and docs/*.md (the end of this file).

main job on the demo -> predict on the shipped sample -> eval on the demo
workdir -> export -> predict on the export. The commands are read from
README.md (so README and code cannot drift apart); only paths are moved
into a temporary folder, and the main job gets a few extra
``--config.train.*`` flags so it trains 4 steps instead of the demo's 100.
Runs on one CPU device, as on a laptop (not the suite's 8 fake devices).
"""

import json
import os
import re
import shlex
import subprocess
import sys
from typing import Optional

import numpy as np
import pytest
from PIL import Image

from tests.paths import REPO_ROOT
from tests import helpers
SAMPLE = os.path.join('docs', 'images', 'chelsea_gray_lr.png')
FAST_DEMO = {'train.steps': 4, 'train.checkpoint_every_steps': 4,
             'train.sample_every_steps': 4, 'train.log_every_steps': 2,
             'train.eval_every_steps': 0}


def readme_commands() -> list[list[str]]:
  """Every ``python -m scsnet_jax.*`` command of README.md, as argv lists."""
  with open(os.path.join(REPO_ROOT, 'README.md')) as f:
    text = f.read()
  lines = []
  for block in re.findall(r'```(?:bash)?\n(.*?)```', text, flags=re.S):
    lines += block.replace('\\\n', ' ').split('\n')
  lines += [' '.join(span.split())
            for span in re.findall(r'(?<!`)`([^`]+)`(?!`)', text)]
  commands = []
  for line in lines:
    if True:
      line = re.sub(r'\[[^\]]*\]', ' ', line.split('#')[0])  # [optional]
      for part in line.split('&&'):
        part = ' '.join(part.split())
        if part.startswith('python -m scsnet_jax.'):
          commands.append(shlex.split(part))
  return commands


def _find(commands, module, *needles):
  for argv in commands:
    if argv[2] == f'scsnet_jax.{module}' and all(
        any(n in a for a in argv) for n in needles):
      return list(argv)
  return None


def _flag(argv, name):
  for index, arg in enumerate(argv):
    if arg == name:
      return argv[index + 1]
    if arg.startswith(name + '='):
      return arg.split('=', 1)[1]
  return None


def _replace(argv, old, new):
  """Swaps a path in every argument (flag=value and separate values)."""
  out = []
  old = old.rstrip('/')
  for arg in argv:
    if arg.rstrip('/') == old:
      out.append(new)
    elif arg.startswith('--') and '=' in arg and arg.split(
        '=', 1)[1].rstrip('/') == old:
      out.append(arg.split('=', 1)[0] + '=' + new)
    else:
      out.append(arg)
  return out


def _env():
  env = dict(os.environ)
  env.pop('XLA_FLAGS', None)   # one device, as a user has
  env['JAX_PLATFORMS'] = 'cpu'
  return env


def _run(argv, timeout=900):
  result = subprocess.run([sys.executable] + argv[1:], cwd=REPO_ROOT,
                          env=_env(), capture_output=True, text=True,
                          timeout=timeout)
  assert result.returncode == 0, (argv, result.stderr[-4000:])
  assert 'Traceback' not in result.stderr, result.stderr[-4000:]
  return result


def _sample_input(tmp_path) -> str:
  """The gray sample the README names, or one made from a skimage photo."""
  if os.path.isfile(os.path.join(REPO_ROOT, SAMPLE)):
    return SAMPLE
  from skimage import data  # pylint: disable=g-import-not-at-top
  photo = Image.fromarray(data.chelsea()).convert('L')
  path = tmp_path / 'chelsea_gray_lr.png'
  photo.resize((photo.width // 4, photo.height // 4), Image.BICUBIC).save(path)
  return str(path)


@pytest.mark.slow
def test_readme_walkthrough(tmp_path):
  commands = readme_commands()
  workdir = str(tmp_path / 'demo_workdir')
  exported = str(tmp_path / 'exported')

  # 1. The main job on the demo photos (shortened: 4 steps).
  train = _find(commands, 'main', '--config=configs/demo.py')
  assert train is not None, 'README lost its demo command'
  train = _replace(train, 'demo_workdir', workdir)
  from scsnet_jax import command_line, config_lib
  demo = config_lib.load_sibling_config(
      os.path.join(REPO_ROOT, 'configs', 'demo.py'), 'demo')
  train += [f'--config.{k}={v}' for k, v in FAST_DEMO.items()
            if command_line.unknown_key(demo, k) is None]
  result = _run(train)
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '4'))
  assert os.path.isfile(os.path.join(workdir, 'config.json'))
  # Library chatter is hidden at the default verbosity (issue 12, item 14).
  for noise in ('checkpoint_manager.py', 'oneDNN', 'jax_array_handlers.py'):
    assert noise not in result.stderr, noise
  # Progress is shown by default, at INFO (absl's "I" prefix), not WARNING
  # (issue 22, item 11).
  assert re.search(r'^I\d{4} .*step 4/4  loss G', result.stderr, re.M), (
      result.stderr[-3000:])
  assert not re.search(r'^W\d{4} .*step \d+/4', result.stderr, re.M)
  assert re.search(r'^I\d{4} .*finished at step 4\.', result.stderr, re.M)

  # 2. Predict on the shipped sample (or a photo made the same way).
  candidates = [c for c in commands if c[2] == 'scsnet_jax.predict'
                and 'demo_workdir' in c]
  assert candidates, 'README lost its predict command for the demo'
  shipped = [c for c in candidates if os.path.isfile(
      os.path.join(REPO_ROOT, _flag(c, '--input') or ''))]
  predict = list((shipped or candidates)[0])
  sample = _sample_input(tmp_path)
  predict = _replace(predict, 'demo_workdir', workdir)
  given_input = _flag(predict, '--input')
  if not os.path.isfile(os.path.join(REPO_ROOT, given_input or '')):
    predict = _replace(predict, given_input, sample)
  predict = _replace(predict, _flag(predict, '--output').rstrip('/'),
                     str(tmp_path / 'out'))
  _run(predict)
  scale = float(_flag(predict, '--scale') or 4)
  source = Image.open(os.path.join(REPO_ROOT, _flag(predict, '--input')))
  outputs = sorted(os.listdir(tmp_path / 'out'))
  assert len(outputs) == 1 and outputs[0].endswith('.png')
  image = Image.open(tmp_path / 'out' / outputs[0])
  assert image.mode == 'RGB'
  assert image.size == (round(source.width * scale),
                        round(source.height * scale))

  # 3. Eval on the demo workdir, without --config.
  evaluate = _find(commands, 'main', '--mode=eval', 'demo_workdir')
  assert evaluate is not None, 'README lost its eval command for the demo'
  assert _flag(evaluate, '--config') is None
  result = _run(_replace(evaluate, 'demo_workdir', workdir))
  # The table it wrote, and what it lacked, said plainly (issue 22, item 8).
  assert '| scsnet |' in result.stderr and 'images per mode:' in result.stderr
  assert 'FID is not computed' in result.stderr
  with open(os.path.join(workdir, 'eval', 'metrics_4.json')) as f:
    report = json.load(f)
  counts = {m: e['num_images'] for m, e in report['results'].items()}
  assert counts['automatic'] >= 1 and counts['self_reference'] >= 1, counts
  assert report['results']['automatic']['scsnet']['psnr'] > 0

  # 4. Export.
  export = _find(commands, 'export', '--checkpoint', 'demo_workdir')
  assert export is not None
  export = _replace(_replace(export, 'demo_workdir', workdir), 'exported',
                    exported)
  _run(export)
  assert os.listdir(exported)

  # 5. Predict on the export (the README's command if it has one).
  from_export = _find(commands, 'predict', '--checkpoint', 'exported')
  if from_export is None:
    from_export = ['python', '-m', 'scsnet_jax.predict', '--checkpoint',
                   'exported', '--input', sample, '--output', 'out2/',
                   '--scale', '4']
  from_export = _replace(from_export, 'exported', exported)
  if not os.path.isfile(os.path.join(REPO_ROOT, _flag(from_export,
                                                      '--input'))):
    from_export = _replace(from_export, _flag(from_export, '--input'), sample)
  from_export = _replace(from_export,
                         _flag(from_export, '--output').rstrip('/'),
                         str(tmp_path / 'out2'))
  _run(from_export)
  outputs = sorted(os.listdir(tmp_path / 'out2'))
  assert len(outputs) == 1
  exported_image = np.asarray(Image.open(tmp_path / 'out2' / outputs[0]))
  assert exported_image.ndim == 3 and exported_image.shape[2] == 3


# ------------------------------------------------ every documented snippet ---
# Each ```python block of README.md and docs/*.md runs here, in a folder laid
# out with the names the docs use: runs/x4 (a training workdir at step 0),
# deploy/x4 (its export at x4), old.jpg/old.png (a photo), inception.npz
# (right shapes, zero weights: this tests the calls, not FID values). A block
# that needs something else says so by its marker and is run where that is:
RUN_ELSEWHERE = {
    'app-client-snippet': 'tests/app_test.py',   # needs a live web app
    # needs EfficientNet-Lite0's weights and a folder of photos
    'gallery-api-snippet': 'tests/retrieval/api_test.py',
}
_SNIPPET = re.compile(r'(?:<!-- (?P<marker>[a-z-]+):start -->\n)?'
                      r'```python\n(?P<code>.*?)```', flags=re.S)


def doc_snippets() -> list[tuple[str, str, Optional[str]]]:
  """(where 'FILE:LINE', code, marker or None) of every python block."""
  docs = ['README.md'] + sorted(
      os.path.join('docs', name) for name in os.listdir(
          os.path.join(REPO_ROOT, 'docs')) if name.endswith('.md'))
  found = []
  for doc in docs:
    with open(os.path.join(REPO_ROOT, doc)) as f:
      text = f.read()
    for match in _SNIPPET.finditer(text):
      line = text.count('\n', 0, match.start('code'))
      found.append((f'{doc}:{line}', match.group('code'),
                    match.group('marker')))
  return found


def test_every_documented_snippet_is_run_by_a_test():
  snippets = doc_snippets()
  here = [where for where, _, marker in snippets if marker is None]
  # The docs that show library code (a regex gone wrong would find none).
  for doc in ('docs/evaluation.md', 'docs/inference.md', 'docs/training.md'):
    assert any(w.startswith(doc + ':') for w in here), (doc, snippets)
  for where, _, marker in snippets:
    if marker is not None:
      assert marker in RUN_ELSEWHERE, f'{where}: unknown marker {marker}'
      with open(os.path.join(REPO_ROOT, RUN_ELSEWHERE[marker])) as f:
        assert f'{marker}:start' in f.read(), (where, RUN_ELSEWHERE[marker])


def _zero_inception(path):
  """An npz with pytorch-fid InceptionV3's converted names and shapes."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from scsnet_jax.pretrained import inception  # pylint: disable=g-import-not-at-top
  model = nnx.eval_shape(lambda: inception.FIDInceptionV3(rngs=nnx.Rngs(0)))
  weights = {}
  for node_path, node in nnx.iter_graph(model):
    if isinstance(node, inception.FoldedConv):
      prefix = '.'.join(str(p) for p in node_path)
      weights[f'{prefix}.kernel'] = np.zeros(node.kernel.shape, np.float32)
      weights[f'{prefix}.bias'] = np.zeros(node.bias.shape, np.float32)
  np.savez(path, **weights)


@pytest.fixture(scope='module')
def snippet_folder(tmp_path_factory):
  """The files the snippets name, made once for all of them: the shallow
  test model (configs/test.py widths, one block per stack) at step 0."""
  import jax  # pylint: disable=g-import-not-at-top
  from scsnet_jax import config_lib, sharding  # pylint: disable=g-import-not-at-top
  from scsnet_jax.export import cli as export  # pylint: disable=g-import-not-at-top
  from scsnet_jax.train import state as train_state  # pylint: disable=g-import-not-at-top
  folder = tmp_path_factory.mktemp('snippets')
  config = helpers.with_shallow_model(config_lib.load_sibling_config(
      os.path.join(REPO_ROOT, 'configs', 'test.py'), 'test'))
  workdir = str(folder / 'runs' / 'x4')
  networks = train_state.build_networks(config)
  # Numpy leaves of the right shapes (He-normal kernels, small vectors):
  # nothing to compile, unlike create_train_state's initialisers.
  rng = np.random.default_rng(0)
  def leaf(spec):
    if not np.issubdtype(spec.dtype, np.floating):
      return np.zeros(spec.shape, spec.dtype)
    scale = np.prod(spec.shape[:-1]) ** -0.5 if len(spec.shape) >= 2 else 0.01
    return rng.normal(0, scale, spec.shape).astype(spec.dtype)
  state = jax.tree.map(leaf, train_state.abstract_train_state(
      networks, config, sharding.create_mesh()))
  helpers.save_train_state(workdir, state, config)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json(indent=2))   # as training writes it
  assert export.main(['--checkpoint', workdir, '--output',
                      str(folder / 'deploy' / 'x4'), '--scales', '4',
                      '--modes', 'automatic']) == 0
  from skimage import data  # pylint: disable=g-import-not-at-top
  photo = Image.fromarray(data.chelsea()).resize((30, 22), Image.BICUBIC)
  photo.save(folder / 'old.jpg')
  photo.save(folder / 'old.png')
  _zero_inception(folder / 'inception.npz')
  return folder


@pytest.mark.parametrize(
    'where,code', [(w, c) for w, c, marker in doc_snippets() if marker is None],
    ids=[w for w, _, marker in doc_snippets() if marker is None])
def test_documented_snippet_runs(snippet_folder, where, code, monkeypatch,
                                 capsys):
  monkeypatch.chdir(snippet_folder)
  for name in ('colour.png',):
    if os.path.exists(name):
      os.remove(name)
  exec(compile(code, where, 'exec'), {'__name__': '__snippet__'})  # pylint: disable=exec-used
  printed = capsys.readouterr().out
  if "save('colour.png')" in code or "'colour.png'," in code:
    with Image.open('colour.png') as image:   # 30x22 at x4 or x2.5
      assert image.size in ((120, 88), (75, 55)) and image.mode == 'RGB'
  if 'print(' in code:
    assert printed.strip(), where


def test_code_map_names_every_module():
  with open(os.path.join(REPO_ROOT, 'README.md')) as f:
    text = f.read()
  code_map = text.split('## Code map', 1)[1].split('\n### ', 1)[0]
  package = os.path.join(REPO_ROOT, 'scsnet_jax')
  missing = [os.path.relpath(os.path.join(root, name), package)
             for root, _, names in os.walk(package) for name in names
             if name.endswith('.py') and name != '__init__.py'
             and name not in code_map]
  assert not missing, f'README Code map lacks {missing}'


def test_readme_video_command(tmp_path):
  """README's video command on a tiny clip (starter weights, in-process)."""
  pytest.importorskip('av')
  from scsnet_jax.video import cli  # pylint: disable=g-import-not-at-top
  from tests.video.conftest import write_clip  # pylint: disable=g-import-not-at-top
  argv = _find(readme_commands(), 'video', '--input')
  assert argv is not None, 'README has no python -m scsnet_jax.video command'
  clip = write_clip(str(tmp_path / 'in.mp4'), frames=4)
  argv = _replace(_replace(argv, _flag(argv, '--input'), clip),
                  _flag(argv, '--output'), str(tmp_path / 'out.mp4'))
  assert cli.main(argv[3:]) == 0
  assert os.path.getsize(tmp_path / 'out.mp4') > 0
