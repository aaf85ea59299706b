"""evaluation/report.py: the scalars and the markdown table of a crafted
report."""

from scsnet_jax.evaluation import report


def _report():
  scores = {'fid': 12.345, 'colorfulness': 30.0,
            'colorfulness_ratio_to_real': 0.75, 'psnr': 21.5, 'ssim': 0.81234}
  empty = {'num_images': 0, 'real': {'colorfulness': None},
           **{m: None for m in report.METHODS}}
  return {'step': 9, 'fid_null_reason': None,
          'conventions': {'psnr_ssim': 'P', 'colorfulness': 'C', 'fid': 'F'},
          'results': {
              'automatic': {'num_images': 2, 'real': {'colorfulness': 40.0},
                            'scsnet': scores, 'bicubic_gray': None,
                            'color_copy': dict(scores, fid=None, psnr=None)},
              'self_reference': empty}}


def test_flat_scalars_name_mode_method_metric_and_drop_nulls():
  scalars = report.flat_scalars(_report()['results'])
  assert scalars['automatic/scsnet/fid'] == 12.345
  assert scalars['automatic/real/colorfulness'] == 40.0
  assert 'automatic/color_copy/fid' not in scalars
  assert 'automatic/color_copy/psnr' not in scalars
  assert not [k for k in scalars if k.startswith('self_reference/')
              and 'real' not in k]


def test_markdown_table_rows_and_empty_modes():
  text = report.markdown_table(_report())
  assert text.startswith('# Evaluation at step 9\n\nPSNR/SSIM: P. CN: C. '
                         'FID: F.\n')
  assert '| scsnet | 12.35 | 30.00 | 0.750 | 21.50 | 0.8123 |' in text
  assert '| bicubic_gray | n/a | | | | |' in text
  assert '| color_copy | - | 30.00 | 0.750 | - | 0.8123 |' in text
  assert '| real images | | 40.00 | 1.000 | | |' in text
  assert '## self_reference (0 images)\n\nn/a: no images in this mode' in text


def test_conventions_say_which_channel_and_crop():
  class Eval:
    crop_border, y_channel = 4, True
  conventions = report.conventions(Eval)
  assert 'BT.601 Y' in conventions['psnr_ssim']
  assert 'crop_border=4' in conventions['psnr_ssim']
