"""errors.py: the error policy's two promises that other code relies on."""

import os

import pytest

from scsnet_jax import errors


def test_a_user_error_is_a_value_error():
  with pytest.raises(ValueError, match='bad flag'):
    raise errors.UserError('bad flag')
  assert not issubclass(ValueError, errors.UserError)


def test_stopped_early_is_ex_tempfail_distinct_from_success_and_errors():
  assert errors.EXIT_STOPPED_EARLY == os.EX_TEMPFAIL == 75
