"""End-to-end runs in subprocesses: two JAX processes via the local
launcher, and SIGKILL + restart equal to an uninterrupted run.

Slow (marked): each subprocess compiles the model. They share a persistent
JAX compilation cache and use the shallow model (configs/test.py widths,
one block per stack), passed as --config overrides.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import pytest


from tests.paths import REPO_ROOT
from tests import helpers
LAUNCHER = os.path.join(REPO_ROOT, 'launch', 'local_multiprocess.sh')
CACHE = os.path.join(tempfile.gettempdir(), 'scsnet_jax_test_compile_cache')
LOSS = re.compile(r'step (\d+)/\d+  loss G ([-+0-9.eE]+|nan|inf)')


def _env(devices_per_process):
  return dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count='
                        f'{devices_per_process}',
              JAX_COMPILATION_CACHE_DIR=CACHE,
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')


def _flags(workdir, steps, *extra):
  return ['--config=configs/test.py', f'--workdir={workdir}',
          f'--config.train.steps={steps}', *helpers.shallow_model_flags(),
          # Losses and checkpoints are what these tests compare: no sample
          # grids (tests/train/loop_test.py covers them).
          '--config.train.sample_every_steps=0', *extra]


def _losses(text):
  """{step: generator_loss} from the trainer's per-interval log lines."""
  return {int(s): float(v) for s, v in LOSS.findall(text)}


def test_launcher_usage_errors_are_one_line():
  result = subprocess.run(['bash', LAUNCHER, 'two', 'configs/test.py', '/tmp/x'],
                          capture_output=True, text=True, cwd=REPO_ROOT)
  assert result.returncode == 2
  assert 'NUM_PROCESSES must be a positive integer' in result.stderr
  for script in ('local_multiprocess.sh', 'slurm.sbatch', 'tpu_vm.sh'):
    check = subprocess.run(['bash', '-n', os.path.join(REPO_ROOT, 'launch', script)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize('status', [0, 1, 75])
def test_slurm_script_requeues_only_a_run_stopped_early(tmp_path, status):
  """Fake srun (exits ``status``) and scontrol (records its arguments)."""
  from scsnet_jax import errors
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  for name, body in (('srun', f'exit {status}'),
                     ('scontrol', f'echo "$@" >> {tmp_path}/scontrol.log')):
    (bin_dir / name).write_text(f'#!/bin/sh\n{body}\n')
    (bin_dir / name).chmod(0o755)
  result = subprocess.run(
      ['bash', os.path.join(REPO_ROOT, 'launch', 'slurm.sbatch'),
       'configs/test.py', str(tmp_path / 'run')], cwd=REPO_ROOT,
      capture_output=True, text=True, timeout=60,
      env=dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}',
               SLURM_JOB_ID='123'))
  log = tmp_path / 'scontrol.log'
  if status == errors.EXIT_STOPPED_EARLY:
    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == ['requeue', '123']
  else:
    assert result.returncode == status
    assert not log.exists()


@pytest.mark.slow
def test_two_processes_report_the_same_loss(tmp_path):
  workdir = tmp_path / 'multi'
  result = subprocess.run(
      ['bash', LAUNCHER, '2', 'configs/test.py', str(workdir),
       *_flags(workdir, 2)[2:]],
      cwd=REPO_ROOT, env=_env(4), capture_output=True, text=True, timeout=1200)
  logs = [open(workdir / 'logs' / f'process_{i}.log').read() for i in (0, 1)]
  assert result.returncode == 0, logs[1][-3000:] + logs[0][-3000:]
  assert 'process 1 of 2, 4 local / 8 global devices' in logs[1]
  first, second = _losses(logs[0]), _losses(logs[1])
  assert sorted(first) == [1, 2]
  assert first == second
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2']


@pytest.mark.slow
def test_sigkill_then_restart_continues_like_an_uninterrupted_run(tmp_path):
  straight = subprocess.run(
      [sys.executable, '-m', 'scsnet_jax.main',
       *_flags(tmp_path / 'straight', 6)], cwd=REPO_ROOT, env=_env(8),
      capture_output=True, text=True, timeout=1200)
  assert straight.returncode == 0, straight.stderr[-3000:]
  expected = _losses(straight.stderr)
  assert sorted(expected) == [1, 2, 3, 4, 5, 6]

  workdir = tmp_path / 'killed'
  log_path = tmp_path / 'killed.log'
  with open(log_path, 'w') as log:
    proc = subprocess.Popen(
        [sys.executable, '-m', 'scsnet_jax.main', *_flags(workdir, 6)],
        cwd=REPO_ROOT, env=_env(8), stdout=log, stderr=subprocess.STDOUT)
    finished = workdir / 'checkpoints' / '2'
    deadline = time.time() + 1200
    while not finished.exists() and proc.poll() is None and time.time() < deadline:
      time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  assert proc.returncode == -signal.SIGKILL, open(log_path).read()[-3000:]

  resumed = subprocess.run(
      [sys.executable, '-m', 'scsnet_jax.main', *_flags(workdir, 6)],
      cwd=REPO_ROOT, env=_env(8), capture_output=True, text=True, timeout=1200)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  match = re.search(r'restored step (\d+)', resumed.stderr)
  assert match, resumed.stderr[-3000:]
  start = int(match.group(1))
  assert 2 <= start < 6
  got = _losses(resumed.stderr)
  assert sorted(got) == list(range(start + 1, 7))
  # Logged with 6 significant digits; cross-device sums on the fake CPU
  # devices may add in a different order from run to run. A wrong batch or
  # state would be off by far more than 1e-4.
  for step, loss in got.items():
    assert loss == pytest.approx(expected[step], rel=1e-4), step


# ---------------------------------------------- launch/photos_cpu.sh ---
# A fake PYTHON stands in for every step of the recipe: the corpus check
# (``python - CONFIG``) finds the corpus, ``-m scsnet_jax.main`` behaves as
# FAKE_TRAINER says, and every call is logged, so the launcher's own logic
# (signals, stop on 75 or failure) is tested in well under a second a case.
_FAKE_PYTHON = r'''#!/usr/bin/env bash
if [[ "$1" == "-" ]]; then cat > /dev/null; exit 0; fi  # corpus check: present
echo "$2" >> "$FAKE_DIR/calls"
if [[ "$2" != scsnet_jax.main ]]; then exit 0; fi
case "$FAKE_TRAINER" in
  exit*) exit "${FAKE_TRAINER#exit}" ;;
  wait)  # like main: SIGTERM -> save -> exit 75
    trap 'echo TERM >> "$FAKE_DIR/signals"; exit 75' TERM
    echo $$ > "$FAKE_DIR/trainer.pid"
    for _ in $(seq 600); do sleep 0.1; done
    exit 0 ;;
esac
'''
PHOTOS_CPU = os.path.join(REPO_ROOT, 'launch', 'photos_cpu.sh')


def _photos_cpu(tmp_path, trainer):
  fake = tmp_path / 'python'
  fake.write_text(_FAKE_PYTHON)
  fake.chmod(0o755)
  env = dict(os.environ, PYTHON=str(fake), FAKE_DIR=str(tmp_path),
             FAKE_TRAINER=trainer)
  # SIGINT as a terminal gives it: a shell cannot trap a signal ignored on
  # entry, and the test runner may ignore SIGINT by then (inherited). A
  # small Python resets it and execs bash (same pid); no preexec_fn, which
  # is unsafe after fork in this multithreaded (JAX) process.
  return subprocess.Popen([sys.executable, '-c', _DEFAULT_SIGINT_EXEC,
                           PHOTOS_CPU, str(tmp_path / 'run')],
                          cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


_DEFAULT_SIGINT_EXEC = ('import os, signal, sys; '
                        'signal.signal(signal.SIGINT, signal.SIG_DFL); '
                        'os.execvp("bash", ["bash", *sys.argv[1:]])')


def _calls(tmp_path):
  path = tmp_path / 'calls'
  return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize('status', [0, 1, 75])
def test_photos_cpu_evaluates_only_a_finished_run(tmp_path, status):
  proc = _photos_cpu(tmp_path, f'exit{status}')
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == status, err
  if status == 0:
    assert _calls(tmp_path) == ['scsnet_jax.main',
                                'scsnet_jax.tools.evaluate_photos',
                                'scsnet_jax.tools.plot_curves']
  else:
    assert _calls(tmp_path) == ['scsnet_jax.main']   # nothing evaluated
    assert ('stopped early' if status == 75 else 'failed') in err


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_photos_cpu_passes_signals_on_and_stops(tmp_path, sig):
  """The trainer gets SIGTERM (it saves and exits 75), the launcher waits
  for it, evaluates nothing, exits 75, and leaves no trainer behind."""
  proc = _photos_cpu(tmp_path, 'wait')
  pid_file = tmp_path / 'trainer.pid'
  deadline = time.time() + 30
  while not pid_file.exists() and time.time() < deadline:
    time.sleep(0.05)
  time.sleep(0.2)  # the fake trainer's trap is set before its pid is written
  trainer_pid = int(pid_file.read_text())
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=30)
  assert proc.returncode == 75, err
  assert (tmp_path / 'signals').read_text().split() == ['TERM']
  assert _calls(tmp_path) == ['scsnet_jax.main']
  assert 'stopped early' in err
  with pytest.raises(ProcessLookupError):   # not orphaned, still training
    os.kill(trainer_pid, 0)
