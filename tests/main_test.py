"""main.py: command-line mistakes end in one line and a non-zero status;
--mode dispatch."""

import os
import subprocess
import sys


from scsnet_jax import config_lib
from tests.paths import REPO_ROOT


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
  _assert_clean_failure(result, 'error: multi-process set-up: ')


def test_eval_mode_dispatches_to_evaluate(monkeypatch, tmp_path):
  from scsnet_jax import main
  from scsnet_jax.evaluation import protocol
  calls = []
  monkeypatch.setattr(protocol, 'evaluate',
                      lambda config, workdir: calls.append((config, workdir)))
  monkeypatch.setattr(main, 'initialize_distributed', lambda: None)
  config = config_lib.get_base_config()
  main.run(config, str(tmp_path), 'eval')
  assert calls == [(config, str(tmp_path))]


# ------------------------------------------------ issue 12: one-line errors ---
def test_config_typo_names_the_closest_valid_keys(tmp_path):
  result = _run_main('--config=configs/test.py', f'--workdir={tmp_path}/w',
                     '--config.train.stepz=5')
  _assert_clean_failure(result, "error: unknown config key 'train.stepz'; "
                        'closest valid keys: train.steps')
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_wrong_types_and_choices_are_one_line(tmp_path):
  result = _run_main('--config=configs/test.py', f'--workdir={tmp_path}/w',
                     '--config.train.steps=abc')
  _assert_clean_failure(result, 'error: --config.train.steps=abc: expected an '
                        'integer')
  # A flag turns False into the string 'False', which is truthy.
  result = _run_main('--config=configs/test.py', f'--workdir={tmp_path}/w',
                     '--config.model.cpm_project_first=False')
  _assert_clean_failure(result, "config.model.cpm_project_first must be one "
                        "of 'auto', 'always', 'never'")
  assert result.stderr.count('error:') == 1, result.stderr


def test_an_error_is_printed_once_and_leaves_no_empty_dirs(tmp_path):
  workdir = tmp_path / 'new' / 'run'
  result = _run_main('--config=configs/test.py', f'--workdir={workdir}',
                     '--config.data.global_batch_size=12')
  _assert_clean_failure(result, 'global batch size 12 is not divisible')
  assert result.stderr.count('is not divisible') == 1, result.stderr
  assert not (tmp_path / 'new').exists()


def test_eval_without_config_needs_a_training_workdir(tmp_path):
  result = _run_main('--mode=eval', f'--workdir={tmp_path}')
  _assert_clean_failure(result, 'config.json does not exist')
  result = _run_main(f'--workdir={tmp_path}')
  _assert_clean_failure(result, '--config=configs/<name>.py is required')


def _main_with_run(monkeypatch, tmp_path, run):
  from absl import flags
  from absl.testing import flagsaver
  from scsnet_jax import command_line, main
  monkeypatch.setattr(main, 'run', run)
  monkeypatch.setattr(command_line, 'quiet_python_logs', lambda: None)
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  with flagsaver.flagsaver(workdir=str(tmp_path / 'w'), mode='train'):
    main.main(['main'])


def test_main_keeps_the_traceback_of_a_bug(monkeypatch, tmp_path):
  def bug(config, workdir, mode, *_):
    os.makedirs(os.path.join(workdir, 'checkpoints'))
    raise RuntimeError('an internal error')
  import pytest
  with pytest.raises(RuntimeError, match='an internal error'):
    _main_with_run(monkeypatch, tmp_path, bug)
  assert not (tmp_path / 'w').exists()   # empty dirs of the run removed


def test_main_reports_out_of_memory_in_one_line(monkeypatch, tmp_path,
                                                capsys):
  def oom(config, workdir, mode, *_):
    raise RuntimeError('RESOURCE_EXHAUSTED: Out of memory while trying to '
                       'allocate 99 bytes.\nmore\nlines')
  import pytest
  with pytest.raises(SystemExit) as exit_info:
    _main_with_run(monkeypatch, tmp_path, oom)
  assert exit_info.value.code == 1
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'out of memory' in err
  assert '--config.data.global_batch_size' in err


# ------------------------------------------------------------ issue 19 ---
def test_help_exits_0_and_lists_the_resume_flag():
  result = _run_main('--help')
  assert result.returncode == 0, result.stderr[-2000:]
  assert '--allow_config_change' in result.stdout + result.stderr
  assert '--[no]fall_back_to_intact_checkpoint' in (result.stdout +
                                                     result.stderr)


def test_a_run_stopped_by_sigterm_exits_75_for_requeueing(monkeypatch,
                                                          tmp_path):
  import pytest
  from scsnet_jax import errors, main
  from scsnet_jax.train import loop, preemption
  calls = []
  def stopped(config, workdir, allow_config_change=(), **unused):
    calls.append(allow_config_change)
    raise preemption.StoppedEarly(None, 3)
  monkeypatch.setattr(loop, 'train_and_evaluate', stopped)
  monkeypatch.setattr(main, 'initialize_distributed', lambda: None)
  with pytest.raises(SystemExit) as exit_info:
    main.run(config_lib.get_base_config(), str(tmp_path), 'train',
             ('optimizer',))
  assert exit_info.value.code == errors.EXIT_STOPPED_EARLY == 75
  assert calls == [('optimizer',)]
