"""What a resumed run may differ in from the run that wrote its checkpoint.

A restart continues the saved optimizer state, step and data position; if
the config changed meanwhile (another learning rate, batch size, data set or
schedule), the run would silently become a different experiment whose
``config.json`` no longer says how its weights were made. So a resume
compares the new config with the one saved in the latest checkpoint and
refuses any difference, in one line that lists them, unless the key is
allowed: by ``--allow_config_change=KEY,...`` (a key or a whole section,
``optimizer``), or by default for ``ALLOWED_BY_DEFAULT`` (extending the run
with ``train.steps``, and settings that change what is logged, kept or how
fast it runs, never the trained weights).

The data iterator's position is saved once per process (grain), so a resume
with another process count cannot restore it: also refused in one line.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping

from etils import epath

from scsnet_jax import config_lib
from scsnet_jax.errors import UserError

# Keys that may change on resume without a flag. train.steps: extending (or
# shortening) a run; note that a cosine schedule is stretched with it.
ALLOWED_BY_DEFAULT = (
    'train.steps', 'train.log_every_steps', 'train.checkpoint_every_steps',
    'train.sample_every_steps', 'train.eval_every_steps', 'train.max_to_keep',
    'train.keep_period', 'train.profile', 'train.profile_num_steps',
    'eval', 'validation', 'data.num_workers', 'data.read_threads',
    'data.read_buffer_size', 'data.worker_buffer_size',
    'data.quality_filter.num_threads', 'data.quality_filter.cache_dir',
    'data.tfds_data_dir', 'model.attention_impl', 'model.cpm_chunk_size')


def config_changes(saved: Mapping[str, Any], current: Mapping[str, Any]
                   ) -> dict[str, tuple[Any, Any]]:
  """{dotted key: (saved value, current value)} for every leaf that differs
  (a key only one side has shows ``'<absent>'`` on the other)."""
  # A JSON round trip first, so that tuples equal lists.
  old, new = (config_lib.flatten(json.loads(json.dumps(c)))
              for c in (saved, current))
  return {key: (old.get(key, '<absent>'), new.get(key, '<absent>'))
          for key in sorted(set(old) | set(new))
          if old.get(key, '<absent>') != new.get(key, '<absent>')}


def _is_allowed(key: str, allowed: Iterable[str]) -> bool:
  return any(key == a or key.startswith(a + '.') for a in allowed)


def parse_allowed(text: str) -> tuple[str, ...]:
  """'optimizer.learning_rate,data' -> ('optimizer.learning_rate', 'data')."""
  return tuple(k.strip() for k in (text or '').split(',') if k.strip())


def check_config(saved: Mapping[str, Any], current: Mapping[str, Any],
                 allowed: Iterable[str] = (), step: Any = None) -> list[str]:
  """Raises ``UserError`` (one line) for differences not allowed; returns the
  allowed changed keys (to log)."""
  allowed = tuple(allowed) + ALLOWED_BY_DEFAULT
  changes = config_changes(saved, current)
  refused = {k: v for k, v in changes.items() if not _is_allowed(k, allowed)}
  if refused:
    listed = '; '.join(f'{k}: {old!r} -> {new!r}'
                       for k, (old, new) in refused.items())
    raise UserError(
        f'the config differs from the one saved in the checkpoint of step '
        f'{step}: {listed}. Resume with the saved config, or pass '
        f'--allow_config_change={",".join(refused)} to continue with the '
        'change (or use a new --workdir)')
  return sorted(changes)


_PROCESS_FILE = re.compile(r'process_(\d+)-of-(\d+)\.json$')


def check_process_count(step_dir: str, process_count: int) -> None:
  """Refuses (one line) to restore a data-iterator state saved by another
  number of processes; silent when the step holds none."""
  folder = epath.Path(step_dir) / 'data_iterator'
  if not folder.is_dir():
    return
  counts = {int(m.group(2)) for m in
            (_PROCESS_FILE.search(p.name) for p in folder.iterdir()) if m}
  if counts and counts != {process_count}:
    saved = ', '.join(str(c) for c in sorted(counts))
    raise UserError(
        f'{step_dir} was saved by {saved} process(es), this run has '
        f'{process_count}: the data position is saved per process, so '
        f'resume with {saved} process(es) (or start a new --workdir)')
