"""The CPU recipe that learns: ~26 real photographs, 2 CPU cores, < 90 min.

Data: the natural photographs of three Debian/Ubuntu wallpaper packages
(``launch/photos_cpu.sh`` checks they are installed and prints the apt-get
line if not); a hashed share of them is held out (``data.eval_fraction``).
Validation: scikit-image's colour photographs, none of which is in the
corpus, at x4 (64 px gray -> 256 px colour).

What differs from the paper's recipe (configs/x4.py), each a config field
whose x4 default is the paper's value (docs/training.md, "The CPU recipe"):
- ``model.luminance_residual``: the L output is a residual over the bicubic
  enlargement of the input (a deliberate deviation from the spec), so the
  network starts at bicubic instead of at noise;
- ``loss.gan_start_step``: a PSNR warm-up (content loss only, no D update,
  no VGG) before the adversarial term; with no converted VGG16 weights the
  perceptual term is off (``loss.perceptual_weight = 0``);
- a higher learning rate with warm-up and cosine decay, a faster EMA;
- small crops (96 px HR, 24 px LR), batch 8, and the content loss on a
  quarter of the HR pixels (``train.content_points``), which makes a step
  2.5x cheaper: the CPM renders only those points.
"""

from scsnet_jax import config_lib

# Natural photographs only (the packages' abstract patterns and
# illustrations are left out).
CORPUS = ','.join([
    '/usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg',
    '/usr/share/backgrounds/Dragonfly_by_Bolly.jpg',
    '/usr/share/backgrounds/Picture_0B_by_freespace.jpg',
    '/usr/share/backgrounds/Picture_1A_by_freespace.jpg',
    '/usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg',
    '/usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg',
    '/usr/share/backgrounds/free_by_Peter_Nerlich.jpg',
    '/usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg',
    '/usr/share/backgrounds/greentock_by_Peter_Nerlich.jpg',
    '/usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg',
    '/usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg',
    '/usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg',
    '/usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg',
    '/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg',
    '/usr/share/backgrounds/mate/nature/*.jpg',
])
APT_PACKAGES = 'lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds'


def get_config():
  config = config_lib.get_base_config()
  config.data.source = 'folder'
  config.data.folder_path = CORPUS
  config.data.eval_fraction = 0.1
  config.data.crop_size = 96
  config.data.scale = 4.0
  config.data.global_batch_size = 8
  config.data.image_short_side = 320
  config.data.cache_images = True
  config.data.num_workers = 0
  config.data.read_threads = 2
  config.data.read_buffer_size = 16

  config.model.luminance_residual = True
  config.model.res_branch_init_scale = 0.1

  # L1 only: no VGG16 weights on CPU, and the adversarial term measured
  # worse than none in this budget (docs/results.md); D is then skipped.
  config.loss.perceptual_weight = 0.0
  config.loss.adversarial_weight = 0.0

  config.optimizer.learning_rate = 4e-4
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 100
  config.optimizer.grad_clip_norm = 1.0

  config.train.steps = 2500
  config.train.content_points = 2304     # a quarter of the 96 x 96 pixels
  config.train.ema_decay = 0.995
  config.train.log_every_steps = 50
  config.train.eval_every_steps = 250
  config.train.sample_every_steps = 500
  config.train.checkpoint_every_steps = 250
  config.train.max_to_keep = 2
  config.train.keep_period = 0

  config.validation.source = 'demo'
  config.validation.num_images = 6
  config.validation.crop_size = 256
  config.validation.scale = 4.0
  config.validation.num_sample_images = 3
  return config
