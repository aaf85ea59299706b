"""The eval protocol: mode split, accumulators, and --mode=eval on the demo."""

import json
import os

import jax
import numpy as np
import pytest
import scipy.linalg  # pylint: disable=unused-import

from scsnet_jax import color, config_lib
from scsnet_jax.evaluation import protocol as evaluate
from scsnet_jax.evaluation import metrics
from scsnet_jax.evaluation import report as eval_report
from tests import helpers

TINY_MODEL = dict(
    referential=True, init_width=8, encoder_widths=[8, 16],
    source_res_blocks=1, reference_res_blocks=1, cross_attention_qk=8,
    self_attention_qk=8, decoder_res_blocks=[1, 1, 1], texture_res_blocks=1,
    fusion_width=16, cpm_hidden=[16])


def _numbered_batches(sizes):
  """Batches whose arrays carry the image's stream index as their value."""
  start = 0
  for size in sizes:
    index = np.arange(start, start + size, dtype=np.float32)
    yield {'gray': np.broadcast_to(index[:, None, None, None], (size, 4, 4, 1)),
           'target': np.broadcast_to(index[:, None, None, None],
                                     (size, 16, 16, 3)),
           'reference': np.broadcast_to(index[:, None, None, None],
                                        (size, 4, 4, 3))}
    start += size


def test_split_into_modes_counts_order_and_other_reference():
  counts = {'automatic': 3, 'self_reference': 2, 'other_reference': 4}
  pieces = list(evaluate.split_into_modes(_numbered_batches([4, 4, 4]),
                                          counts))
  seen = {mode: [] for mode in counts}
  for mode, piece in pieces:
    ids = piece['gray'][:, 0, 0, 0].astype(int).tolist()
    seen[mode] += ids
    if mode == 'automatic':
      assert piece['reference'] is None
    elif mode == 'self_reference':
      assert ids == piece['reference'][:, 0, 0, 0].astype(int).tolist()
    else:  # the previous image of the stream gives the reference
      refs = piece['reference'][:, 0, 0, 0].astype(int).tolist()
      assert refs == [i - 1 for i in ids]
  # Interleaved in proportion to the counts (each image in one mode only).
  assert seen == {'automatic': [0, 4, 7], 'self_reference': [1, 5],
                  'other_reference': [2, 3, 6, 8]}


def test_split_into_modes_stops_short_when_the_split_runs_out():
  counts = {'automatic': 2, 'self_reference': 0, 'other_reference': 9}
  pieces = list(evaluate.split_into_modes(_numbered_batches([3]), counts))
  assert [(m, len(p['gray'])) for m, p in pieces] == [('automatic', 1),
                                                      ('other_reference', 2)]


def test_a_small_split_fills_every_mode_it_can():
  # The demo's eval split has 2 photos; the paper's counts must not give
  # both to automatic mode and leave self-reference empty.
  counts = {'automatic': 2500, 'self_reference': 500, 'other_reference': 2000}
  modes = [m for m, _ in evaluate.split_into_modes(_numbered_batches([2]),
                                                   counts)]
  assert modes == ['automatic', 'self_reference']
  pieces = list(evaluate.split_into_modes(_numbered_batches([3]), counts))
  assert sorted(m for m, _ in pieces) == sorted(counts)
  # Large sets still get exactly the requested counts.
  got = {}
  for mode, piece in evaluate.split_into_modes(
      _numbered_batches([8] * 700), counts):
    got[mode] = got.get(mode, 0) + len(piece['gray'])
  assert got == counts


def test_a_mode_without_images_shows_n_a_not_a_ratio_of_one():
  accumulator = evaluate.EvalAccumulator(None, y_channel=False, crop_border=0)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, 12, 12, 3), dtype=np.uint8)
  accumulator.add('automatic', 'real', images)
  accumulator.add('automatic', 'scsnet', images, images)
  results = eval_report.summarize(accumulator.all_reduce(), 'no weights')
  assert results['other_reference']['num_images'] == 0
  assert results['other_reference']['real']['colorfulness'] is None
  report = {'step': 3, 'fid_null_reason': None, 'results': results,
            'conventions': {'psnr_ssim': 'p', 'colorfulness': 'c',
                            'fid': 'f'}}
  table = eval_report.markdown_table(report)
  other = table.split('## other_reference')[1]
  assert '1.000' not in other and 'n/a' in other
  automatic = table.split('## automatic')[1].split('##')[0]
  assert '| 1.000 |' in automatic


def test_a_config_whose_model_differs_from_the_checkpoint_is_refused():
  from scsnet_jax import config_lib  # pylint: disable=g-import-not-at-top
  saved = config_lib.get_base_config()
  given = config_lib.get_base_config()
  evaluate.check_model_matches(given, saved, 'WD')
  given.dtype = 'bfloat16'          # not a width: fine
  given.model.cpm_chunk_size = 7
  evaluate.check_model_matches(given, saved, 'WD')
  given.model.texture_res_blocks = 1
  given.model.encoder_widths = [8, 16]
  with pytest.raises(ValueError, match=r'does not match the checkpoint in WD '
                     r'\(config vs checkpoint: encoder_widths \[8, 16\] vs '
                     r'\[128, 256\]; texture_res_blocks 1 vs 20\)') as error:
    evaluate.check_model_matches(given, saved, 'WD')
  assert '\n' not in str(error.value)


def _fake_features(images):
  """A 4-d 'embedding' (channel means, contrast) written in plain numpy."""
  x = np.asarray(images, np.float64) / 255.0
  return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2, 3))[:, None]],
                        axis=1)


def test_accumulator_fid_uses_all_real_images_and_matches_one_shot():
  rng = np.random.default_rng(0)
  make = lambda n: rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)
  accumulator = evaluate.EvalAccumulator(_fake_features, y_channel=False,
                                         crop_border=0, feature_dim=4)
  real_auto, real_other = make(5), make(4)
  generated = [make(3), make(2)]  # two batches of one method
  accumulator.add('automatic', 'real', real_auto, None)
  accumulator.add('other_reference', 'real', real_other, None)
  accumulator.add('automatic', 'scsnet', generated[0], real_auto[:3])
  accumulator.add('automatic', 'scsnet', generated[1], real_auto[3:])
  results = eval_report.summarize(accumulator.all_reduce(), None)

  real_features = _fake_features(np.concatenate([real_auto, real_other]))
  fake_features = _fake_features(np.concatenate(generated))
  want_fid = metrics.frechet_distance(
      fake_features.mean(0), np.cov(fake_features, rowvar=False),
      real_features.mean(0), np.cov(real_features, rowvar=False))
  scores = results['automatic']['scsnet']
  assert abs(scores['fid'] - want_fid) < 1e-8
  want_psnr = np.mean(metrics.psnr(np.concatenate(generated), real_auto))
  assert abs(scores['psnr'] - want_psnr) < 1e-9
  want_cn = np.mean([color.colorfulness(im)
                     for im in np.concatenate(generated)])
  assert abs(scores['colorfulness'] - want_cn) < 1e-9
  real_cn = np.mean([color.colorfulness(im) for im in real_auto])
  assert abs(results['automatic']['real']['colorfulness'] - real_cn) < 1e-9
  assert abs(scores['colorfulness_ratio_to_real'] - want_cn / real_cn) < 1e-9
  # Cells that saw no images are null, not zero.
  assert results['automatic']['color_copy'] is None
  assert results['self_reference']['num_images'] == 0
  assert 'psnr' not in (results['other_reference']['scsnet'] or {})


def _tiny_demo_config():
  from scsnet_jax import config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.get_base_config()
  config.model.update(TINY_MODEL)
  config.data.source = 'demo'
  config.data.crop_size = 32
  config.data.scale = 4.0
  config.data.num_workers = 0
  config.data.read_threads = 1
  config.eval.update(dict(num_automatic=2, num_self_reference=1,
                          num_other_reference=2, batch_size=2,
                          repeat_split=True, write_tensorboard=True))
  return config


@pytest.mark.filterwarnings('ignore::scipy.linalg.LinAlgWarning')  # 2 images
def test_eval_mode_on_demo_source_writes_json_and_table(tmp_path):
  from scsnet_jax import sharding
  from scsnet_jax import loading
  from scsnet_jax.data import pipeline as input_pipeline
  from scsnet_jax.train import state as train_state
  config = _tiny_demo_config()
  workdir = str(tmp_path / 'run')
  networks = train_state.build_networks(config)
  state = train_state.create_train_state(networks, config,
                                         sharding.create_mesh())
  # Make the EMA weights differ from the raw ones: eval must use the EMA.
  ema = jax.tree.map(lambda x: x * 0.5, state.generator_ema)
  state = state.replace(generator_ema=ema)
  helpers.save_train_state(workdir, state, config)

  report = evaluate.evaluate(config, workdir)

  ema_bundle = loading.GeneratorBundle(
      networks.generator, jax.device_get(ema), config, 0)
  config.eval.write_tensorboard = False
  _fake_features.feature_dim = 4
  injected = evaluate.evaluate(config, str(tmp_path / 'other'),
                               generator_bundle=ema_bundle,
                               feature_fn=_fake_features)
  without_fid = lambda results: {
      mode: {method: ({k: v for k, v in scores.items() if k != 'fid'}
                      if isinstance(scores, dict) else scores)
             for method, scores in entry.items()}
      for mode, entry in results.items()}
  assert without_fid(injected['results']) == without_fid(report['results'])
  assert injected['fid_null_reason'] is None
  fids = [injected['results'][mode][method]['fid']
          for mode in ('automatic', 'other_reference')  # 2 images each
          for method in ('scsnet', 'bicubic_gray')]
  assert all(np.isfinite(fids)) and min(fids) >= -1e-6
  # One image has no covariance: null, not a number.
  assert injected['results']['self_reference']['scsnet']['fid'] is None
  config.eval.use_ema = False
  raw = evaluate.evaluate(config, str(tmp_path / 'raw'), generator_bundle=(
      loading.load_generator(workdir, use_ema=False)))
  scsnet_cn = lambda r: r['results']['automatic']['scsnet']['colorfulness']
  assert scsnet_cn(raw) != scsnet_cn(report)

  json_path = os.path.join(workdir, 'eval', 'metrics_0.json')
  with open(json_path) as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(report))
  assert saved['step'] == 0 and saved['weights'] == 'ema'
  assert saved['data']['source'] == 'demo' and saved['data']['crop_size'] == 32
  assert saved['requested_images']['other_reference'] == 2
  assert 'inception_weights' in saved['fid_null_reason']
  assert set(saved['conventions']) == {'psnr_ssim', 'colorfulness', 'fid'}
  results = saved['results']
  assert {m: results[m]['num_images'] for m in evaluate.MODES} == {
      'automatic': 2, 'self_reference': 1, 'other_reference': 2}
  for mode in evaluate.MODES:
    for method in ('scsnet', 'bicubic_gray', 'color_copy'):
      scores = results[mode][method]
      if mode == 'automatic' and method == 'color_copy':
        assert scores is None  # no reference in automatic mode
        continue
      assert scores['fid'] is None
      assert scores['colorfulness'] >= 0
      has_truth = mode != 'other_reference'
      assert ('psnr' in scores) == has_truth and ('ssim' in scores) == has_truth
      if has_truth:
        assert 0 < scores['psnr'] < 100 and -1 < scores['ssim'] <= 1
  # Zero chroma is gray up to LAB->sRGB rounding.
  assert results['automatic']['bicubic_gray']['colorfulness'] < 1.0
  # Real CN vs the eval images rendered independently (numpy colour path).
  batch = next(iter(input_pipeline.create_iterator(
      config.data, 'eval', seed=config.data.seed, global_batch_size=2)))
  real = metrics.to_uint8(color.nlab_to_rgb01(
      batch['target'].astype(np.float64), np))
  want_cn = np.mean([color.colorfulness(im) for im in real])
  assert abs(results['automatic']['real']['colorfulness'] - want_cn) < 0.05
  table = open(os.path.join(workdir, 'eval', 'metrics_0.md')).read()
  assert '| bicubic_gray |' in table and '## other_reference' in table
  assert any(name.startswith('events.out.tfevents')
             for name in os.listdir(os.path.join(workdir, 'eval')))


def test_missing_inception_weights_file_is_a_clear_error(tmp_path):
  config = config_lib.eval_defaults()
  config.inception_weights = str(tmp_path / 'nope.npz')
  with pytest.raises(FileNotFoundError, match='convert_inception'):
    evaluate.load_feature_fn(config)
  config.inception_weights = ''
  feature_fn, reason = evaluate.load_feature_fn(config)
  assert feature_fn is None and 'inception_weights' in reason


def test_baselines_on_closed_form_inputs():
  from scsnet_jax.evaluation import baselines
  rng = np.random.default_rng(4)
  rgb = rng.uniform(0, 1, (2, 8, 8, 3))
  nlab = color.rgb01_to_nlab(rgb, np).astype(np.float32)
  # At the input size, the colour copy of the image's own colours is the
  # image, and the gray baseline has R = G = B up to LAB rounding.
  copy = np.asarray(baselines.color_copy(nlab[..., :1], nlab, (8, 8)))
  np.testing.assert_allclose(copy, rgb, atol=2e-4)
  gray = np.asarray(baselines.bicubic_gray(nlab[..., :1], (8, 8)))
  assert np.abs(gray - gray[..., :1]).max() < 2e-3
  # Upsampling a constant image keeps it constant (bicubic weights sum to 1).
  flat = np.full((1, 4, 4, 3), 0.3, np.float32)
  flat[..., 1:] = [0.2, -0.1]
  up = np.asarray(baselines.color_copy(flat[..., :1], flat, (12, 16)))
  assert up.shape == (1, 12, 16, 3)
  np.testing.assert_allclose(up, np.broadcast_to(up[:, :1, :1], up.shape),
                             atol=1e-5)
  want = color.nlab_to_rgb01(flat[0, 0, 0].astype(np.float64), np)
  np.testing.assert_allclose(up[0, 0, 0], want, atol=1e-4)


def test_eval_prints_its_table_and_says_what_it_lacks(caplog):
  """--mode=eval on the demo: the table, 1 image per mode said plainly, FID
  needing the user's Inception weights (issue 22, item 8)."""
  import logging  # pylint: disable=g-import-not-at-top
  accumulator = evaluate.EvalAccumulator(None, y_channel=False, crop_border=0)
  images = np.random.default_rng(0).integers(0, 256, (1, 12, 12, 3), np.uint8)
  for mode in ('automatic', 'self_reference'):
    accumulator.add(mode, 'real', images)
    accumulator.add(mode, 'scsnet', images, images)
  report = {'step': 100, 'inception_weights': None,
            'fid_null_reason': 'no Inception weights',
            'requested_images': {'automatic': 2500, 'self_reference': 500,
                                 'other_reference': 2000},
            'results': eval_report.summarize(accumulator.all_reduce(), 'no'),
            'conventions': {'psnr_ssim': 'p', 'colorfulness': 'c',
                            'fid': 'f'}}
  text = eval_report.console_summary(report, '/w/eval/metrics_100.json')
  assert text.startswith(eval_report.markdown_table(report))
  assert ('images per mode: automatic 1 of 2500, self_reference 1 of 500, '
          'other_reference 0 of 2000.') in text
  assert 'smoke test, not a measurement' in text
  assert '--config.eval.inception_weights=FILE' in text
  assert text.endswith('written: /w/eval/metrics_100.json and '
                       '/w/eval/metrics_100.md')
  report['inception_weights'] = 'inception.npz'
  report['requested_images'] = {'automatic': 1, 'self_reference': 1,
                                'other_reference': 0}
  text = eval_report.console_summary(report, '/w/eval/metrics_100.json')
  assert 'smoke test' not in text and 'inception_weights' not in text
  with caplog.at_level(logging.WARNING):
    list(evaluate.split_into_modes(_numbered_batches([2]), {
        'automatic': 3, 'self_reference': 0, 'other_reference': 0}))
  assert "missing per mode: {'automatic': 1}" in caplog.text
  assert 'the scores use the images there were' in caplog.text
