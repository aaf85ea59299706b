"""Every config default, and the values derived from a config.

``configs/*.py`` extend ``get_base_config()``. Sections: ``model`` (the
fields of ``models.generator.GeneratorConfig``), ``data``, ``loss``,
``eval``, ``optimizer``, ``train`` and ``validation``, all defined here with
the closed sets of their fields and ``validate_config``, so that this module
imports nothing but the model's config and sits below every module that reads
a config. The model section validates itself (``GeneratorConfig``). A
training workdir's ``config.json`` is read back by ``load_workdir_config``
(``configs/workdir.py``); command-line overrides are ml_collections' own.

``config.dtype`` is the compute dtype of both networks ('float32' or
'bfloat16'); ``config.model.dtype`` is a reference to it, so
``--config.dtype=bfloat16`` switches both. Parameters, optimizer states and
losses stay float32 either way.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any, Mapping

import ml_collections
from ml_collections import config_dict

from scsnet_jax import workdir as workdir_lib
from scsnet_jax.errors import UserError, not_one_of
from scsnet_jax.models.generator import (DTYPES, GeneratorConfig,
                                         model_config_dict)

# Closed sets of fields outside ``model`` (checked by ``validate_config``).
# train.mode_schedule: even steps automatic and odd referential, or one mode
# throughout.
MODE_SCHEDULES = ('alternate', 'automatic', 'referential')
LR_SCHEDULES = ('constant', 'warmup_constant', 'cosine')  # optimizer.schedule
WEIGHT_DECAY_MODES = ('l2', 'decoupled')         # optimizer.weight_decay_mode
LUMINANCE_LOSSES = ('l1', 'l2', 'charbonnier')   # loss.luminance_loss
DATA_SOURCES = ('tfds', 'folder', 'demo')        # data.source
VALIDATION_SOURCES = ('demo', 'folder')          # validation.source


def get_base_config() -> ml_collections.ConfigDict:
  """Every key a run reads, with its default; ``configs/*.py`` change some."""

  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dtype = 'float32'

  config.model = ml_collections.ConfigDict(model_config_dict())
  config.model.referential = True   # training alternates both modes
  config.model.dtype = config.get_ref('dtype')

  config.data = data_defaults()
  config.loss = loss_defaults()
  config.eval = eval_defaults()

  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, b1=0.9, b2=0.999, weight_decay=1e-4,
      # 'constant' (the paper) or 'cosine': linear warm-up over
      # `warmup_steps`, then cosine decay to `final_lr_fraction` x lr at the
      # last step.
      schedule='constant', warmup_steps=0, final_lr_fraction=0.01,
      grad_clip_norm=0.0,            # > 0: clip G's and D's global norm
      # Step size of the generator's reference encoder and PVCAttn relative
      # to the rest (1.0 = the paper; train/state.generator_lr_multipliers).
      reference_lr_multiplier=1.0,
      # 'l2' (the paper: wd * w joins the gradient before Adam, and before
      # clipping) or 'decoupled' (AdamW); train/state.make_optimizer.
      weight_decay_mode='l2',
  ))

  config.train = ml_collections.ConfigDict(dict(
      # Length: `steps` if > 0, else `num_epochs` passes over
      # `num_train_examples` examples at `data.global_batch_size`.
      steps=-1,
      num_epochs=50,
      num_train_examples=-1,
      # Even steps automatic, odd referential ('alternate'), or one mode.
      mode_schedule='alternate',
      ema_decay=0.999,
      ema_warmup=True,               # decay min(ema_decay, (1+t)/(10+t))
      log_every_steps=100,
      sample_every_steps=1000,
      checkpoint_every_steps=1000,
      max_to_keep=3,
      keep_period=10_000,            # also keep every multiple of this step
      profile=False,                 # clu Profile around a few steps
      profile_num_steps=5,
      # Validation on fixed held-out photos (scsnet_jax.evaluation.validation): model
      # and baselines per mode, logged with the losses; 0 = never.
      eval_every_steps=0,
      # > 0: while the GAN is inactive, the content loss is computed on this
      # many random HR pixels per crop (the CPM renders only those), not on
      # every pixel (train_step.sample_output_points); 0 = every pixel.
      content_points=0,
      # > 0: the generator renders one random square window of this many HR
      # pixels a side per crop (train_step.sample_output_window), and every
      # loss (content, perceptual, adversarial) is taken on it: the
      # perceptual and GAN terms get an image while the CPM renders a
      # fraction of the crop. 0 = the whole crop. Exclusive with
      # content_points.
      render_window=0,
      # First step the spike detector judges one by one (earlier ones are
      # summarised in one line); -1 = twice optimizer.warmup_steps + 1.
      spike_check_from=-1,
  ))
  config.validation = ml_collections.ConfigDict(dict(
      source='demo',                 # 'demo' (skimage photos) or 'folder'
      folder_path=config_dict.FieldReference('', field_type=object),
      num_images=6,                  # the first n photos of the source
      crop_size=256,                 # HR centre crop; LR = crop / scale
      scale=4.0,
      num_sample_images=3,           # photos in the labelled sample grid
  ))
  return config


def data_defaults() -> ml_collections.ConfigDict:
  """``config.data``: every key with its default (see docs/data.md)."""
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
      # train: reference from another window (0.75-1.5x the crop, placed
      # independently) of the same photo: same colours, other layout.
      other_view_reference_prob=0.0,
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


def loss_defaults() -> ml_collections.ConfigDict:
  """``config.loss``: the spec's weights (see docs/losses.md)."""
  return ml_collections.ConfigDict({
      'content_weight': 10.0,
      # The L channel's content penalty: 'l1' (the paper), 'l2' or
      # 'charbonnier', times luminance_weight (train/losses.content_loss).
      'luminance_loss': 'l1',
      'luminance_weight': 1.0,
      'perceptual_weight': 5.0,
      'adversarial_weight': 1.0,
      # PSNR warm-up: steps before this train G on the content loss alone
      # (no D update, no VGG); 0 = the paper (all terms from the start).
      'gan_start_step': 0,
      # The perceptual term's own start; -1 = with the GAN (gan_start_step).
      'perceptual_start_step': -1,
      # The converter's .npz (see docs/losses.md); '' = none.
      'vgg_weights': '',
      # Without weights, use a random VGG16 (tests/demos; L_P then means little).
      'allow_random_vgg': False,
      # Compute dtype of the VGG16 forward pass ('float32' | 'bfloat16').
      'vgg_dtype': 'float32',
  })


def eval_defaults() -> ml_collections.ConfigDict:
  """``config.eval``: the paper's counts (shrink them for small sets)."""
  return ml_collections.ConfigDict(dict(
      split='eval',
      repeat_split=False,      # cycle a split smaller than the counts
      num_automatic=2500,
      num_self_reference=500,
      num_other_reference=2000,
      batch_size=8,            # per process
      inception_weights='',    # npz from scsnet_jax.pretrained.convert_inception
      y_channel=False,         # PSNR/SSIM on RGB (False) or BT.601 Y (True)
      crop_border=0,           # pixels dropped on each side for PSNR/SSIM
      step=-1,                 # checkpoint step; -1 = latest
      use_ema=True,
      write_tensorboard=True,
  ))


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """``get_config()`` of a config file, named as ``--config`` names it:
  ``PATH`` or ``PATH:ARGUMENT`` (then ``get_config(ARGUMENT)``).

  Config files are loaded by path, so ``configs`` need not be importable
  and any working directory will do.
  """
  path, _, argument = path.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f'_scsnet_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(argument) if argument else module.get_config()


def load_sibling_config(this_file: str, name: str) -> ml_collections.ConfigDict:
  """``get_config()`` of ``configs/<name>.py`` next to ``this_file``: lets
  one config extend another."""
  return load_config_file(os.path.join(
      os.path.dirname(os.path.abspath(this_file)), f'{name}.py'))


# ------------------------------------------------------- dotted key paths ---
def flatten(tree: Mapping[str, Any], sep: str = '.',
            prefix: str = '') -> dict[str, Any]:
  """{'a.b': leaf} of a ConfigDict or nested dicts (an empty section is a
  leaf); ``sep='/'`` names writer scalars."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)) and value:
      flat.update(flatten(value, sep, f'{prefix}{key}{sep}'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def get(config, dotted: str, default: Any = KeyError) -> Any:
  """``config['a']['b']`` for ``'a.b'``; ``default`` (else KeyError) when a
  part is missing."""
  node = config
  for part in dotted.split('.'):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or (
        part not in node):
      if default is KeyError:
        raise KeyError(dotted)
      return default
    node = node[part]
  return node


# --------------------------------------------------------------- validation ---
def choices() -> dict[str, tuple]:
  """Fields outside ``model`` whose values are a closed set -> the set."""
  dtypes = tuple(DTYPES)
  return {
      'dtype': dtypes,
      'loss.vgg_dtype': dtypes,
      'train.mode_schedule': MODE_SCHEDULES,
      'optimizer.schedule': LR_SCHEDULES,
      'optimizer.weight_decay_mode': WEIGHT_DECAY_MODES,
      'loss.luminance_loss': LUMINANCE_LOSSES,
      'data.source': DATA_SOURCES,
      'validation.source': VALIDATION_SOURCES,
  }


_MISSING = object()


def validate_config(config) -> None:
  """Raises UserError (one line) for a choice or type a flag got wrong.

  Run where every config is built (``main``, for config files and workdir
  configs alike): the closed sets of ``choices()``, the model section as
  ``GeneratorConfig`` checks itself, and that each field of the base config
  still has its default's type (ints are fine where floats are expected).
  """
  errors = []
  closed_sets = choices()
  for dotted, allowed in closed_sets.items():
    value = get(config, dotted, _MISSING)
    if value is _MISSING or any(
        value is c or (isinstance(value, str) and value == c)
        for c in allowed):
      continue
    errors.append(not_one_of(dotted, value, allowed))
  if 'model' in config:
    try:
      GeneratorConfig.from_mapping(config['model'])
    except UserError as error:
      errors.append(str(error))
  for dotted, want in _base_types().items():
    value = get(config, dotted, _MISSING)
    if (value is _MISSING or dotted in closed_sets or value is None
        or dotted in _MODEL_CHOICES):
      continue
    if want is float and isinstance(value, int) and not isinstance(value,
                                                                   bool):
      continue
    if want in (list, tuple) and isinstance(value, (list, tuple)):
      continue
    if not isinstance(value, want) or (want is int and
                                       isinstance(value, bool)):
      errors.append(f'config.{dotted} must be {want.__name__}, got '
                    f'{value!r} ({type(value).__name__})')
  if errors:
    raise UserError('; '.join(errors))


# Model fields with a closed set: GeneratorConfig checks them (a bool is
# fine for cpm_project_first).
_MODEL_CHOICES = ('model.dtype', 'model.cpm_project_first',
                  'model.attention_impl', 'model.cpm_sampling')


def _base_types() -> dict[str, type]:
  """Dotted key -> the type of its default; fields declared with
  ``field_type=object`` (``data.scale``: a number or [min, max]) take any."""
  config = get_base_config()
  types = {}
  for dotted in flatten(config):
    parent, _, leaf = dotted.rpartition('.')
    node = get(config, parent) if parent else config
    value = node[leaf]
    if value is not None and node.get_ref(leaf).get_type() is not object:
      types[dotted] = type(value)
  return types


# ------------------------------------------------- the workdir's own config ---
def config_from_dict(values: dict) -> ml_collections.ConfigDict:
  """A saved config (``config.json``) on top of ``get_base_config()``.

  Field references (``model.dtype`` -> ``dtype``) are kept; fields the
  saved config does not know keep their defaults, and fields the base
  config does not know (an older or newer version) are kept as saved.
  """
  config = get_base_config()

  def merge(node, saved):
    for key, value in saved.items():
      if (key in node and isinstance(node[key], ml_collections.ConfigDict)
          and isinstance(value, dict)):
        merge(node[key], value)
      else:
        try:
          node[key] = value
        except TypeError:   # a typed reference gets another type: replace
          with node.ignore_type():
            node[key] = value
  merge(config, saved=values)
  return config


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """``WORKDIR/config.json`` (written by training) as a ConfigDict."""
  path = workdir_lib.config_path(workdir)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'{path} does not exist: --workdir is not a training workdir; give '
        '--config=configs/<name>.py')
  with open(path) as f:
    try:
      values = json.load(f)
    except json.JSONDecodeError as error:
      raise UserError(f'{path} is not valid JSON: {error}') from None
  return config_from_dict(values)
