"""Training-health instruments against hand-made cases and numpy."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
import skimage.transform
from flax import nnx

from scsnet_jax import color
from scsnet_jax.models.generator import Generator, GeneratorConfig
from scsnet_jax.models.layers import lrelu
from scsnet_jax.train import health


def test_step_metrics_are_per_module_norms_and_update_ratios():
  rng = np.random.default_rng(0)
  params = {'cpm': {'w': rng.normal(size=(3, 4)), 'b': rng.normal(size=4)},
            'fusion': {'w': rng.normal(size=(5,))}}
  grads = jax.tree.map(lambda p: rng.normal(size=p.shape), params)
  new = jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)
  got = {k: float(v) for k, v in health.step_metrics(params, grads,
                                                     new).items()}
  for name in params:
    flat = lambda t: np.concatenate([np.ravel(x) for x in
                                     jax.tree.leaves(t[name])])
    assert got[health.PARAM_NORM + name] == pytest.approx(
        np.linalg.norm(flat(new)), rel=1e-5)
    assert got[health.GRAD_NORM + name] == pytest.approx(
        np.linalg.norm(flat(grads)), rel=1e-5)
    assert got[health.UPDATE_RATIO + name] == pytest.approx(
        0.01 * np.linalg.norm(flat(grads)) / np.linalg.norm(flat(params)),
        rel=1e-4)


def _steps(n, spike_at=None, module='cpm'):
  steps = []
  for i in range(n):
    grads = {'cpm': 1.0, 'texture_encoder': 2.0}
    if i == spike_at:
      grads[module] *= 40
    metrics = {health.GRAD_NORM + k: v for k, v in grads.items()}
    metrics['generator_grad_norm'] = float(np.hypot(*grads.values()))
    metrics['content_loss'] = 0.1
    steps.append(metrics)
  return steps


def test_spike_detector_names_the_module_whose_gradient_jumped():
  monitor = health.HealthMonitor({})
  assert monitor.observe_steps(_steps(40), 1) == []
  lines = monitor.observe_steps(_steps(10, spike_at=4, module='cpm'), 41)
  assert len(lines) == 1 and monitor.spikes == 1
  assert 'step 45' in lines[0] and 'in cpm' in lines[0]
  lines = monitor.observe_steps(
      _steps(10, spike_at=2, module='texture_encoder'), 51)
  assert len(lines) == 1 and 'in texture_encoder' in lines[0]


def test_the_module_carrying_the_spike_is_named_not_the_largest_ratio():
  """A module whose usual gradient is near zero (the reference branch early
  in a run) 'jumps' by a huge ratio on a tiny absolute change; the spike is
  in the module whose gradient rose most (measured in a fresh run: CPM 3.5
  -> 266 while the reference encoder went 3e-4 -> 3)."""
  steps = _steps(60)
  for metrics in steps:
    metrics[health.GRAD_NORM + 'reference_encoder'] = 3e-4
  steps[55][health.GRAD_NORM + 'reference_encoder'] = 3.0    # 10000x
  steps[55][health.GRAD_NORM + 'cpm'] = 266.0                # 266x, +265
  steps[55]['generator_grad_norm'] = 266.0
  lines = health.HealthMonitor({}).observe_steps(steps, 1)
  assert len(lines) == 1
  assert 'mostly in cpm (gradient norm 266, 266.0x its median)' in lines[0]


def test_a_module_without_gradient_in_some_steps_is_not_blamed():
  """The reference branch gets no gradient in automatic steps: its median
  is over the steps that reached it, so its usual value is no 'jump'."""
  steps = _steps(60)
  for i, metrics in enumerate(steps):
    metrics[health.GRAD_NORM + 'reference_encoder'] = 0.0 if i % 2 else 0.5
  steps[51][health.GRAD_NORM + 'cpm'] = 40.0
  steps[51]['generator_grad_norm'] = 40.0
  monitor = health.HealthMonitor({})
  lines = monitor.observe_steps(steps, 1)
  assert len(lines) == 1 and 'in cpm' in lines[0], lines


def test_each_mode_is_judged_against_its_own_steps():
  """Referential steps run at a much larger gradient norm than automatic
  ones: alternating modes is not a spike, a jump within a mode is."""
  steps = _steps(60)
  for metrics in steps[1::2]:
    metrics['generator_grad_norm'] *= 30
  modes = [False, True] * 30
  monitor = health.HealthMonitor({})
  assert monitor.observe_steps(steps, 1, modes) == []
  assert health.HealthMonitor({}).observe_steps(steps, 1) != []
  jump = _steps(2, spike_at=0)
  assert len(monitor.observe_steps(jump, 61, [False, True])) == 1


def test_no_verdict_before_enough_history():
  monitor = health.HealthMonitor({})
  assert monitor.observe_steps(_steps(10, spike_at=5), 1) == []


def test_shrink_warning_once_below_half():
  monitor = health.HealthMonitor({'cpm': 10.0, 'fusion': 4.0})
  assert monitor.check_norms({health.PARAM_NORM + 'cpm': 6.0,
                              health.PARAM_NORM + 'fusion': 4.1}) == []
  lines = monitor.check_norms({health.PARAM_NORM + 'cpm': 4.9,
                               health.PARAM_NORM + 'fusion': 4.1})
  assert len(lines) == 1 and 'cpm' in lines[0] and '49%' in lines[0]
  assert monitor.check_norms({health.PARAM_NORM + 'cpm': 4.0}) == []


TINY = GeneratorConfig(
    init_width=8, encoder_widths=(8, 16), source_res_blocks=0,
    reference_res_blocks=0, cross_attention_qk=8, self_attention_qk=8,
    decoder_res_blocks=(0, 0, 0), texture_res_blocks=0, fusion_width=8,
    cpm_hidden=(16, 8, 8), cpm_chunk_size=0)


def _numpy_cpm_health(model, gray, side):
  """The probe re-derived: activations of the CPM's MLP in numpy."""
  features = np.asarray(model.features(jnp.asarray(gray)))
  n, h, w, _ = features.shape
  x = (np.arange(side) + 0.5) / side

  def corners(n):            # the spec's sampling: u = x (n - 1)
    u = x * (n - 1)
    i0 = np.minimum(np.floor(u).astype(int), n - 2)
    return i0, u - i0

  r0, rt = corners(h)
  c0, ct = corners(w)
  rows = (features[:, r0] * (1 - rt)[None, :, None, None]
          + features[:, r0 + 1] * rt[None, :, None, None])
  grid = (rows[:, :, c0] * (1 - ct)[None, None, :, None]
          + rows[:, :, c0 + 1] * ct[None, None, :, None])
  zx = 2 * (x * w - np.floor(x * w)) - 1
  zy = 2 * (x * h - np.floor(x * h)) - 1
  zz = np.stack(np.broadcast_arrays(zx[None, :], zy[:, None]), -1)
  act = np.concatenate([grid, np.broadcast_to(zz, grid.shape[:3] + (2,))],
                       -1).reshape(n, side * side, -1)
  alive, dead = [], []
  for layer in model.cpm.hidden_layers:
    act = np.maximum(act @ np.asarray(layer.kernel[...])
                     + np.asarray(layer.bias[...]), 0)
    alive.append(np.mean(act > 0))
    dead.append(np.mean(act.max(axis=(0, 1)) <= 0))
  out = (act @ np.asarray(model.cpm.output_layer.kernel[...])
         + np.asarray(model.cpm.output_layer.bias[...]))
  return alive, dead, out.std(axis=1).mean(axis=0)


def test_cpm_probe_matches_numpy_and_warns_on_a_dead_layer():
  model = Generator(TINY, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  gray = np.random.default_rng(1).uniform(-1, 1, (2, 8, 12, 1)).astype(
      np.float32)
  monitor = health.HealthMonitor({}, graphdef)
  monitor._probe = health.make_cpm_probe(graphdef, points_per_side=16)
  scalars, lines = monitor.probe_cpm(state.to_pure_dict(), gray)
  alive, dead, std = _numpy_cpm_health(model, gray, 16)
  for i in range(3):
    assert scalars[f'{health.CPM_ALIVE}{i + 1}'] == pytest.approx(alive[i],
                                                                  abs=1e-6)
    assert scalars[f'{health.CPM_DEAD}{i + 1}'] == pytest.approx(dead[i],
                                                                 abs=1e-6)
  np.testing.assert_allclose([scalars[health.CPM_OUTPUT_STD + c]
                              for c in 'Lab'], std, rtol=1e-3, atol=1e-6)
  assert 0.25 < alive[0] < 0.75 and lines == []
  # Kill the second layer: a large negative bias.
  layer = model.cpm.hidden_layers[1]
  layer.bias.value = jnp.full_like(layer.bias.value, -1e3)
  scalars, lines = monitor.probe_cpm(nnx.state(model).to_pure_dict(), gray)
  assert scalars[f'{health.CPM_ALIVE}2'] == 0.0
  assert scalars[f'{health.CPM_DEAD}2'] == 1.0
  # Layer 3 then sees only zeros (and a zero bias): it is dead too.
  assert ['layer 2' in lines[0], 'layer 3' in lines[1]] == [True, True]
  # Warned once per layer.
  assert monitor.probe_cpm(nnx.state(model).to_pure_dict(), gray)[1] == []


def test_settling_steps_are_summarised_in_one_line_then_judged():
  """While the heads open (warm-up and as long again) the norm grows by
  design: steps over 5x their median there give one summary line at the end
  of that phase, naming the peak; a spike after it is reported as usual."""
  steps = _steps(120)
  for i in range(40, 60):            # a growing transient inside settling
    steps[i][health.GRAD_NORM + 'cpm'] = 40.0 + i
    steps[i]['generator_grad_norm'] = 40.0 + i
  steps[110][health.GRAD_NORM + 'cpm'] = 60.0    # after settling: a spike
  steps[110]['generator_grad_norm'] = 60.0
  monitor = health.HealthMonitor({}, settling_steps=80)
  lines = monitor.observe_steps(steps, 1)
  assert len(lines) == 2 and monitor.spikes == 1
  assert lines[0].startswith('steps 1-80 (warm-up and settling)')
  assert 'peak of 99 at step 60 (mostly cpm)' in lines[0]
  assert 'spike checks start at step 81' in lines[0]
  assert 'spike at step 111' in lines[1]
  # Without settling steps every one of them is a spike line.
  assert len(health.HealthMonitor({}).observe_steps(_steps(0) + steps, 1)
             ) > 2


def test_attention_scalars_against_numpy():
  """Entropy over uniform's and own-position share, re-derived in numpy on
  hand-made weights: uniform rows give 1.0; one-hot diagonal rows give 0.0
  and an own-position share of 1."""
  uniform = jnp.full((2, 4, 4), 0.25)
  diagonal = jnp.eye(4)[None].repeat(2, 0)
  rng = np.random.default_rng(0)
  mixed = rng.random((2, 9, 9))
  mixed /= mixed.sum(-1, keepdims=True)
  scalars = health.attention_scalars([uniform, diagonal, jnp.asarray(mixed)])
  assert float(scalars[f'{health.ATTENTION_ENTROPY}1']) == pytest.approx(1)
  assert float(scalars[f'{health.ATTENTION_ENTROPY}2']) == pytest.approx(
      0, abs=1e-6)
  assert float(scalars[f'{health.ATTENTION_OWN}2']) == 1.0
  entropy = -(mixed * np.log(mixed)).sum(-1).mean() / np.log(9)
  own = np.mean(mixed.argmax(-1) == np.arange(9)[None])
  assert float(scalars[f'{health.ATTENTION_ENTROPY}3']) == pytest.approx(
      entropy, rel=1e-5)
  assert float(scalars[f'{health.ATTENTION_OWN}3']) == pytest.approx(own)


def test_attention_probe_reads_the_model_weights():
  """The probe's weights are PVCAttn's own: rows sum to 1 and equal a
  softmax of the query/key projections computed by hand; tied luminance
  keys with the photo's own colours put every query's strongest key on
  its own position far more often than chance."""
  config = dataclasses.replace(TINY, referential=True, pyramid_levels=2,
                               reference_keys='luminance')
  model = Generator(config, rngs=nnx.Rngs(0))
  photo = skimage.transform.resize(skimage.data.astronaut(), (32, 32),
                                   anti_aliasing=True)
  nlab = color.rgb01_to_nlab(photo, np)[None].astype(np.float32)
  gray = nlab[..., :1]
  weights = model.reference_attention(gray, nlab)
  f_s = model.source_encoder(model.init_conv(gray))
  level = model.pvc_attention.levels[0]
  s = lrelu(level.source_proj(f_s))
  q = np.asarray(level.valve.query(s)).reshape(1, 64, -1)
  k = np.asarray(level.valve.key(s)).reshape(1, 64, -1)   # tied, same L
  logits = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
  expected = np.exp(logits - logits.max(-1, keepdims=True))
  expected /= expected.sum(-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(weights[0]), expected, atol=1e-5)
  np.testing.assert_allclose(np.asarray(weights[1]).sum(-1), 1.0, atol=1e-5)
  graphdef, state = nnx.split(model)
  scalars = health.make_attention_probe(graphdef)(state.to_pure_dict(),
                                                  gray, nlab)
  assert float(scalars[f'{health.ATTENTION_OWN}1']) > 3 / 64
  monitor = health.HealthMonitor({}, graphdef)
  got, _ = monitor.probe_cpm(state.to_pure_dict(), gray, nlab)
  assert f'{health.ATTENTION_ENTROPY}2' in got
  assert 'reference attention entropy' in health.summary(got)
