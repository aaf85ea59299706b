"""validation.py: the held-out photos, baselines, metrics, table and grid."""

import ml_collections
import numpy as np
import pytest
from flax import nnx
from skimage import color as skcolor

from scsnet_jax import color, config_lib, sharding
from scsnet_jax.evaluation import validation
from scsnet_jax.models.generator import build_generator
from scsnet_jax.tools import evaluate_photos
from tests import helpers


def _section(**overrides):
  section = ml_collections.ConfigDict(config_lib.get_base_config().validation
                                      .to_dict())
  section.update(dict(num_images=2, crop_size=32, scale=4.0), **overrides)
  return section


@pytest.fixture(scope='module')
def data():
  return validation.load_validation_set(_section())


def test_validation_photos_are_fixed_squares_of_skimage_photos(data):
  assert data.names == ['skimage.data:astronaut', 'skimage.data:chelsea']
  assert data.gray.shape == (2, 8, 8, 1)
  assert data.target.shape == (2, 32, 32, 3)
  np.testing.assert_array_equal(data.gray, data.lr_color[..., :1])
  np.testing.assert_array_equal(data.reference('mirrored_reference'),
                                data.lr_color[:, :, ::-1])
  assert data.reference('automatic') is None
  assert data.reference('other_view_reference').shape == (2, 8, 8, 3)
  again = validation.load_validation_set(_section())
  np.testing.assert_array_equal(again.target, data.target)


def test_the_other_view_is_the_top_left_square_at_lr_size(data):
  """Against scikit-image's own antialiased bicubic resize of the photo's
  top-left 0.6 x short-side square (a different resampler: loose bound)."""
  from skimage import data as skdata, transform
  for index, name in enumerate(('astronaut', 'chelsea')):
    photo = getattr(skdata, name)() / 255.0
    side = round(validation.OTHER_VIEW_FRACTION * min(photo.shape[:2]))
    def view(crop):
      return transform.resize(crop, (8, 8), order=3, anti_aliasing=True)
    got = color.nlab_to_rgb01(data.other_view[index], np)
    error = np.abs(got - view(photo[:side, :side])).mean()
    assert error < 0.05, name
    # ... and closer to that square than to the other corners' squares.
    for corner in (photo[-side:, -side:], photo[:side, -side:],
                   photo[-side:, :side]):
      assert error < np.abs(got - view(corner)).mean(), name
  # Not the aligned colours: another framing.
  assert np.abs(data.other_view - data.lr_color).mean() > 0.05


def test_exemplar_baseline_keeps_l_and_takes_reference_chroma(data):
  """The Welsh baseline's L is the bicubic L; its chroma comes from the
  reference's pixels (each output a, b is one of the reference's)."""
  reference = data.reference('other_view_reference')
  rgb = validation.baseline_rgb('exemplar_transfer', data.gray, reference,
                                (32, 32))
  gray = validation.baseline_rgb('bicubic_gray', data.gray, None, (32, 32))
  lab, lab_gray = (skcolor.rgb2lab(x) for x in (rgb, gray))
  np.testing.assert_allclose(lab[..., 0], lab_gray[..., 0], atol=1.5)
  chroma = np.abs(lab[..., 1:]).mean()
  assert chroma > 3.0     # colour, not gray
  with pytest.raises(ValueError, match='unknown baseline'):
    validation.baseline_rgb('copy', data.gray, reference, (32, 32))


def test_global_transfer_is_bicubic_l_with_mean_chroma(data):
  reference = data.reference('mirrored_reference')
  rgb = np.asarray(validation.global_transfer(data.gray, reference, (32, 32)))
  lab = color.rgb01_to_nlab(np.clip(rgb, 0, 1), np)
  mean_ab = reference[..., 1:].mean(axis=(1, 2))
  # Away from out-of-gamut clipping the chroma is the reference's mean.
  np.testing.assert_allclose(np.median(lab[..., 1:], axis=(1, 2)), mean_ab,
                             atol=2e-3)


def test_image_metrics_match_skimage_and_closed_forms(data):
  target = np.clip(color.nlab_to_rgb01(data.target, np), 0, 1)
  same = validation.image_metrics(target, target)
  assert same['ciede2000'] == 0.0
  gray = np.repeat(target.mean(-1, keepdims=True), 3, -1)
  scores = validation.image_metrics(gray, target)
  lab_pred = skcolor.rgb2lab(np.round(gray * 255).astype(np.uint8))
  lab_true = skcolor.rgb2lab(np.round(target * 255).astype(np.uint8))
  expected = skcolor.deltaE_ciede2000(lab_pred, lab_true).mean(axis=(1, 2))
  np.testing.assert_allclose(scores['ciede2000'], expected.mean(), rtol=1e-6)
  mse = ((lab_pred[..., 0] - lab_true[..., 0])**2).mean(axis=(1, 2))
  np.testing.assert_allclose(scores['l_psnr'],
                             np.mean(10 * np.log10(1e4 / mse)), rtol=1e-6)
  assert scores['colorfulness'] < 1.0   # gray has (almost) no colour


@pytest.fixture(scope='module')
def untrained_run(data):
  """An untrained residual model: bicubic L, zero chroma, every mode."""
  config = helpers.with_shallow_model(config_lib.get_base_config())
  config.model.luminance_residual = True
  model = build_generator(config.model, nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  mesh = sharding.create_mesh()
  validator = validation.Validator(data, graphdef, mesh, referential=True)
  return validator.run(state.to_pure_dict())


def test_untrained_residual_model_scores_as_bicubic_gray(untrained_run):
  scores, outputs, report = untrained_run
  assert report == {} and validation.Validator.prefix == 'val'
  for mode in validation.MODES:
    assert outputs[mode].shape == (2, 32, 32, 3)
    for metric in ('l_psnr', 'ciede2000'):
      np.testing.assert_allclose(scores[f'{mode}/model/{metric}'],
                                 scores[f'automatic/bicubic_gray/{metric}'],
                                 rtol=1e-3)
  # The colour baselines use the reference and beat gray.
  assert (scores['self_reference/color_copy/ciede2000'] <
          scores['automatic/bicubic_gray/ciede2000'])
  table = validation.summary_table(scores)
  assert table == validation.Validator.summary(None, untrained_run)
  rows = len(validation.MODES) + sum(
      len(m) for m in validation.BASELINES_OF_MODE.values())
  assert table.count('\n') == 2 + rows - 1
  assert '| other_view_reference | exemplar_transfer |' in table
  targets = evaluate_photos.check_targets(scores)
  assert len(targets) == 5
  assert not targets['luminance: L-PSNR >= bicubic + 1.5 dB']['pass']
  assert not targets['automatic: colourfulness >= 25']['pass']


def test_labelled_grid_shows_the_five_columns(data, untrained_run):
  outputs = untrained_run.outputs
  grid = validation.labelled_grid(data, outputs, count=2)
  assert grid.dtype == np.uint8
  assert grid.shape == (18 + 2 * 32, 5 * 32, 3)
  # Last column is the ground truth, exactly.
  truth = np.round(np.clip(color.nlab_to_rgb01(data.target, np), 0, 1) * 255)
  np.testing.assert_array_equal(grid[18:18 + 32, 4 * 32:], truth[0])
  # The header holds the labels (dark text on white).
  assert grid[:18].min() < 128 and np.median(grid[:18]) == 255


def test_sample_grid_png_round_trips(tmp_path):
  grid = np.random.default_rng(0).integers(0, 256, (18, 40, 3), np.uint8)
  path = validation.write_sample_grid(str(tmp_path), 12, grid)
  assert path.endswith('samples/step_12.png')
  from PIL import Image
  np.testing.assert_array_equal(np.asarray(Image.open(path)), grid)
