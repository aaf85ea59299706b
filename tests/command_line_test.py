"""command_line.py: flags read before absl parses, library chatter hidden,
a refused flag explained in one line from the config file, help exits 0."""

import logging as std_logging
import os
import subprocess
import sys

import pytest

from scsnet_jax import command_line, config_lib
from tests.paths import REPO_ROOT

_TEST_CONFIG_FLAG = '--config=' + os.path.join(REPO_ROOT, 'configs', 'test.py')


def test_raw_flag_reads_both_spellings_and_no_prefixes():
  argv = ['main', '--mode', 'eval', '--workdir=w', '--config.eval.step=2']
  assert command_line.raw_flag(argv, '--mode') == 'eval'
  assert command_line.raw_flag(argv, '--workdir') == 'w'
  assert command_line.raw_flag(argv, '--config') is None
  assert command_line.raw_flag(['main', '--config', 'c.py:x'],
                               '--config') == 'c.py:x'
  assert command_line.raw_flag(['main', '-v', '2'], '--verbosity', '-v') == '2'


def test_library_info_lines_are_hidden_by_default(monkeypatch):
  record = lambda path, level: std_logging.LogRecord(
      'absl', level, path, 1, 'msg', None, None)
  keep = command_line.OwnInfoOnly().filter
  orbax = '/site-packages/orbax/checkpoint/checkpoint_manager.py'
  assert not keep(record(orbax, std_logging.INFO))
  assert keep(record(orbax, std_logging.WARNING))
  assert keep(record(config_lib.__file__, std_logging.INFO))
  for name in ('TF_CPP_MIN_LOG_LEVEL', 'TF_ENABLE_ONEDNN_OPTS',
               'TPU_STDERR_LOG_LEVEL'):
    monkeypatch.delenv(name, raising=False)
  command_line.quiet_native_logs(['main', '--verbosity=1'])
  assert 'TF_CPP_MIN_LOG_LEVEL' not in os.environ
  command_line.quiet_native_logs(['main'])
  assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '2'
  assert os.environ['TF_ENABLE_ONEDNN_OPTS'] == '0'


def test_unknown_key_names_the_closest_valid_keys():
  config = config_lib.load_sibling_config(
      os.path.join(REPO_ROOT, 'configs', 'test.py'), 'test')
  assert command_line.unknown_key(config, 'train.steps') is None
  assert command_line.unknown_key(config, 'train') is None   # a section
  message = command_line.unknown_key(config, 'train.stepz')
  assert message == ("unknown config key 'train.stepz'; closest valid keys: "
                     'train.steps')
  assert 'train.steps' in command_line.unknown_key(config, 'trainz.steps')
  assert 'valid sections: data, dtype' in command_line.unknown_key(
      config, 'xyzzy')


@pytest.mark.parametrize('flag, expected', [
    ('--config.train.stepz=5', "unknown config key 'train.stepz'; closest "
     'valid keys: train.steps'),
    ('--config.train.steps=abc', "--config.train.steps=abc: expected an "
     "integer, got 'abc' (the config file has "),
    ('--config.eval.y_channel=maybe', "--config.eval.y_channel=maybe: "
     "expected true or false, got 'maybe'"),
    ('--config.model.cpm_hidden=[1]', 'config.model.cpm_hidden cannot be set '
     'from the command line (a list field); set it in a config file'),
])
def test_a_refused_flag_is_explained_from_the_config_file(flag, expected):
  message = command_line.explain_flag_error(
      ['main', _TEST_CONFIG_FLAG, '--workdir=w', flag],
      ValueError('absl says\nsomething'))
  assert message.startswith(expected), message


def test_without_a_cause_in_the_flags_absls_message_is_kept_on_one_line():
  message = command_line.explain_flag_error(
      ['main', '--config=configs/no_such.py', '--config.train.steps=2'],
      ValueError('"Flag --config: no_such.py\n not found"'))
  assert message == 'Flag --config: no_such.py not found'


def test_a_config_file_that_refuses_its_argument_is_its_own_line(tmp_path):
  (tmp_path / 'config.json').write_text('{')
  workdir_config = os.path.join(REPO_ROOT, 'configs', 'workdir.py')
  message = command_line.explain_flag_error(
      ['main', f'--config={workdir_config}:{tmp_path}'],
      ValueError('Error whilst parsing config file:\n\nTraceback ...'))
  assert message.startswith(f'{tmp_path}/config.json is not valid JSON: ')
  assert message.endswith(command_line.DEBUG_HINT) and '\n' not in message


def test_help_exits_0_where_absl_exits_1():
  def status(*args):
    code = ('from scsnet_jax import command_line\n'
            f'command_line.run(lambda argv: None, ["prog", *{list(args)}])')
    return subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
  assert status('--help').returncode == 0
  refused = status('--no_such_flag')
  assert refused.returncode == 1
  assert refused.stderr.strip().splitlines()[-1].startswith('error: ')


def test_eval_uses_the_workdirs_config_json_with_overrides(tmp_path,
                                                           monkeypatch):
  config = config_lib.load_sibling_config(
      os.path.join(REPO_ROOT, 'configs', 'test.py'), 'test')
  config.model.texture_res_blocks = 2
  (tmp_path / 'config.json').write_text(config.to_json())
  argv = ['main', '--mode=eval', f'--workdir={tmp_path}',
          '--config.eval.num_automatic=3']
  with_file = command_line.with_workdir_config(argv)
  assert with_file == ['main', f'--config={command_line.WORKDIR_CONFIG}:{tmp_path}',
                       *argv[1:]]
  from absl import flags
  from ml_collections import config_flags
  parser = flags.FlagValues()   # the same flag as main's, parsed alone
  holder = config_flags.DEFINE_config_file('config', None, '',
                                           flag_values=parser)
  # ml_collections reads the --config.KEY overrides from sys.argv.
  monkeypatch.setattr(sys, 'argv', [with_file[0], with_file[1],
                                    with_file[-1]])
  parser(sys.argv)
  resolved = holder.value
  assert resolved.model.texture_res_blocks == 2
  assert resolved.eval.num_automatic == 3
  config_lib.validate_config(resolved)
  # A given --config, or training, keeps the command line as it is.
  given = ['main', '--mode=eval', f'--workdir={tmp_path}', '--config=c.py']
  assert command_line.with_workdir_config(given) == given
  assert command_line.with_workdir_config(argv[:1] + argv[2:]) == argv[:1] + argv[2:]
