"""main.py: command-line mistakes end in one line and a non-zero status;
--mode dispatch."""

import os
import subprocess
import sys
import types


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_main(*args, env=None):
  full_env = dict(os.environ, **(env or {}))
  return subprocess.run(
      [sys.executable, '-m', 'scsnet_jax.main', *args], cwd=REPO_ROOT,
      env=full_env, capture_output=True, text=True, timeout=300)


def _assert_clean_failure(result, message):
  assert result.returncode != 0
  assert message in result.stderr, result.stderr[-2000:]
  assert 'Traceback' not in result.stderr, result.stderr[-2000:]


def test_missing_workdir_is_a_flag_error(tmp_path):
  result = _run_main('--config=configs/test.py')
  _assert_clean_failure(result, '--workdir')


def test_missing_config_file_is_a_flag_error(tmp_path):
  result = _run_main('--config=configs/no_such.py', f'--workdir={tmp_path}')
  _assert_clean_failure(result, 'no_such.py')


def test_bad_config_values_give_one_line_errors(tmp_path):
  # conftest gives subprocesses 8 CPU devices too (XLA_FLAGS is inherited).
  result = _run_main('--config=configs/test.py', f'--workdir={tmp_path}',
                     '--config.data.global_batch_size=12')
  _assert_clean_failure(result, 'error: global batch size 12 is not '
                        'divisible by the 8 devices')
  result = _run_main('--config=configs/test.py', f'--workdir={tmp_path}',
                     env={'JAX_COORDINATOR_ADDRESS': 'localhost:1'})
  _assert_clean_failure(result, 'error: --coordinator_address needs '
                        '--num_processes')


def test_eval_mode_dispatches_to_evaluate(monkeypatch, tmp_path):
  import scsnet_jax
  from scsnet_jax import main
  calls = []
  fake = types.ModuleType('scsnet_jax.evaluate')
  fake.evaluate = lambda config, workdir: calls.append((config, workdir))
  monkeypatch.setitem(sys.modules, 'scsnet_jax.evaluate', fake)
  monkeypatch.setattr(scsnet_jax, 'evaluate', fake, raising=False)
  monkeypatch.setattr(main, '_initialize_distributed', lambda: None)
  main._run({'name': 'cfg'}, str(tmp_path), 'eval')
  assert calls == [({'name': 'cfg'}, str(tmp_path))]
