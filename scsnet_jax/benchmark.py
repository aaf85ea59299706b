r"""Speed and memory figures: ``python -m scsnet_jax.benchmark [--json F]``.

Measures the generator forward (batch-1 latency, throughput at larger
batches, float32 and bfloat16, automatic and referential), the GAN train step
(images/s at a global batch), large-output inference with tiling, and the
input pipeline. Compile time is reported apart from steady state; steady
state is the median of ``--repeats`` timed runs after ``--warmup`` runs, each
ended with ``block_until_ready``.

Importable without tfds, clu or TensorFlow: the train-step, tiling and input
parts import what they need lazily and report a skip reason otherwise.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import statistics
import time
from typing import Any, Callable, Optional

from absl import app, flags, logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from scsnet_jax import atomic, color, command_line, config_lib
from scsnet_jax import flops as flops_lib
from scsnet_jax.inference import predictor as predictor_lib
from scsnet_jax.inference import size_benchmark
from scsnet_jax.models import generator as gen_lib

FLAGS = flags.FLAGS
flags.DEFINE_list('what', ['forward', 'train'],
                  'Parts to run: forward, train, tiled, input, sizes, '
                  'retrieval, video.')
flags.DEFINE_list('modes', ['automatic', 'referential'], 'Generator modes.')
flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Compute dtypes.')
flags.DEFINE_list('batch_sizes', None,
                  'Forward batch sizes (default 1,16,32,64; 1,2 on CPU).')
flags.DEFINE_integer('size', 128, 'Gray input height and width.')
flags.DEFINE_float('scale', 4.0, 'Magnification.')
flags.DEFINE_integer('train_batch', None,
                     'Global train batch (default 32; 2 on CPU).')
flags.DEFINE_string('train_dtype', 'bfloat16', 'Train-step compute dtype.')
flags.DEFINE_integer('repeats', None, 'Timed repetitions (5; 2 on CPU).')
flags.DEFINE_integer('warmup', 1, 'Untimed runs after compilation.')
flags.DEFINE_string('attention_impl', None, "None, 'xla' or 'cudnn'.")
flags.DEFINE_string('cpm_project_first', 'auto', "'auto', 'true', 'false'.")
flags.DEFINE_integer('cpm_chunk_size', None, 'CPM points per chunk.')
flags.DEFINE_integer('tiled_size', 1024, 'Input side for the tiled test.')
flags.DEFINE_integer('tile', 256, 'Tile side for the tiled test.')
flags.DEFINE_integer('tile_overlap', 32, 'Tile overlap for the tiled test.')
flags.DEFINE_string('input_source', 'demo', 'Input benchmark: data source.')
flags.DEFINE_integer('input_crop', 512, 'Input benchmark: HR crop side.')
flags.DEFINE_integer('input_batch', 8, 'Input benchmark: batch size.')
flags.DEFINE_integer('input_batches', 10, 'Input benchmark: timed batches.')
flags.DEFINE_integer('input_workers', 0,
                     'Input benchmark: grain workers (0 = one, inline).')
flags.DEFINE_integer('sizes_count', 100,
                     'Sizes benchmark: photos per run (--what=sizes).')
flags.DEFINE_list('sizes_modes', ['unbounded', 'bounded', 'input_buckets'],
                  'Sizes benchmark: predictor settings compared.')
flags.DEFINE_enum('sizes_model', 'tiny', ['tiny', 'full'],
                  'Sizes benchmark: generator (size_benchmark.TINY_MODEL, '
                  "or configs/test.py's full-width one).")
flags.DEFINE_list('retrieval_photos', None, 'Retrieval: photo globs (default: '
                  "configs/photos_cpu.py's corpus + opencv-doc held-out).")
flags.DEFINE_string('retrieval_checkpoint', None, 'Retrieval: a trained '
                    'referential model for the CIEDE2000 rows (else none).')
flags.DEFINE_string('json', None, 'Write the results as JSON here.')


def environment() -> dict[str, Any]:
  device = jax.devices()[0]
  return {
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(),
      'platform': device.platform, 'device_kind': device.device_kind,
      'device_count': jax.device_count(), 'jax': jax.__version__,
      'flax': flax.__version__, 'python': platform.python_version(),
      'host': platform.machine(), 'cpu_count': os.cpu_count(),
  }


def peak_memory_bytes() -> dict[str, Any]:
  """Peak device memory (accelerators) and peak host RSS of this process."""
  stats = {}
  try:
    stats = jax.devices()[0].memory_stats() or {}
  except Exception:  # CPU backends may not implement it.
    stats = {}
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  return {'device_peak_bytes': stats.get('peak_bytes_in_use'),
          'host_peak_rss_bytes': rss}


def time_compiled(jitted, *args, repeats: int, warmup: int) -> dict[str, Any]:
  """Compile (timed apart), then the median of ``repeats`` timed runs."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  analysis = compiled.cost_analysis()
  if isinstance(analysis, list):
    analysis = analysis[0] if analysis else {}
  return {'compile_s': compile_s, 'median_s': statistics.median(times),
          'min_s': min(times), 'times_s': times,
          'xla_flops': float((analysis or {}).get('flops', 0.0)) or None}


def _project_first(value: str):
  return {'auto': 'auto', 'true': True, 'false': False}[value.lower()]


def generator_config(referential: bool, dtype: str) -> gen_lib.GeneratorConfig:
  values = dict(referential=referential, dtype=dtype,
                attention_impl=FLAGS.attention_impl,
                cpm_project_first=_project_first(FLAGS.cpm_project_first))
  if FLAGS.cpm_chunk_size is not None:
    values['cpm_chunk_size'] = FLAGS.cpm_chunk_size
  return gen_lib.GeneratorConfig(**values)


def init_generator(cfg: gen_lib.GeneratorConfig):
  """(graphdef, params) with parameters created by one jitted init."""
  graphdef = nnx.graphdef(gen_lib.abstract_generator(cfg))
  params = jax.jit(lambda: nnx.state(gen_lib.Generator(
      cfg, rngs=nnx.Rngs(0))))()
  return graphdef, params


def bench_forward(mode: str, dtype: str, batch: int, env) -> dict[str, Any]:
  referential = mode == 'referential'
  cfg = generator_config(referential, dtype)
  graphdef, params = init_generator(cfg)
  size, out = FLAGS.size, round(FLAGS.size * FLAGS.scale)
  rng = np.random.default_rng(0)
  gray = jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 1)), jnp.float32)
  reference = (jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 3)),
                           jnp.float32) if referential else None)
  forward = jax.jit(lambda p, g, r: gen_lib.apply_generator(
      graphdef, p, g, r, out_size=(out, out)))
  timing = time_compiled(forward, params, gray, reference,
                         repeats=FLAGS.repeats, warmup=FLAGS.warmup)
  reference_size = (size, size) if referential else None
  analytic = flops_lib.generator_flops(size, size, out, out,
                                       reference_size=reference_size)
  projected = (out * out > size * size if cfg.cpm_project_first == 'auto'
               else bool(cfg.cpm_project_first))
  executed = flops_lib.generator_flops(size, size, out, out,
                                       reference_size=reference_size,
                                       project_first=projected)
  images_per_s = batch / timing['median_s']
  peak = flops_lib.peak_flops(env['device_kind'], dtype)
  achieved = analytic * images_per_s
  return {'part': 'forward', 'mode': mode, 'dtype': dtype, 'batch': batch,
          'input': [size, size], 'output': [out, out],
          'latency_ms': 1e3 * timing['median_s'],
          'images_per_s': images_per_s, **timing,
          # Spec-form FLOPs (what utilisation is quoted against) and the
          # FLOPs actually executed (fewer with the CPM projected first).
          'analytic_flops_per_image': analytic,
          'executed_flops_per_image': executed,
          'achieved_tflops': achieved / 1e12,
          'peak_fraction': achieved / peak if peak else None,
          **peak_memory_bytes()}


def bench_train(env) -> dict[str, Any]:
  """Images/s of one D + one G update (perceptual loss included)."""
  try:
    from scsnet_jax import sharding  # the training modules: optional extras
    from scsnet_jax.train import state as train_state
    from scsnet_jax.train import step as train_step
  except ImportError as err:
    return {'part': 'train', 'skipped': f'training modules unavailable: {err}'}
  batch = FLAGS.train_batch
  config = config_lib.get_base_config()
  size, out = FLAGS.size, round(FLAGS.size * FLAGS.scale)
  config.data.global_batch_size = batch
  config.data.crop_size = out
  config.data.scale = FLAGS.scale
  config.dtype = FLAGS.train_dtype
  config.model.referential = True
  config.model.attention_impl = FLAGS.attention_impl
  config.loss.vgg_weights = 'random'   # a stand-in: speed, not quality
  mesh = sharding.create_mesh()
  state = train_state.create_train_state(train_state.build_networks(config), config, mesh)
  step = train_step.make_train_step(config, mesh, train_state.build_networks(config))
  rng = np.random.default_rng(0)
  local = {
      'gray': rng.uniform(-1, 1, (batch, size, size, 1)).astype(np.float32),
      'target': rng.uniform(-1, 1, (batch, out, out, 3)).astype(np.float32),
      'reference': rng.uniform(-1, 1, (batch, size, size, 3)).astype(
          np.float32)}
  batch_arrays = sharding.global_batch(local, mesh)
  results = {}
  for mode, referential in (('automatic', False), ('referential', True)):
    start = time.perf_counter()
    state, metrics = step(state, batch_arrays, referential)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(FLAGS.warmup + FLAGS.repeats):
      start = time.perf_counter()
      state, metrics = step(state, batch_arrays, referential)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
    median = statistics.median(times[FLAGS.warmup:])
    results[mode] = {'compile_s': compile_s, 'median_s': median,
                     'images_per_s': batch / median}
  return {'part': 'train', 'dtype': FLAGS.train_dtype, 'global_batch': batch,
          'input': [size, size], 'output': [out, out],
          'images_per_s_alternating': 2 * batch / (
              results['automatic']['median_s']
              + results['referential']['median_s']),
          'by_mode': results, **peak_memory_bytes()}


def measure_tiled_peak_memory(input_size: int = 1024, scale: int = 4,
                              tile: int = 256, tile_overlap: int = 32,
                              model_config: Optional[gen_lib.GeneratorConfig] = None,
                              seed: int = 0) -> dict[str, Any]:
  """Runs one tiled (input_size^2 -> (scale*input_size)^2) image, automatic
  mode, spec-size generator with random weights; returns peak RSS and time.

  Peak RSS is the process's high-water mark (``ru_maxrss``), so call it in a
  fresh process for a clean figure.
  """
  config = model_config or gen_lib.GeneratorConfig()
  model = gen_lib.Generator(config, rngs=nnx.Rngs(seed))
  params = nnx.split(model)[1].to_pure_dict()
  del model
  predictor = predictor_lib.Predictor(params, config, tile=tile,
                                      tile_overlap=tile_overlap)
  rng = np.random.default_rng(seed)
  gray = rng.uniform(-1, 1, (1, input_size, input_size, 1)).astype(np.float32)
  out_size = (scale * input_size, scale * input_size)
  windows = predictor.tile_count(input_size, input_size, out_size)
  start = time.perf_counter()
  out, _ = predictor.predict_nlab(gray, None, out_size)
  pixels = color.nlab_to_rgb8(out[0])
  seconds = time.perf_counter() - start
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  return {'input': [input_size, input_size], 'output': list(pixels.shape[:2]),
          'tile': tile, 'tile_overlap': tile_overlap,
          'windows': windows, 'seconds': seconds,
          'peak_rss_bytes': int(peak), 'peak_rss_gib': peak / 2**30,
          'backend': jax.default_backend()}


def measure_input_throughput(data, num_batches: int = 10, *, batch_size: int = 8,
                    num_workers: int = 0, crop_size: int = 512,
                    warmup_batches: int = 1, split: str = 'train') -> dict:
  """Examples/s of the pipeline (512 crops by default) for this machine.

  With ``num_workers=0`` all work runs in this process, which measures what
  one worker delivers; ``examples_per_cpu_s`` is then the rate one idle core
  would give. ``data``: a config's ``data`` section. Returns examples/s
  overall and per worker.
  """
  from scsnet_jax.data import pipeline  # needs grain: the training stack
  data = ml_collections.ConfigDict(data.to_dict())
  data.crop_size = crop_size
  iterator = pipeline.create_iterator(data, split, global_batch_size=batch_size,
                             process_index=0, process_count=1,
                             num_workers=num_workers)
  for _ in range(warmup_batches):
    next(iterator)
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in range(num_batches):
    next(iterator)
  seconds = time.perf_counter() - start
  cpu_seconds = time.process_time() - cpu_start
  examples = num_batches * batch_size
  examples_per_s = examples / seconds
  if num_workers:
    iterator.close()
  result = dict(source=data.source, crop_size=crop_size, batch_size=batch_size,
                num_batches=num_batches, num_workers=num_workers,
                seconds=seconds, examples_per_s=examples_per_s,
                # Inline only: CPU time of this process, so busy machines
                # still give the cost per example of one core.
                examples_per_cpu_s=(examples / cpu_seconds
                                    if not num_workers else None),
                examples_per_s_per_worker=examples_per_s / max(1, num_workers))
  return result


def bench_tiled(env) -> dict[str, Any]:
  """Large output through the tiled predictor (peak RSS: run it alone,
  e.g. ``--what=tiled``, for a clean high-water mark)."""
  return {'part': 'tiled', **measure_tiled_peak_memory(
      input_size=FLAGS.tiled_size, scale=int(FLAGS.scale), tile=FLAGS.tile,
      tile_overlap=FLAGS.tile_overlap), **peak_memory_bytes()}


def bench_input(env) -> dict[str, Any]:
  try:
    import grain  # noqa: F401  pylint: disable=unused-import
  except ImportError as err:
    return {'part': 'input', 'skipped': f'input pipeline unavailable: {err}'}
  data = config_lib.data_defaults()
  data.source = FLAGS.input_source
  result = measure_input_throughput(
      data, FLAGS.input_batches, batch_size=FLAGS.input_batch,
      num_workers=FLAGS.input_workers, crop_size=FLAGS.input_crop)
  return {'part': 'input', **result}


def _format_row(r: dict[str, Any]) -> str:
  if r['part'] == 'retrieval' and 'per_query' in r:   # the colour row
    return 'retrieval colour CIEDE2000 ' + ', '.join(
        f'{k}={v:.2f}' for k, v in r['ciede2000'].items())
  if r.get('skipped'):
    return f"{r['part']:8s} skipped: {r['skipped']}"
  if r['part'] == 'forward':
    frac = ('' if r['peak_fraction'] is None
            else f" {100 * r['peak_fraction']:5.1f}% of peak")
    return (f"forward  {r['mode']:11s} {r['dtype']:8s} b={r['batch']:<3d} "
            f"{r['latency_ms']:9.1f} ms {r['images_per_s']:8.1f} img/s "
            f"compile {r['compile_s']:6.1f} s{frac}")
  if r['part'] == 'train':
    return (f"train    {r['dtype']:8s} global b={r['global_batch']:<3d} "
            f"{r['images_per_s_alternating']:8.1f} img/s (alternating modes)")
  return f"{r['part']:8s} " + ', '.join(
      f'{k}={v}' for k, v in r.items() if k != 'part')


def main(argv):
  del argv
  env = environment()
  on_cpu = env['platform'] == 'cpu'
  FLAGS.batch_sizes = FLAGS.batch_sizes or (['1', '2'] if on_cpu
                                            else ['1', '16', '32', '64'])
  FLAGS.train_batch = FLAGS.train_batch or (2 if on_cpu else 32)
  FLAGS.repeats = FLAGS.repeats or (2 if on_cpu else 5)
  results = []
  runners: dict[str, Callable[[dict], dict]] = {
      'train': bench_train, 'tiled': bench_tiled, 'input': bench_input,
      'sizes': lambda env: size_benchmark.bench_mixed_sizes(
          FLAGS.sizes_count, FLAGS.tile, FLAGS.sizes_modes,
          FLAGS.sizes_model)}
  settings = {
      'size': FLAGS.size, 'scale': FLAGS.scale, 'repeats': FLAGS.repeats,
      'warmup': FLAGS.warmup, 'attention_impl': FLAGS.attention_impl,
      'cpm_project_first': FLAGS.cpm_project_first}

  def record(result):
    """Prints the row and rewrites the JSON, so that a run stopped by a
    time limit keeps every row measured so far."""
    results.append(result)
    print(_format_row(result), flush=True)
    if FLAGS.json:
      atomic.write_json(FLAGS.json, {'environment': env, 'settings': settings,
                                     'results': results}, indent=1)
  for part in FLAGS.what:
    if part == 'forward':
      for mode in FLAGS.modes:
        for dtype in FLAGS.dtypes:
          for batch in map(int, FLAGS.batch_sizes):
            record(bench_forward(mode, dtype, batch, env))
    elif part == 'retrieval':   # rows recorded as they are measured
      from scsnet_jax.retrieval import benchmark as retrieval  # pylint: disable=import-outside-toplevel
      retrieval.run(record, FLAGS.retrieval_photos,
                    FLAGS.retrieval_checkpoint)
    elif part == 'video':   # 240p -> 480p frames/s (scsnet_jax/video)
      from scsnet_jax.video import benchmark as video  # pylint: disable=import-outside-toplevel
      for row in video.bench_video():
        record(row)
    elif part in runners:
      record(runners[part](env))
    else:
      raise app.UsageError(f'unknown --what part {part!r}')
  if FLAGS.json:
    logging.info('wrote %s', FLAGS.json)


def run(argv=None) -> None:
  """``app.run(main)``, except that asking for help exits 0 (absl exits 1)."""
  command_line.run(main, argv, flags_parser=app.parse_flags_with_usage)


if __name__ == '__main__':
  run()
