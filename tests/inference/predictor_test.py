"""Padding, output grid, tiling/blending and the bfloat16 safety net.

References are independent of the code under test: the generator's own
full-image call (``gen(gray, out_size=...)``), its public ``render_points``
for fractional grids, ``np.pad`` indices written out, and the CPM's
``local_coordinate``.
"""


import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scsnet_jax import color
from scsnet_jax.inference import predictor as predictor_lib
from scsnet_jax.models import cpm, geometry
from scsnet_jax.models.generator import Generator, GeneratorConfig

# A few thousand parameters, receptive field ~12 px: compiles in seconds.
TINY = GeneratorConfig(
    referential=True, init_width=8, encoder_widths=(8, 16),
    source_res_blocks=0, reference_res_blocks=0, cross_attention_qk=8,
    self_attention_qk=8, decoder_res_blocks=(0, 0, 0), texture_res_blocks=0,
    fusion_width=8, cpm_hidden=(8, 8, 8), cpm_chunk_size=64)


@pytest.fixture(scope='module')
def model():
  gen = Generator(TINY, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(gen)
  return gen, graphdef, state.to_pure_dict()


def _gray(shape, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_resolve_output_size():
  assert predictor_lib.resolve_output_size(10, 14, scale=1.5) == (15, 21)
  assert predictor_lib.resolve_output_size(10, 14, scale=0.5) == (5, 7)
  assert predictor_lib.resolve_output_size(10, 14, size=(12, 20)) == (12, 20)
  for bad in (0, -2, float('nan'), float('inf')):
    with pytest.raises(ValueError, match='positive finite'):
      predictor_lib.resolve_output_size(10, 14, scale=bad)
  with pytest.raises(ValueError, match='smaller than one pixel'):
    predictor_lib.resolve_output_size(10, 14, scale=0.01)
  with pytest.raises(ValueError, match='limit of 100'):
    predictor_lib.resolve_output_size(10, 14, scale=1, max_pixels=100)


@pytest.mark.parametrize('in_len,out_len,tile,overlap',
                         [(100, 250, 32, 16), (97, 61, 48, 8), (40, 160, 0, 0)])
def test_plan_axis_covers_grid(in_len, out_len, tile, overlap):
  padded = in_len + (-in_len) % 4
  windows = predictor_lib.plan_axis(in_len, padded, out_len, tile, overlap)
  total = np.zeros(out_len)
  for w in windows:
    assert w.start % 4 == 0 and w.start + w.length <= padded
    assert w.sample.shape == windows[0].sample.shape   # one compiled shape
    total[w.out_start:w.out_stop] += w.weight
    # Every rendered pixel's centre lies in the window.
    centres = (np.arange(w.out_start, w.out_stop) + 0.5) * in_len / out_len
    assert np.all((centres >= w.start) & (centres < w.start + w.length))
  assert np.all(total > 0)
  if tile:
    assert len(windows) > 1
    assert all(w.start % 16 == 0 for w in windows[:-1])


def test_untiled_coordinates_are_the_cpm_grid():
  (window,) = predictor_lib.plan_axis(16, 16, 48, 0, 0)
  grid = np.asarray(cpm.grid_coordinates(1, 48))[:, 0]
  np.testing.assert_allclose(window.sample, grid, atol=1e-6)
  local = np.asarray(jax.vmap(lambda x: cpm.local_coordinate(
      jnp.stack([x, x]), 16, 16))(jnp.asarray(grid)))[:, 0]
  np.testing.assert_allclose(window.local, local, atol=1e-5)


def test_untiled_matches_generator(model):
  gen, _, params = model
  gray = _gray((2, 16, 20, 1))
  predictor = predictor_lib.Predictor(params, TINY)
  out, redone = predictor.predict_nlab(gray, None, (32, 40))
  expected = gen(jnp.asarray(gray), out_size=(32, 40))
  np.testing.assert_allclose(out, expected, atol=1e-5)
  assert redone == []


def test_padding_then_crop(model):
  """15x18 (not multiples of 4): reflect-padded to 16x20, x2, cropped."""
  gen, _, params = model
  gray = _gray((1, 15, 18, 1), seed=1)
  out, _ = predictor_lib.Predictor(params, TINY).predict_nlab(
      gray, None, (30, 36))
  padded = geometry.reflect_pad(gray)
  assert padded.shape == (1, 16, 20, 1)
  expected = gen(jnp.asarray(padded), out_size=(32, 40))[:, :30, :36]
  np.testing.assert_allclose(out, expected, atol=1e-5)


def test_fractional_scale_matches_render_points(model):
  """x2.5 of 16x20 -> 40x50: pixel j's centre (j+.5)*W/Wt, via render_points."""
  gen, _, params = model
  gray = _gray((1, 16, 20, 1), seed=2)
  out, _ = predictor_lib.Predictor(params, TINY).predict_nlab(
      gray, None, (40, 50))
  ys = (np.arange(40) + 0.5) / 40
  xs = (np.arange(50) + 0.5) / 50
  yy, xx = np.meshgrid(ys, xs, indexing='ij')
  coords = np.stack([xx.ravel(), yy.ravel()], -1)[None].astype(np.float32)
  expected = gen.render_points(jnp.asarray(gray), jnp.asarray(coords))
  np.testing.assert_allclose(out.reshape(1, -1, 3), expected, atol=1e-5)


def test_window_renders_exact_global_pixels(model):
  """A window of the global feature map renders exactly the global output
  at its pixels (fractional scale): the window coordinate mapping is exact."""
  gen, _, _ = model
  gray = jnp.asarray(_gray((1, 48, 48, 1), seed=3))
  features = gen.features(gray)
  out_size = (71, 71)   # x 1.479..
  (whole,) = predictor_lib.plan_axis(48, 48, 71, 0, 0)
  full = gen.cpm.render_separable(features, *_axis_arrays(whole, whole))
  rows = predictor_lib.plan_axis(48, 48, out_size[0], 32, 16)
  cols = predictor_lib.plan_axis(48, 48, out_size[1], 32, 16)
  r, c = rows[1], cols[0]
  crop = features[:, r.start:r.start + r.length, c.start:c.start + c.length]
  block = gen.cpm.render_separable(crop, *_axis_arrays(r, c))
  n_y, n_x = r.out_stop - r.out_start, c.out_stop - c.out_start
  used = np.outer(r.weight, c.weight) > 0   # clipped edge pixels excluded
  got = np.asarray(block)[0, :n_y, :n_x][used]
  want = np.asarray(full)[0, r.out_start:r.out_stop, c.out_start:c.out_stop]
  np.testing.assert_allclose(got, want[used], atol=1e-5)


def _axis_arrays(row_window, col_window):
  return (jnp.asarray(col_window.sample), jnp.asarray(row_window.sample),
          jnp.asarray(col_window.local), jnp.asarray(row_window.local))


@pytest.mark.parametrize('referential', [False, True])
def test_tiled_matches_untiled(model, referential):
  _, _, params = model
  gray = _gray((1, 128, 176, 1), seed=4)
  reference = _gray((1, 8, 12, 3), seed=5) if referential else None
  out_size = (320, 440)   # x 2.5
  whole, _ = predictor_lib.Predictor(params, TINY).predict_nlab(
      gray, reference, out_size)
  tiled_predictor = predictor_lib.Predictor(params, TINY, tile=128,
                                        tile_overlap=64)
  rows, cols = tiled_predictor.plan(128, 176, out_size)
  assert len(rows) * len(cols) == 2
  compiled_before = len(tiled_predictor._compiled)
  tiled, _ = tiled_predictor.predict_nlab(gray, reference, out_size)
  # Both windows (fractional scale: different pixel counts) share one program.
  assert len(tiled_predictor._compiled) == compiled_before + 1
  diff = np.abs(tiled - whole)[:, 8:-8, 8:-8]
  assert diff.max() < 5e-3, diff.max()
  assert diff.mean() < 1e-4, diff.mean()
  assert whole.std() > 0.02   # the comparison is not between constants


@pytest.mark.parametrize('tile', [16, 64, 112])
def test_tiles_too_small_for_the_decoder_are_refused(model, tile):
  _, _, params = model
  for call in (lambda: predictor_lib.check_tiling(tile, 8),
               lambda: predictor_lib.Predictor(params, TINY, tile=tile,
                                           tile_overlap=8)):
    with pytest.raises(ValueError) as error:
      call()
    message = str(error.value)
    assert '\n' not in message
    assert f'tile {tile} is too small' in message and '128 or more' in message
  predictor_lib.check_tiling(128, 32)
  predictor_lib.check_tiling(0, 32)


def _chelsea_gray(width):
  from PIL import Image
  from skimage import data
  photo = Image.fromarray(data.chelsea())
  height = round(photo.height * width / photo.width)
  small = np.asarray(photo.resize((width, height), Image.Resampling.BICUBIC))
  return color.rgb8_to_gray(small)[None]


def _blend_zones(windows, length):
  """Output positions where more than one window contributes."""
  weights = np.zeros((len(windows), length))
  for i, w in enumerate(windows):
    weights[i, w.out_start:w.out_stop] = w.weight
  return ((weights > 0) & (weights < 1)).any(axis=0)


def _seam_step(tiled, whole, rows, cols):
  """Largest excess, in 8-bit levels, of the tiled output's mean step between
  neighbouring columns (rows) over the untiled output's, where tiles blend."""
  tiled, whole = (color.nlab_to_rgb8(x[0]).astype(np.float64)
                  for x in (tiled, whole))
  worst = 0.0
  for axis, zones in ((1, _blend_zones(cols, tiled.shape[1])),
                      (0, _blend_zones(rows, tiled.shape[0]))):
    other = (0, 2) if axis == 1 else (1, 2)
    excess = (np.abs(np.diff(tiled, axis=axis)).mean(axis=other) -
              np.abs(np.diff(whole, axis=axis)).mean(axis=other))
    near = zones[:-1] | zones[1:]
    worst = max(worst, excess[near].max())
  return worst


def test_smallest_allowed_tile_leaves_no_seam_on_a_photograph(model,
                                                              monkeypatch):
  """Chelsea (a photograph, 256x170), a decoder whose self-attention is on
  (gamma 1, as after training; 0 at initialisation would hide it): at the
  smallest allowed tile the step across tile borders is what the untiled
  output has; at half that size (refused) it is clearly larger."""
  _, _, params = model
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: (jnp.ones_like(x) if 'gamma' in jax.tree_util.keystr(path)
                       else x), params)
  gray = _chelsea_gray(256)
  out_size = gray.shape[1:3]
  whole, _ = predictor_lib.Predictor(params, TINY).predict_nlab(gray, None,
                                                            out_size)
  smallest = predictor_lib.MIN_TILE
  # to measure a refused size:
  monkeypatch.setattr(predictor_lib, 'MIN_TILE', 16)
  seams = {}
  for tile in (smallest // 2, smallest):
    predictor = predictor_lib.Predictor(params, TINY, tile=tile,
                                        tile_overlap=32)
    rows, cols = predictor.plan(*out_size, out_size)
    assert len(rows) * len(cols) > 1
    tiled, _ = predictor.predict_nlab(gray, None, out_size)
    seams[tile] = _seam_step(tiled, whole, rows, cols)
  print('seam step (8-bit levels):', seams)
  assert seams[smallest] < 0.1, seams      # measured 0.073
  assert seams[smallest // 2] > 1.5 * seams[smallest], seams   # 0.135


def test_bfloat16_fallback_recomputes_bad_image_in_float32(model, monkeypatch):
  _, _, params = model
  gray = _gray((2, 16, 20, 1), seed=6)
  predictor = predictor_lib.Predictor(params, TINY, dtype='bfloat16')
  real_run = predictor_lib.Predictor._run
  calls = []

  def run_with_overflow(self, gray, reference, out_size, dtype,
                        interrupt=None):
    calls.append((gray.shape[0], dtype))
    out = real_run(self, gray, reference, out_size, dtype, interrupt)
    if dtype == 'bfloat16':
      out[1, 3, 4, 0] = np.inf   # image 1 "overflows" in bfloat16
    return out

  monkeypatch.setattr(predictor_lib.Predictor, '_run', run_with_overflow)
  out, redone = predictor.predict_nlab(gray, None, (32, 40))
  assert redone == [1]
  assert calls == [(2, 'bfloat16'), (1, 'float32')]
  reference32, _ = predictor_lib.Predictor(params, TINY).predict_nlab(
      gray[1:], None, (32, 40))
  np.testing.assert_allclose(out[1], reference32[0], atol=1e-6)
  assert np.isfinite(out).all()
  assert np.abs(out[0] - real_run(predictor, gray[:1], None, (32, 40),
                                  'float32')[0]).max() < 0.05


def test_centres_sampling_in_every_predictor_path(model):
  """``cpm_sampling='centres'``: untiled (with padding), points and tiles all
  read the LR map where the whole generator does."""
  import dataclasses
  _, graphdef, params = model
  centres = dataclasses.replace(TINY, cpm_sampling='centres')
  gen = Generator(centres, rngs=nnx.Rngs(0))
  nnx.update(gen, nnx.state(nnx.merge(graphdef, params)))
  gray = _gray((1, 15, 18, 1), seed=7)
  out, _ = predictor_lib.Predictor(params, centres).predict_nlab(gray, None,
                                                             (30, 36))
  padded = jnp.asarray(geometry.reflect_pad(gray))
  expected = gen(padded, out_size=(32, 40))[:, :30, :36]
  np.testing.assert_allclose(out, expected, atol=1e-5)
  corners, _ = predictor_lib.Predictor(params, TINY).predict_nlab(gray, None,
                                                              (30, 36))
  assert np.abs(corners - out).max() > 1e-3   # the switch changes the output
  coords = cpm.grid_coordinates(32, 40)[None]
  np.testing.assert_allclose(
      np.asarray(gen.render_points(padded, coords)).reshape(1, 32, 40, 3),
      gen(padded, out_size=(32, 40)), atol=1e-5)
  big = _gray((1, 128, 176, 1), seed=8)
  whole, _ = predictor_lib.Predictor(params, centres).predict_nlab(big, None,
                                                               (320, 440))
  tiled, _ = predictor_lib.Predictor(params, centres, tile=128,
                                 tile_overlap=64).predict_nlab(big, None,
                                                               (320, 440))
  diff = np.abs(tiled - whole)[:, 8:-8, 8:-8]
  assert diff.max() < 5e-3 and diff.mean() < 1e-4, (diff.max(), diff.mean())


# ------------------------------------------------------------ issue 32 ---
def _levels(nlab):
  return color.nlab_to_rgb8(nlab).astype(int)


def test_output_buckets_crop_to_the_unpadded_result_and_bound_programs(
    model, monkeypatch):
  """Every (input, output) size was a compilation kept forever (12-15 MB
  each). Output blocks are padded to a few lengths and cropped: exact (the
  CPM renders each pixel on its own); programs are kept in a bounded cache."""
  _, _, params = model
  monkeypatch.setattr(predictor_lib, 'MAX_COMPILED_WINDOWS', 3)
  bucketed = predictor_lib.Predictor(params, TINY)
  exact = predictor_lib.Predictor(params, TINY, buckets=False)
  gray = _gray((1, 20, 28, 1), seed=3)
  for out_size in ((41, 57), (43, 59), (45, 62)):   # one bucket: (48, 64)
    got, _ = bucketed.predict_nlab(gray, None, out_size)
    want, _ = exact.predict_nlab(gray, None, out_size)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(_levels(got[0]) - _levels(want[0])).max() <= 1
  assert len(bucketed._compiled) == 1 and len(exact._compiled) == 3
  for side in (12, 16, 24, 32):   # four more input sizes: three kept
    bucketed.predict_nlab(_gray((1, side, side, 1)), None, (side, side))
  assert len(bucketed._compiled) == 3


def test_dropped_programs_leave_nothing_in_jax_compilation_caches(
    model, monkeypatch):
  """jax's lowering and compilation caches key on the traced function's
  jaxpr weakly: with one shared jit they kept every size's lowered module
  and executable alive (~4 MB a size, whatever the bounded cache dropped);
  a function per program lets them go with it (memory flat in the number
  of sizes: benchmark --what=sizes)."""
  from jax._src.interpreters import pxla  # pylint: disable=g-import-not-at-top
  caches = [getattr(pxla, name, None) for name in
            ('_cached_lowering_to_hlo', '_cached_compilation')]
  if not all(hasattr(c, 'cache_info') for c in caches):
    pytest.skip("this jax's compilation caches cannot be counted")
  def entries():
    gc.collect()
    return [c.cache_info().currsize for c in caches]
  monkeypatch.setattr(predictor_lib, 'MAX_COMPILED_WINDOWS', 2)
  _, _, params = model
  predictor = predictor_lib.Predictor(params, TINY)
  before = entries()
  for side in (12, 16, 20, 24, 28):
    predictor.predict_nlab(_gray((1, side, side, 1)), None, (side, side))
  assert len(predictor._compiled) == 2
  for grown in np.subtract(entries(), before):
    assert grown <= 2, (before, entries())


def test_input_buckets_pad_small_images_and_crop_within_a_level(model):
  """Opt-in: a small image's window is padded on to a bucket length (few
  programs whatever the sizes); the padded context moves the result by at
  most one 8-bit level here (attention off at initialisation; a trained
  model differs more, see the module docstring)."""
  _, _, params = model
  bucketed = predictor_lib.Predictor(params, TINY, input_buckets=True)
  exact = predictor_lib.Predictor(params, TINY, buckets=False)
  for shape, out_size in (((1, 18, 27, 1), (36, 54)),
                          ((1, 37, 45, 1), (50, 61))):
    rows, cols = bucketed.plan(shape[1], shape[2], out_size)
    assert (rows[0].length, cols[0].length) == tuple(
        predictor_lib.bucket_length(n + (-n) % 4) for n in shape[1:3])
    got, _ = bucketed.predict_nlab(_gray(shape, 5), None, out_size)
    want, _ = exact.predict_nlab(_gray(shape, 5), None, out_size)
    assert np.abs(_levels(got[0]) - _levels(want[0])).max() <= 1


def test_bucket_lengths_are_few_and_close():
  lengths = {predictor_lib.bucket_length(n) for n in range(64, 257)}
  assert sorted(lengths) == [64, 80, 96, 112, 128, 160, 192, 224, 256]
  for n in range(1, 2000):
    bucket = predictor_lib.bucket_length(n)
    assert n <= bucket <= max(1.25 * n, n + 3) and bucket % 4 == 0
