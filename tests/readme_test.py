"""The README walkthrough: its commands, in order, as a new user runs them.

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

import numpy as np
import pytest
from PIL import Image

from tests.paths import REPO_ROOT
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
  from scsnet_jax import config_lib, config_overrides
  demo = config_lib.load_sibling_config(
      os.path.join(REPO_ROOT, 'configs', 'demo.py'), 'demo')
  train += [f'--config.{k}={v}' for k, v in FAST_DEMO.items()
            if config_overrides.unknown_key(demo, k) is None]
  result = _run(train)
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '4'))
  assert os.path.isfile(os.path.join(workdir, 'config.json'))
  # Library chatter is hidden at the default verbosity (issue 12, item 14).
  for noise in ('checkpoint_manager.py', 'oneDNN', 'jax_array_handlers.py'):
    assert noise not in result.stderr, noise

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
  _run(_replace(evaluate, 'demo_workdir', workdir))
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
