"""The package's one error policy.

A mistake in what the user gave (a flag, a config value, an input file, a
checkpoint path) raises ``UserError`` with a one-line message that names the
thing and the problem; a missing or unwritable path raises the ``OSError``
the system gave. Entry points (``main``, ``predict``, ``export``, the tools)
catch exactly these two, print the line and exit non-zero; a batch command
reports the file and goes on with the next. Anything else is a bug and
propagates with its traceback. ``is_user_error`` tells the two apart;
``first_line``, ``file_line`` and ``one_line`` make the line;
``printable`` escapes the control characters of every printed name.
"""

from __future__ import annotations

import os
import unicodedata


class UserError(ValueError):
  """A mistake in the user's input: printed as one line, no traceback.

  A ``ValueError``, so code that validates values can be caught either way.
  """


# Exit status of a training run that SIGTERM stopped before its last step
# (after saving): 75 = EX_TEMPFAIL ("try again later"), so a scheduler can
# tell it from success (0) and from errors (1) and requeue the job
# (launch/slurm.sbatch does).
EXIT_STOPPED_EARLY = 75


# Markers of an accelerator's (XLA's) or the host's out-of-memory error: not
# the user's mistake, but one the user can fix (smaller batches or tiles).
_OOM_MARKERS = ('RESOURCE_EXHAUSTED', 'out of memory', 'Out of memory',
                'OOM when allocating')


def not_one_of(dotted: str, value, allowed, *, also_bool: bool = False,
               hint: str = '') -> str:
  """The one wording of a config value outside its closed set:
  ``config.KEY must be one of 'a', 'b', got 'c'`` (the config's and the
  model's checks alike)."""
  shown = ', '.join(repr(c) for c in allowed)
  also = ' (or a bool, from Python)' if also_bool else ''
  hint = f' (did you mean {hint}?)' if hint else ''
  return f'config.{dotted} must be one of {shown}{also}, got {value!r}{hint}'


def is_out_of_memory(error: BaseException) -> bool:
  if isinstance(error, MemoryError):
    return True
  return isinstance(error, RuntimeError) and any(
      marker in str(error) for marker in _OOM_MARKERS)


def is_user_error(error: BaseException) -> bool:
  """A mistake of the user (``UserError``, absl's usage errors) or of the
  environment (an ``OSError``: missing file, permissions, full disk);
  anything else is a bug and keeps its traceback."""
  from absl import app  # absl only where a caller asks (not grain workers)
  return isinstance(error, (UserError, app.UsageError, OSError))


# Characters a printed line must not carry raw: a newline in a file name
# would start a forged line ("done: ..."), an ESC a terminal command.
# Control characters (Cc), line and paragraph separators (Zl, Zp),
# surrogates (Cs: undecodable bytes of a file name) and the bidirectional
# overrides that reorder what a terminal shows.
_UNPRINTABLE_CATEGORIES = ('Cc', 'Zl', 'Zp', 'Cs')
_BIDI_CONTROLS = frozenset('\u202a\u202b\u202c\u202d\u202e'
                           '\u2066\u2067\u2068\u2069')


def _escape(char: str) -> str:
  if char in _BIDI_CONTROLS or (
      unicodedata.category(char) in _UNPRINTABLE_CATEGORIES):
    escaped = repr(char)[1:-1]   # '\n', '\x1b', '\u202e', '\udcff'
    return escaped if escaped != char else f'\\x{ord(char):02x}'
  return char


def printable(text: str) -> str:
  """``text`` with control characters escaped as Python writes them
  (``\\n``, ``\\x1b``, ``\\u202e``): what every printed file name goes
  through, so a name cannot start a line or command the terminal."""
  if text.isprintable():
    return text
  return ''.join(_escape(char) for char in text)


def first_line(error: BaseException, limit: int = 300) -> str:
  """An exception as one short line (its type if it has no message): what
  a batch command prints for one bad file before going on."""
  lines = str(error).strip().splitlines()
  return printable(lines[0][:limit]) if lines else type(error).__name__


def file_line(path, error, limit: int = 300) -> str:
  """``PATH: reason`` for one bad file: the whole name, escaped
  (``printable``), and the first line of the reason cut to ``limit``
  characters (the name may be long; the reason is what gets cut).

  ``error`` is an exception or a message; the name in it (a message often
  starts with it) is dropped or escaped before the message is cut into lines,
  so a newline in the name cannot end the line early.
  """
  path = os.fspath(path)
  message = str(error).strip()
  if message.startswith(path):
    message = message[len(path):].lstrip(':').lstrip()
  message = message.replace(path, printable(path)) if path else message
  lines = message.splitlines()
  reason = lines[0] if lines else type(error).__name__
  return f'{printable(path)}: {printable(reason[:limit])}'


def root_cause(error: BaseException) -> BaseException:
  """The innermost exception ``error`` was raised from: where a library's
  wrapper (orbax's "Encountered error while reading array index ... <the
  whole TensorStore spec>") hides the readable reason (TensorStore's
  "OUT_OF_RANGE: Error reading ... Requested byte range ... is not valid")."""
  seen = {id(error)}
  while True:
    inner = error.__cause__ or error.__context__
    if inner is None or id(inner) in seen:
      return error
    seen.add(id(inner))
    error = inner


def one_line(error: BaseException, mode: str = 'train', config=None) -> str:
  """The line the training command prints for a user error (the whole
  message on one line) or an out-of-memory error (its first sentence and
  the flag that lowers the batch: ``config`` gives its value now)."""
  text = printable(' '.join(str(error).split()))
  if is_out_of_memory(error):
    first = text.split('. ')[0][:200]
    if mode == 'eval':
      lever = '--config.eval.batch_size'
      now = _config_value(config, 'eval', 'batch_size')
    else:
      lever = '--config.data.global_batch_size'
      now = _config_value(config, 'data', 'global_batch_size')
    now = f' (now {now})' if now is not None else ''
    return (f'out of memory ({first}): lower {lever}{now} or '
            '--config.data.crop_size; for predict use --tile')
  return text or type(error).__name__


def _config_value(config, section: str, key: str):
  try:
    return config[section][key]
  except (KeyError, TypeError, AttributeError):
    return None
