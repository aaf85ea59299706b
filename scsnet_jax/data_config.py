"""``config.data`` defaults, apart from the grain pipeline so that configs
load where grain is not installed (the benchmark on a minimal GPU image)."""

import ml_collections
from ml_collections import config_dict


def default_data_config() -> ml_collections.ConfigDict:
  """Every ``config.data`` key with its default (see docs/data.md)."""
  return ml_collections.ConfigDict(dict(
      source='tfds',                     # 'tfds' | 'folder' | 'demo'
      tfds_name='imagenet2012',
      tfds_train_split='train',
      tfds_eval_split='validation',
      tfds_data_dir='',                  # '' = TFDS default (~/tensorflow_datasets)
      tfds_image_key='image',
      # A directory, or several comma-separated directories / files / globs.
      folder_path=config_dict.FieldReference('', field_type=object),
      eval_fraction=0.02,                # folder: share of files in 'eval'
      global_batch_size=32,              # split evenly over JAX processes
      crop_size=512,                     # HR crop side
      # > 0: shrink every photo so its shorter side is at most this before
      # cropping (JPEGs decode at reduced size): big photos then give crops
      # with ImageNet-like content instead of flat patches.
      image_short_side=0,
      cache_images=False,                # keep decoded photos (small corpora)
      max_upscale=4.0,                   # images needing more are unusable
      # Magnification: a number, or [min, max] drawn per batch.
      scale=config_dict.FieldReference(4.0, field_type=object),
      scale_choices=0,                   # >1: quantise [min, max] to n values
      eval_scale=0.0,                    # <= 0: `scale`, or max of the range
      elastic_alpha=120.0,               # Simard et al. displacement, pixels
      elastic_sigma=8.0,                 # smoothing of the displacement field
      other_reference_prob=0.0,          # train: reference from another image
      quality_filter=ml_collections.ConfigDict(dict(
          enabled=False,                 # the paper's "ImageNet-C" subset
          min_file_bytes=80 * 1024,
          min_colorfulness=10.0,         # Hasler-Suesstrunk M3, 0-255 sRGB
          cache_dir='',                  # '' = ~/.cache/scsnet_jax/filter_index
          num_threads=8,
      )),
      num_workers=8,                     # grain worker processes (0 = inline)
      worker_buffer_size=2,              # batches buffered per worker
      read_threads=2,                    # threads per process making examples
      read_buffer_size=16,               # examples buffered by those threads
      seed=0,
  ))
