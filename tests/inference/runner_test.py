"""inference/runner.py: the three ``predict_nlab`` implementations keep one contract
(``inference.predictor.NlabPredictor``), and a Runner on an export folder
runs the artifact where one fits and the model code elsewhere; the app's
tile count and comparison come from the Runner, not its insides."""

import numpy as np
import pytest

from scsnet_jax.inference import runner as runner_lib
from scsnet_jax.export import reader
from scsnet_jax.inference import predictor as predictor_lib
# The export folder fixture, shared with tests/export/:
from tests.export.conftest import exported  # noqa: F401
from tests.export.tiny import TINY


def _gray(shape, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_every_implementation_keeps_the_contract_on_tiny_shapes(
    exported, caplog):  # noqa: F811
  _, params, path, _ = exported
  implementations = {
      'predictor': predictor_lib.Predictor(params, TINY),
      'exported': reader.ExportedGenerator(path),
      'runner': runner_lib.load_runner(path, dtype='float32', tile=0,
                                       tile_overlap=32),
  }
  gray, reference = _gray((2, 10, 14, 1)), _gray((2, 8, 8, 3), 1)
  results = {}
  for name, model in implementations.items():
    assert isinstance(model, predictor_lib.NlabPredictor), name
    nlab, redone = model.predict_nlab(gray, reference, (20, 28))
    assert nlab.shape == (2, 20, 28, 3) and nlab.dtype == np.float32, name
    assert redone == [], name
    results[name] = nlab
  # One model, three ways to run it: the same colours.
  np.testing.assert_allclose(results['exported'], results['predictor'],
                             atol=1e-5)
  np.testing.assert_array_equal(results['runner'], results['exported'])
  assert 'note:' not in caplog.text   # the artifact fitted
  assert not isinstance(object(), predictor_lib.NlabPredictor)


def test_a_runner_falls_back_to_the_model_code_where_no_artifact_fits(
    exported, caplog):  # noqa: F811
  _, params, path, _ = exported
  runner = runner_lib.load_runner(path, dtype='float32', tile=0,
                                  tile_overlap=32)
  gray = _gray((1, 10, 14, 1), 2)
  got, _ = runner.predict_nlab(gray, None, (15, 21))   # scale 1.5
  want, _ = predictor_lib.Predictor(params, TINY).predict_nlab(
      gray, None, (15, 21))
  np.testing.assert_allclose(got, want, atol=1e-6)
  # Logged (library code does not print), once.
  assert caplog.text.count('no exported artifact fits') == 1
  runner.predict_nlab(gray, None, (15, 21))
  assert caplog.text.count('no exported artifact fits') == 1


@pytest.mark.parametrize('tile, size, tiles', [
    (0, (136, 40), 1), (128, (100, 100), 1),
    # 138 rows pad to 140 > 128: windows at 0 and 140 - 128 = 12.
    (128, (138, 40), 2),
    # Steps of 128 - 32 = 96: rows at 0, 96, 172; columns at 0, 72.
    (128, (300, 200), 3 * 2)])
def test_tile_count_counts_the_windows_it_runs(exported, tile, size,
                                               tiles):  # noqa: F811
  _, params, path, _ = exported
  height, width = size
  out_size = (2 * height, 2 * width)
  predictor = predictor_lib.Predictor(params, TINY, tile=tile,
                                      tile_overlap=32)
  assert predictor.tile_count(height, width, out_size) == tiles
  runner = runner_lib.load_runner(path, dtype='float32', tile=tile,
                                  tile_overlap=32)
  assert runner.tile_count(height, width, out_size) == tiles


def test_bicubic_gray_keeps_a_flat_image_flat_at_the_output_size(
    exported):  # noqa: F811
  _, _, path, _ = exported
  runner = runner_lib.load_runner(path, dtype='float32', tile=0,
                                  tile_overlap=32)
  flat = np.full((1, 10, 14, 1), 0.25, np.float32)
  out = runner.bicubic_gray(flat, (25, 35))
  assert out.shape == (1, 25, 35, 1) and out.dtype == np.float32
  np.testing.assert_allclose(out, 0.25, atol=1e-6)
