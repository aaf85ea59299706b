"""export/trust.py: the custom-call scan reads both MLIR syntaxes and fails
closed; manifest names must be plain."""

import pytest

from scsnet_jax.errors import UserError
from scsnet_jax.export import trust


def test_custom_call_scan_reads_both_syntaxes_and_fails_closed():
  text = ('%0 = stablehlo.custom_call @shape_assertion(%a)\n'
          '%1 = "stablehlo.custom_call"(%b) <{call_target_name = "evil"}>\n')
  assert trust.custom_calls(text) == {'shape_assertion', 'evil'}
  assert '?' in trust.custom_calls('%2 = custom_call weird syntax')


@pytest.mark.parametrize('name', ['/abs', '..', 'a/b', '', None])
def test_plain_name_refuses_paths_with_the_entry_named(name):
  with pytest.raises(UserError, match=r"artifacts\[0\]\.file"):
    trust.plain_name('DIR', name, 'artifacts[0].file')
  assert trust.plain_name('DIR', 'params', 'params') == 'params'
