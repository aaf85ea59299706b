"""errors.py: the error policy's promises that other code relies on, and
the one-line messages."""

import os

import pytest

from scsnet_jax import errors


def test_a_user_error_is_a_value_error():
  with pytest.raises(ValueError, match='bad flag'):
    raise errors.UserError('bad flag')
  assert not issubclass(ValueError, errors.UserError)


def test_stopped_early_is_ex_tempfail_distinct_from_success_and_errors():
  assert errors.EXIT_STOPPED_EARLY == os.EX_TEMPFAIL == 75


def _raise_in_our_code():
  from scsnet_jax import config_lib
  config_lib.validate_config(dict(dtype='float16'))


def test_user_errors_out_of_memory_and_bugs_are_told_apart():
  def caught(fn):
    try:
      fn()
    except Exception as error:  # pylint: disable=broad-except
      return error
    raise AssertionError('no exception')

  ours = caught(_raise_in_our_code)
  assert errors.is_user_error(ours)
  import numpy as np
  theirs = caught(lambda: np.zeros(-1))            # ValueError in a library
  assert not errors.is_user_error(theirs)
  assert not errors.is_user_error(RuntimeError('XLA internal error'))
  assert not errors.is_user_error(TypeError('bad operand'))
  # One policy: a plain ValueError is a bug, even when raised by our code.
  assert not errors.is_user_error(ValueError('an assertion of ours'))
  assert errors.is_user_error(FileNotFoundError('x.png'))
  oom = RuntimeError('RESOURCE_EXHAUSTED: Out of memory while trying to '
                     'allocate 1.5G. Peak buffers:\n  a\n  b')
  assert errors.is_out_of_memory(oom) and not errors.is_user_error(oom)
  line = errors.one_line(oom, 'train',
                       {'data': {'global_batch_size': 32}})
  assert '\n' not in line and line.startswith('out of memory')
  assert '--config.data.global_batch_size (now 32)' in line
  assert '--tile' in line
  assert '--config.eval.batch_size' in errors.one_line(oom, 'eval', None)


def test_first_line_is_the_first_line_cut_short_or_the_type():
  assert errors.first_line(OSError('x.png: gone\n  detail')) == 'x.png: gone'
  assert errors.first_line(ValueError('a' * 400)) == 'a' * 300
  assert errors.first_line(ValueError('a' * 400), limit=5) == 'aaaaa'
  assert errors.first_line(KeyError()) == 'KeyError'
  assert errors.first_line(RuntimeError('  \n ')) == 'RuntimeError'


def test_printable_escapes_control_characters_only():
  assert errors.printable('a\nb\tc\x1b[0m\x7f\u202ed\udcff é 猫') == (
      'a\\nb\\tc\\x1b[0m\\x7f\\u202ed\\udcff é 猫')


def test_file_line_keeps_the_whole_name_and_cuts_the_reason():
  name = '/in/t\ndone: 0 failed\n' + 'y' * 400 + '.png'
  error = errors.UserError(f'{name}: truncated\nsecond line ' + 'z' * 400)
  line = errors.file_line(name, error, limit=50)
  assert line == errors.printable(name) + ': truncated'
  line = errors.file_line('/in/a.png', 'cannot write it: ' + 'z' * 400,
                          limit=20)
  assert line == '/in/a.png: cannot write it: zzz'
  assert errors.first_line(ValueError('a\x1b[2J\rb')) == 'a\\x1b[2J'
