"""Peak memory and time of inference over photos of many sizes (issue 32).

``python -m scsnet_jax.benchmark --what=sizes [--sizes_count=100]`` runs
``bench_mixed_sizes``: the same ``--sizes_count`` photos (the photo corpus
of ``configs/photos_cpu.py``, shrunk to the sizes) through a ``Predictor``
at scale 2, once all at one size and once all at different sizes, for

- ``unbounded``: no buckets, every compiled program kept (the code before
  issue 32: ``MAX_COMPILED_WINDOWS`` unlimited),
- ``bounded``: output buckets and the bounded program cache (the default),
- ``input_buckets``: small images' windows bucketed too (opt-in),

each scenario in a fresh process, so its peak RSS is its own. Flat means:
the distinct-size run's peak RSS and seconds close to the same-size run's.
The model (``TINY_MODEL`` by default) has random weights: speed and
memory do not depend on them, and its compilations are quick, so 100
distinct sizes fit a CPU run.
"""

from __future__ import annotations

import glob
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

SCALE = 2
# A small generator (a few thousand weights, compiles in seconds): what is
# measured is how memory and time scale with the number of sizes, which the
# compilations set; ``model='full'`` runs the spec's full-width generator
# (configs/test.py's model).
TINY_MODEL = dict(
    referential=False, init_width=8, encoder_widths=[8, 16],
    source_res_blocks=0, reference_res_blocks=0, cross_attention_qk=8,
    self_attention_qk=8, decoder_res_blocks=[0, 0, 0], texture_res_blocks=0,
    fusion_width=8, cpm_hidden=[8, 8, 8], cpm_chunk_size=256)
SAME_SIZE = (160, 200)
MODES = ('unbounded', 'bounded', 'input_buckets')
# Predictor(...) settings of each mode (and the program cache bound).
_SETTINGS = {'unbounded': dict(buckets=False, cache=10**9),
             'bounded': dict(buckets=True, cache=None),
             'input_buckets': dict(buckets=True, input_buckets=True,
                                   cache=None)}


def mixed_sizes(count: int, seed: int = 0, low: int = 64,
                high: int = 256) -> list[tuple[int, int]]:
  """``count`` different (H, W), each side in [low, high]."""
  rng = np.random.default_rng(seed)
  sizes: list[tuple[int, int]] = []
  while len(sizes) < count:
    size = tuple(int(n) for n in rng.integers(low, high + 1, 2))
    if size not in sizes:
      sizes.append(size)
  return sizes


def corpus_files(root: str) -> list[str]:
  """The photo corpus of ``configs/photos_cpu.py`` (its globs), or the
  repository's sample image where the corpus is not installed."""
  from scsnet_jax import config_lib
  config = config_lib.load_sibling_config(
      os.path.join(root, 'configs', 'photos_cpu.py'), 'photos_cpu')
  files = sorted(path for spec in config.data.folder_path.split(',')
                 for path in glob.glob(spec))
  return files or [os.path.join(root, 'docs', 'images',
                                'chelsea_gray_lr.png')]


def _gray_photos(files: list[str], sizes: list[tuple[int, int]]):
  """One gray photo per size, (1, H, W, 1) normalised L, cycling files."""
  from PIL import Image
  from scsnet_jax import color, image_io
  for index, (height, width) in enumerate(sizes):
    pixels = image_io.read_image(files[index % len(files)],
                                 draft_size=(width, height))   # JPEG: fast
    small = np.asarray(Image.fromarray(pixels).resize(
        (width, height), Image.Resampling.BOX))
    yield color.rgb8_to_gray(small)[None]


def _tiny_params(model_config):
  """Random weights for ``model_config`` without compiling an init."""
  import jax
  from flax import nnx
  from scsnet_jax.models.generator import abstract_generator
  rng = np.random.default_rng(0)
  abstract = nnx.state(abstract_generator(model_config)).to_pure_dict()
  return jax.tree.map(lambda leaf: rng.normal(
      0, 0.05, leaf.shape).astype(leaf.dtype), abstract)


def run_scenario(mode: str, distinct: bool, count: int, tile: int,
                 root: str, model: str = 'tiny') -> dict[str, Any]:
  """In this process: ``count`` photos through one Predictor; seconds and
  the growth of the peak RSS over the model's load."""
  from scsnet_jax import config_lib
  from scsnet_jax.inference import predictor as predictor_lib
  config = config_lib.load_sibling_config(
      os.path.join(root, 'configs', 'test.py'), 'test')
  if model == 'tiny':
    config.model.update(TINY_MODEL)
  elif model != 'full':
    raise ValueError(f'model: {model!r} is not tiny or full')
  settings = dict(_SETTINGS[mode])
  cache = settings.pop('cache')
  if cache is not None:
    predictor_lib.MAX_COMPILED_WINDOWS = cache
  predictor = predictor_lib.Predictor(
      _tiny_params(config.model), config.model, tile=tile, **settings)
  sizes = mixed_sizes(count) if distinct else [SAME_SIZE] * count
  photos = list(_gray_photos(corpus_files(root), sizes))
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  start = time.perf_counter()
  for gray in photos:
    _, height, width, _ = gray.shape
    predictor.predict_nlab(gray, None, (SCALE * height, SCALE * width))
  seconds = time.perf_counter() - start
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return {'mode': mode, 'sizes': len(set(sizes)), 'photos': count,
          'seconds': round(seconds, 1),
          'peak_rss_mib': round(peak / 1024, 1),
          'peak_rss_growth_mib': round((peak - before) / 1024, 1),
          'programs_kept': len(predictor._compiled)}  # pylint: disable=protected-access


def bench_mixed_sizes(count: int = 100, tile: int = 256, modes=MODES,
                      model: str = 'tiny') -> dict[str, Any]:
  """Each (mode, same or distinct sizes) in a fresh process; the row for
  ``scsnet_jax.benchmark``."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  runs = []
  for mode in modes:
    for distinct in (False, True):
      argv = [sys.executable, '-m', 'scsnet_jax.inference.size_benchmark',
              json.dumps([mode, distinct, count, tile, root, model])]
      done = subprocess.run(argv, capture_output=True, text=True, cwd=root,
                            check=False)
      if done.returncode:
        raise RuntimeError(f'{mode} scenario failed:\n{done.stderr[-3000:]}')
      runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
  return {'part': 'sizes', 'scale': SCALE, 'tile': tile,
          'model': f'{model} (size_benchmark), random weights', 'runs': runs}


if __name__ == '__main__':
  print(json.dumps(run_scenario(*json.loads(sys.argv[1]))), flush=True)
