"""Converts torchvision's VGG16 ImageNet weights to the .npz that L_P reads.

  python -m scsnet_jax.pretrained.convert_vgg16 \
      --input vgg16-397923af.pth --output vgg16.npz

``features.<i>.weight`` (OIHW) becomes ``convX_Y/kernel`` (HWIO) and
``features.<i>.bias`` becomes ``convX_Y/bias``; ``classifier.*`` is ignored.
The .pth is read without torch by the allow-listed unpickler of
``torch_reader``; nothing is downloaded. User mistakes end with one line on
stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from scsnet_jax.errors import UserError, one_line
from scsnet_jax.pretrained import vgg
from scsnet_jax.pretrained import torch_reader


class ConversionError(UserError):
  """The input is not torchvision's VGG16 state dict."""


def convert_state_dict(state: dict[str, np.ndarray]
                       ) -> dict[str, dict[str, np.ndarray]]:
  """torchvision ``vgg16().state_dict()`` -> ``vgg16_features`` params."""
  params = {}
  for name, index, cin, cout in vgg.VGG16_CONV_LAYERS:
    weight_key, bias_key = f'features.{index}.weight', f'features.{index}.bias'
    for key in (weight_key, bias_key):
      if key not in state:
        raise ConversionError(f'missing {key}: not a torchvision VGG16 state '
                              'dict (vgg16_bn and vgg19 have other layouts)')
    weight, bias = state[weight_key], state[bias_key]
    expected = (cout, cin, vgg.KERNEL_SIZE, vgg.KERNEL_SIZE)
    if weight.shape != expected or bias.shape != (cout,):
      raise ConversionError(
          f'{weight_key} has shape {weight.shape} (expected {expected}) and '
          f'{bias_key} {bias.shape} (expected {(cout,)})')
    params[name] = {
        'kernel': np.ascontiguousarray(
            np.transpose(weight, (2, 3, 1, 0)).astype(np.float32)),
        'bias': bias.astype(np.float32),
    }
  return params


def convert_file(input_path: str, output_path: str,
                 sha256: str | None = None) -> None:
  """Reads the .pth (after checking ``sha256``, a hex prefix, if given),
  converts, and writes the .npz atomically."""
  params = convert_state_dict(torch_reader.load_torch_state_dict(
      input_path, expected_sha256=sha256))
  out_dir = os.path.dirname(os.path.abspath(output_path))
  os.makedirs(out_dir, exist_ok=True)
  vgg.save_vgg16_params(params, output_path)   # atomic


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m scsnet_jax.pretrained.convert_vgg16', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  torch_reader.add_converter_arguments(
      parser, source="torchvision's vgg16-397923af.pth",
      digest_example='torchvision names carry 8, e.g. 397923af')
  args = parser.parse_args(argv)
  try:
    convert_file(args.input, args.output, args.sha256)
  except (OSError, UserError) as e:  # the reader's errors are UserErrors
    print(f'convert_vgg16: error: {one_line(e)}', file=sys.stderr)
    return 1
  print(f'wrote {args.output}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
