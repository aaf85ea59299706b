"""The training loop: data -> sharded steps -> metrics, samples, checkpoints.

Resumes from the latest checkpoint in ``WORKDIR/checkpoints`` (train state and
data-iterator position), so a restarted job continues exactly where the last
checkpoint left it. SIGTERM (preemption) saves, then raises ``StoppedEarly``
(``main`` exits ``errors.EXIT_STOPPED_EARLY`` so SLURM requeues); a
non-finite loss stops the run with the last good checkpoint kept.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, NamedTuple, Optional, Sequence

import jax
import ml_collections
import numpy as np
from etils import epath

from scsnet_jax import atomic, config_lib, sharding, writers
from scsnet_jax import workdir as workdir_lib
from scsnet_jax.data import pipeline as input_pipeline
from scsnet_jax.evaluation import common, validation
from scsnet_jax.train import checkpointing, health, resume, schedule
from scsnet_jax.train.preemption import PreemptionWatcher, StoppedEarly
from scsnet_jax.train import state as train_state
from scsnet_jax.train import step as train_step
from scsnet_jax.train.state import TrainState


class NonFiniteLossError(RuntimeError):
  """A step produced NaN/Inf; the last finite checkpoint is left in place."""


_MODE_LOSSES = ('generator_loss', 'content_loss', 'content_l_loss',
                'perceptual_loss', 'adversarial_loss')


def _mean_metrics(pending: list[dict[str, Any]],
                  modes: list[bool]) -> dict[str, float]:
  """Means over the pending steps, plus the losses per mode
  ('automatic/content_loss', 'referential/content_loss', ...)."""
  host = jax.device_get(pending)
  means = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
  for referential, name in ((False, 'automatic'), (True, 'referential')):
    chosen = [m for m, r in zip(host, modes) if r == referential]
    for key in _MODE_LOSSES:
      if chosen and key in chosen[0]:
        means[f'{name}/{key}'] = float(np.mean([m[key] for m in chosen]))
  return means


class _LogLine:
  """One human-readable line per log interval: losses, steps/s, ETA."""

  def __init__(self, num_steps: int, start_step: int):
    self.num_steps = num_steps
    self.last_step, self.last_time = start_step, time.time()

  def __call__(self, step: int, scalars: dict[str, float]):
    now = time.time()
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    eta_min = (self.num_steps - step) / rate / 60 if rate > 0 else float('inf')
    logging.info(
        'step %d/%d  loss G %.6g (L1 %.4f, L1 of L %.4f, VGG %.4f, adv %.4f) '
        'D %.4f  %.2f steps/s  ETA %.1f min', step, self.num_steps,
        scalars['generator_loss'], scalars['content_loss'],
        scalars.get('content_l_loss', float('nan')),
        scalars['perceptual_loss'], scalars['adversarial_loss'],
        scalars['discriminator_loss'], rate, eta_min)
    self.last_step, self.last_time = step, now


def _check_finite(pending: list[dict[str, Any]], step: int):
  flags = jax.device_get([m['all_finite'] for m in pending])
  if not all(float(f) == 1.0 for f in flags):
    first_bad = step - len(pending) + 1 + next(
        i for i, f in enumerate(flags) if float(f) != 1.0)
    raise NonFiniteLossError(
        f'non-finite loss or gradient at step {first_bad}; stopped without '
        'saving: the last checkpoint holds the last good state')


def _write_config(workdir: str, config: ml_collections.ConfigDict):
  """``WORKDIR/config.json``, atomically: eval and predict read it, and a
  crash mid-write must not leave them half a config."""
  if jax.process_index() == 0:
    atomic.write_text(workdir_lib.config_path(workdir),
                      config.to_json(indent=2, sort_keys=True))


def _check_resumed_config(manager, config, allowed: Sequence[str]) -> None:
  """One-line refusal of a resume whose config changed (``train.resume``),
  before anything is compiled or restored. The config of the newest step
  whose config item reads is compared (a damaged step is reported when its
  state is restored: ``checkpointing.restore_or_create``)."""
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      saved = checkpointing.saved_config(manager, step)
    except Exception:  # pylint: disable=broad-except
      continue   # damaged: restore_or_create names it in one line
    break
  else:
    return
  changed = resume.check_config(saved, config.to_dict(), allowed, step)
  if changed:
    logging.warning('resuming step %d with changed config keys: %s', step,
                    ', '.join(changed))


def _flat_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Scalars as they are, anything else as JSON (what hparams take)."""
  return {key: value if isinstance(value, (int, float, str, bool))
          else json.dumps(value)
          for key, value in config_lib.flatten(config.to_dict()).items()}


class _Run(NamedTuple):
  """What ``_setup`` builds for one training run."""
  workdir: str
  mesh: Any
  num_steps: int
  data_iterator: Any
  manager: Any
  networks: train_state.Networks
  state: TrainState
  start_step: int
  writer: Any
  step_fn: Any
  validator: Optional[validation.Validator]
  monitor: health.HealthMonitor


def _setup(config: ml_collections.ConfigDict, workdir: str,
           data_iterator: Optional[Any],
           allow_config_change: Sequence[str],
           fall_back_to_intact: bool) -> _Run:
  """The mesh, data, checkpoint manager, restored (or new) state, writer,
  compiled step, validator and health monitor of a run."""
  workdir = workdir_lib.resolve(workdir)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  mesh = sharding.create_mesh()
  sharding.check_batch_size(config.data.global_batch_size, mesh)
  num_steps = schedule.total_steps(config)
  train = config.train
  logging.info('training %d steps on %d devices (%d processes), mesh %s',
               num_steps, jax.device_count(), jax.process_count(),
               dict(mesh.shape))

  if data_iterator is None:
    data_iterator = input_pipeline.create_iterator(config.data, 'train')
  manager = checkpointing.create_manager(
      workdir, max_to_keep=train.max_to_keep, keep_period=train.keep_period)
  _check_resumed_config(manager, config, allow_config_change)
  networks = train_state.build_networks(config)
  state, restored = checkpointing.restore_or_create(
      manager, networks, config, mesh, data_iterator,
      fall_back=fall_back_to_intact)
  start_step = int(jax.device_get(state.step))
  if restored:
    logging.info('restored step %d from %s', start_step,
                 workdir_lib.checkpoint_dir(workdir))
  _write_config(workdir, config)

  writer = writers.create_writer(workdir)
  if not restored:
    writer.write_hparams(_flat_hparams(config))
  step_fn = train_step.make_train_step(config, mesh, networks)
  validator = _make_validator(config, networks, mesh)
  monitor = health.HealthMonitor(
      health.initial_module_norms(
          lambda rng: train_state.init_train_state(
              networks, config, rng).generator_params, config.seed),
      networks.generator if validator is not None else None,
      settling_steps=schedule.settling_steps(config))
  return _Run(workdir, mesh, num_steps, data_iterator, manager, networks,
              state, start_step, writer, step_fn, validator, monitor)


# ------------------------------------------------------ periodic actions ---
def _log(run: _Run, pending: list[dict[str, Any]], pending_modes: list[bool],
         step: int, log_line: '_LogLine') -> None:
  """Every ``train.log_every_steps`` (and at the end): the pending steps'
  mean metrics, health warnings, the scalars and the log line."""
  _check_finite(pending, step)
  monitor = run.monitor
  for line in monitor.observe_steps(pending, step - len(pending) + 1,
                                    pending_modes):
    logging.warning(line)
  scalars = _mean_metrics(pending, pending_modes)
  scalars[health.SPIKES] = float(monitor.spikes)
  for line in monitor.check_norms(scalars):
    logging.warning(line)
  run.writer.write_scalars(step, scalars)
  log_line(step, scalars)


def _checkpoint(run: _Run, state: TrainState, config, pending, step: int,
                stop: bool) -> None:
  """Every ``train.checkpoint_every_steps``, at the end and on SIGTERM:
  saves, unless a pending step was not finite."""
  _check_finite(pending, step)
  checkpointing.save(run.manager, state, config, run.data_iterator,
                     force=stop)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       data_iterator: Optional[Any] = None,
                       allow_config_change: Sequence[str] = (),
                       fall_back_to_intact: bool = False) -> TrainState:
  """Trains to ``schedule.total_steps(config)`` (or until SIGTERM).

  ``data_iterator`` (per-process numpy batches) replaces the configured input
  pipeline, e.g. in tests. A resume refuses a config that differs from the
  checkpoint's except in ``allow_config_change`` keys (``train.resume``),
  and a damaged latest checkpoint unless ``fall_back_to_intact``
  (``checkpointing.restore_or_create``).
  Returns the final state; raises ``StoppedEarly`` (after saving) on SIGTERM.
  """
  run = _setup(config, workdir, data_iterator, allow_config_change,
               fall_back_to_intact)
  workdir, mesh, num_steps = run.workdir, run.mesh, run.num_steps
  state, writer, manager = run.state, run.writer, run.manager
  train = config.train
  report_progress = writers.create_progress_reporter(num_steps, writer)
  profiler = (writers.create_profiler(workdir, train.profile_num_steps)
              if train.profile else None)
  preemption = PreemptionWatcher()
  log_line = _LogLine(num_steps, run.start_step)

  compiled: set[tuple[bool, bool, bool]] = set()   # step flags seen
  pending: list[dict[str, Any]] = []
  pending_modes: list[bool] = []
  step = run.start_step
  stopped = False
  try:
    while step < num_steps:
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        try:
          local_batch = input_pipeline.model_inputs(next(run.data_iterator))
        except StopIteration:
          logging.warning('the data iterator ended at step %d', step)
          break
        batch = sharding.global_batch(local_batch, mesh)
        referential = schedule.mode_for_step(config, step)
        flags = (referential, schedule.gan_active(config, step),
                 schedule.perceptual_active(config, step))
        if flags not in compiled:
          compiled.add(flags)
          logging.info(
              'compiling the %s step (gray %s -> target %s%s%s); the first '
              'compile of a step takes minutes on a CPU',
              'referential' if referential else 'automatic',
              'x'.join(map(str, batch['gray'].shape)),
              'x'.join(map(str, batch['target'].shape)),
              ', GAN' if flags[1] else '', ', perceptual' if flags[2] else '')
        state, metrics = run.step_fn(state, batch, *flags)
      pending.append(metrics)
      pending_modes.append(referential)
      step += 1
      checkpointing.check_saves(manager)   # a failed async save: stop now
      report_progress(step)
      if profiler is not None:
        profiler(step)
      stop = preemption.should_stop(step)
      last = step == num_steps
      if last or stop or step % train.log_every_steps == 0:
        _log(run, pending, pending_modes, step, log_line)
        pending, pending_modes = [], []
      _validate(run.validator, config, workdir, step, last, state, writer,
                run.monitor)
      if last or stop or step % train.checkpoint_every_steps == 0:
        _checkpoint(run, state, config, pending, step, stop)
      if stop:
        logging.warning('preempted: saved step %d, exiting', step)
        stopped = True
        break
  finally:
    writer.flush()
    try:
      checkpointing.finish_saves(manager)
    finally:
      manager.close()
      preemption.close()
  _log_summary(workdir, step, num_steps, stopped and step < num_steps)
  if stopped and step < num_steps:
    raise StoppedEarly(state, step)
  return state


def _make_validator(config, networks, mesh
                    ) -> Optional[validation.Validator]:
  """The validation photos and their renderer, if evaluation or sample
  grids are switched on (``train.eval_every_steps``,
  ``train.sample_every_steps``)."""
  train = config.train
  if not (train.eval_every_steps or train.sample_every_steps):
    return None
  data = validation.load_validation_set(config.validation)
  return validation.Validator(data, networks.generator, mesh,
                              bool(config.model.referential))


def _validate(validator, config, workdir, step, last, state, writer,
              monitor):
  """Scores (every ``eval_every_steps`` and at the end) and the labelled
  sample grid (every ``sample_every_steps`` and at the end)."""
  if validator is None:
    return
  train = config.train
  every_eval = train.eval_every_steps
  evaluate = bool(every_eval) and (step % every_eval == 0 or last)
  sample = bool(train.sample_every_steps) and (
      step % train.sample_every_steps == 0 or last)
  if not (evaluate or sample):
    return
  params = state.generator_ema   # what is validated: the EMA weights
  if evaluate:
    scores, outputs, _ = evaluation = validator.run(params)
    writer.write_scalars(step, common.prefixed(validator.prefix, scores))
    logging.info('validation at step %d:\n%s', step,
                 validator.summary(evaluation))
    # The training weights' CPM (not the EMA's): is the head alive?
    cpm_scalars, lines = monitor.probe_cpm(
        state.generator_params, validator.data.gray,
        validator.data.lr_color if len(validator.modes) > 1 else None)
    writer.write_scalars(step, cpm_scalars)
    for line in lines:          # dead or collapsed layers: warnings
      logging.warning(line)
    summary = health.summary(cpm_scalars)
    if summary:
      logging.info(summary)
  else:
    outputs = {mode: validator.render(params, mode)
               for mode in validator.modes if mode != 'self_reference'}
  if sample:
    grid = validation.labelled_grid(validator.data, outputs,
                                    config.validation.num_sample_images)
    validation.write_sample_grid(workdir, step, grid, writer)


def _log_summary(workdir: str, step: int, num_steps: int, stopped: bool):
  """Where the results are and what to run next (INFO, like the progress).

  "stopped at step N of M (checkpoint saved)" when SIGTERM cut the run
  short, "finished at step M" otherwise; the sample folder is named only if
  the run (or an earlier one) wrote grids into it.
  """
  samples = epath.Path(workdir_lib.samples_dir(workdir))
  lines = [f'stopped at step {step} of {num_steps} (checkpoint saved; run '
           'the same command again to continue).' if stopped else
           f'finished at step {step}.',
           f'  checkpoints:  {workdir_lib.checkpoint_dir(workdir)}']
  if samples.is_dir() and any(samples.iterdir()):
    lines.append(f'  sample grids: {samples}')
  lines += [f'  metrics:      {workdir} (TensorBoard events and '
            'metrics.jsonl)',
            'next:',
            f'  python -m scsnet_jax.predict --checkpoint {workdir} '
            '--input GRAY.png --output out/ --scale 4',
            f'  python -m scsnet_jax.main --mode=eval --workdir={workdir}',
            f'  tensorboard --logdir {workdir}']
  logging.info('\n'.join(lines))
