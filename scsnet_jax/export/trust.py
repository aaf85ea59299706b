"""Checks on an export folder before anything in it is used.

An export folder is code, not data: ``jax.export.deserialize`` rebuilds a
StableHLO program, and running it may invoke any custom call (native
function) that jaxlib registers. So export folders must come from someone
you would take code from (docs: README "Safety"). These checks narrow what a
crafted or damaged folder can do, they do not make it safe:

* every file name in the manifest is a plain name inside the folder (no
  absolute path, no ``..``, no sub-folder), so a manifest cannot make us
  read files elsewhere;
* an artifact whose module calls a custom call outside ``ALLOWED_CUSTOM_CALLS``
  is refused before it runs. Our own exports use only ``shape_assertion``
  (symbolic shape checks) and, with ``model.attention_impl='cudnn'``, cuDNN's
  fused attention; sharding markers are harmless annotations.
"""

from __future__ import annotations

import re
from typing import Any

import jax


from scsnet_jax.errors import UserError

ALLOWED_CUSTOM_CALLS = ('shape_assertion', 'Sharding', 'SPMDFullToShardShape',
                        'SPMDShardToFullShape')
# Prefixes of XLA-implemented targets (cuDNN flash attention variants).
ALLOWED_CUSTOM_CALL_PREFIXES = ('__cudnn$fmha',)

# Pretty form `stablehlo.custom_call @name(` and generic form
# `"stablehlo.custom_call"(...) <{call_target_name = "name"`.
_PRETTY = re.compile(r'custom_call\s+@("(?:[^"\\]|\\.)*"|[^\s(]+)\s*\(')
_GENERIC = re.compile(r'call_target_name\s*=\s*"((?:[^"\\]|\\.)*)"')
_MENTION = re.compile(r'\bcustom_call\b')


def plain_name(folder: str, name: Any, what: str) -> str:
  """``name`` if it is a plain file name (a string, no folder part, not
  ``.``/``..``), else a one-line ``UserError`` naming the manifest entry."""
  if (not isinstance(name, str) or not name or name in ('.', '..') or
      '/' in name or '\\' in name or '\0' in name):
    raise UserError(f'{folder}: manifest entry {what} = {name!r} is not a '
                    'plain file name in the export folder; refusing it '
                    '(export folders must be trusted like code)')
  return name


def check_manifest_names(folder: str, manifest: dict) -> None:
  """Every file the manifest names is a plain name (``plain_name``)."""
  plain_name(folder, manifest.get('params'), 'params')
  plain_name(folder, manifest.get('model_config'), 'model_config')
  for key in ('artifacts', 'onnx_models'):
    entries = manifest.get(key, [])
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) for e in entries):
      raise UserError(f'{folder}: manifest entry {key} is not a list of '
                      'objects')
    for index, entry in enumerate(entries):
      plain_name(folder, entry.get('file'), f'{key}[{index}].file')


def custom_calls(module_text: str) -> set[str]:
  """Targets of the custom calls in a StableHLO module's text; a mention
  that no pattern parses counts as the unknown target '?' (fail closed)."""
  names = {m.strip('"') for m in _PRETTY.findall(module_text)}
  names |= set(_GENERIC.findall(module_text))
  found = len(_PRETTY.findall(module_text)) + len(
      _GENERIC.findall(module_text))
  if len(_MENTION.findall(module_text)) > found:
    names.add('?')
  return names


def _allowed(target: str) -> bool:
  return target in ALLOWED_CUSTOM_CALLS or target.startswith(
      ALLOWED_CUSTOM_CALL_PREFIXES)


def check_custom_calls(exported, path: str) -> None:
  """Refuses (one line) an artifact calling a custom call not allowed."""
  refused = sorted(t for t in custom_calls(exported.mlir_module())
                   if not _allowed(t))
  if refused:
    raise UserError(f'{path}: the artifact calls custom call(s) '
                    f'{", ".join(refused)}, which scsnet_jax exports never '
                    'use; refusing to run it (export folders must be '
                    'trusted like code)')


def deserialize(data: bytes, path: str):
  """``jax.export.deserialize`` of a file's bytes (read by
  ``reader.read_file``: a regular file, size capped), checked; bytes that
  are not an artifact are a one-line ``UserError`` naming ``path``."""
  data = bytearray(data)
  try:
    exported = jax.export.deserialize(data)
  except Exception as error:  # pylint: disable=broad-except
    # flatbuffers and MLIR raise many types on damaged bytes.
    raise UserError(f'{path}: not a readable jax.export artifact '
                    f'({type(error).__name__})') from None
  check_custom_calls(exported, path)
  return exported
