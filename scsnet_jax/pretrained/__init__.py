"""Networks trained elsewhere that SCSNet uses (not SCSNet itself), their
weights converters and the safe PyTorch reader those converters share.

  vgg.py                VGG16 features: the perceptual loss (train/losses.py)
  inception.py          pytorch-fid InceptionV3: FID (evaluation/protocol.py)
  torch_reader.py       PyTorch .pth files (zip and legacy) -> numpy
  torch_pickle.py       its allow-listed unpickler
  torch_limits.py       its byte, pickle and stride limits
  convert_vgg16.py      torchvision VGG16 .pth -> .npz (a command line)
  convert_inception.py  pytorch-fid InceptionV3 .pth -> .npz (a command line)

Nothing here imports SCSNet (``models/``) or training code.
"""
