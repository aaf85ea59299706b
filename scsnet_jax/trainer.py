"""The training loop: data -> sharded steps -> metrics, samples, checkpoints.

Resumes from the latest checkpoint in ``WORKDIR/checkpoints`` (train state and
data-iterator position), so a restarted job continues exactly where the last
checkpoint left it. SIGTERM (preemption) saves and returns normally; a
non-finite loss stops the run with the last good checkpoint kept.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from scsnet_jax import (checkpointing, config_lib, logging_utils, sharding,
                        train_step)
from scsnet_jax.train_state import TrainState


class NonFiniteLossError(RuntimeError):
  """A step produced NaN/Inf; the last finite checkpoint is left in place."""


class PreemptionWatcher:
  """Did this job get SIGTERM? Agreed across processes.

  Single process: a Python SIGTERM handler sets a flag. Several processes:
  JAX's coordination service (``jax.distributed``) catches the signal and
  ``reached_preemption_sync_point`` tells every process at the same step.
  """

  def __init__(self):
    self._flag = threading.Event()
    self._previous = None
    self._multi = jax.process_count() > 1
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint, then exiting')
    self._flag.set()

  def should_stop(self, step: int) -> bool:
    if self._multi:
      try:
        return bool(multihost_utils.reached_preemption_sync_point(step))
      except Exception:  # no preemption service (older runtime)
        return False
    return self._flag.is_set()

  def close(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


_SAMPLE_FNS: dict[Any, Any] = {}


def make_sample_fn(config: ml_collections.ConfigDict, mesh):
  """Jitted (state, batch) -> (automatic, referential) outputs of the EMA G
  (the automatic output twice if the model has no referential branch)."""
  key = (bool(config.model.referential), mesh)
  if key not in _SAMPLE_FNS:
    _SAMPLE_FNS[key] = _make_sample_fn(config, mesh)
  return _SAMPLE_FNS[key]


def _make_sample_fn(config: ml_collections.ConfigDict, mesh):
  modes = (False, True) if config.model.referential else (False, False)

  def sample(state: TrainState, batch):
    outputs = [train_step.generate(state, state.generator_ema, batch, ref)
               for ref in modes]
    return tuple(o.astype(jnp.float32) for o in outputs)
  return jax.jit(sample, in_shardings=(sharding.replicated(mesh),
                                       sharding.batch_sharded(mesh)))


def _mean_metrics(pending: list[dict[str, Any]]) -> dict[str, float]:
  host = jax.device_get(pending)
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def _check_finite(pending: list[dict[str, Any]], step: int):
  flags = jax.device_get([m['all_finite'] for m in pending])
  if not all(float(f) == 1.0 for f in flags):
    first_bad = step - len(pending) + 1 + next(
        i for i, f in enumerate(flags) if float(f) != 1.0)
    raise NonFiniteLossError(
        f'non-finite loss or gradient at step {first_bad}; stopped without '
        'saving: the last checkpoint holds the last good state')


def _write_config(workdir: str, config: ml_collections.ConfigDict):
  if jax.process_index() == 0:
    (epath.Path(workdir) / 'config.json').write_text(
        config.to_json(indent=2, sort_keys=True))


def _flat_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
  flat = {}
  def visit(prefix, node):
    for key, value in node.items():
      name = f'{prefix}{key}'
      if isinstance(value, (dict, ml_collections.ConfigDict)):
        visit(name + '.', value)
      else:
        flat[name] = value if isinstance(value, (int, float, str, bool)) \
            else json.dumps(value)
  visit('', config.to_dict())
  return flat


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       data_iterator: Optional[Any] = None) -> TrainState:
  """Trains to ``config_lib.total_steps(config)`` (or until SIGTERM).

  ``data_iterator`` (per-process numpy batches) replaces the configured input
  pipeline, e.g. in tests. Returns the final state.
  """
  from scsnet_jax import input_pipeline  # training-only dependency (grain)
  workdir = checkpointing.resolve_workdir(workdir)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  mesh = sharding.create_mesh()
  sharding.check_batch_size(config.data.global_batch_size, mesh)
  num_steps = config_lib.total_steps(config)
  train = config.train
  logging.info('training %d steps on %d devices (%d processes), mesh %s',
               num_steps, jax.device_count(), jax.process_count(),
               dict(mesh.shape))

  if data_iterator is None:
    data_iterator = input_pipeline.create_iterator(config, 'train')
  manager = checkpointing.create_manager(
      workdir, max_to_keep=train.max_to_keep, keep_period=train.keep_period)
  state, restored = checkpointing.restore_or_create(manager, config, mesh,
                                                    data_iterator)
  start_step = int(jax.device_get(state.step))
  if restored:
    logging.info('restored step %d from %s', start_step,
                 checkpointing.checkpoint_dir(workdir))
  _write_config(workdir, config)

  writer = logging_utils.create_writer(workdir)
  if not restored:
    writer.write_hparams(_flat_hparams(config))
  report_progress = logging_utils.create_progress_reporter(num_steps, writer)
  profiler = (logging_utils.create_profiler(workdir, train.profile_num_steps)
              if train.profile else None)
  step_fn = train_step.make_train_step(config, mesh)
  sample_fn = make_sample_fn(config, mesh)
  preemption = PreemptionWatcher()

  pending: list[dict[str, Any]] = []
  step = start_step
  try:
    while step < num_steps:
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        try:
          local_batch = input_pipeline.model_inputs(next(data_iterator))
        except StopIteration:
          logging.warning('the data iterator ended at step %d', step)
          break
        batch = sharding.global_batch(local_batch, mesh)
        referential = config_lib.mode_for_step(config, step)
        state, metrics = step_fn(state, batch, referential)
      pending.append(metrics)
      step += 1
      report_progress(step)
      if profiler is not None:
        profiler(step)
      stop = preemption.should_stop(step)
      last = step == num_steps
      if last or stop or step % train.log_every_steps == 0:
        _check_finite(pending, step)
        writer.write_scalars(step, _mean_metrics(pending))
        pending = []
      if train.sample_every_steps and (
          step % train.sample_every_steps == 0 or last):
        _write_samples(workdir, step, state, batch, sample_fn, writer,
                       train.num_sample_images)
      if last or stop or step % train.checkpoint_every_steps == 0:
        _check_finite(pending, step)
        checkpointing.save(manager, state, config, data_iterator, force=stop)
      if stop:
        logging.warning('preempted: saved step %d, exiting', step)
        break
  finally:
    writer.flush()
    manager.wait_until_finished()
    manager.close()
    preemption.close()
  logging.info('finished at step %d', step)
  return state


def _write_samples(workdir, step, state, batch, sample_fn, writer, count):
  automatic, referential = sharding.to_host(sample_fn(state, batch))
  host_batch = sharding.to_host(batch)
  n = min(count, automatic.shape[0])
  grid = logging_utils.sample_grid(
      host_batch['gray'][:n], host_batch['reference'][:n], automatic[:n],
      referential[:n], host_batch['target'][:n])
  logging_utils.write_sample_grid(workdir, step, grid, writer)
