"""Converts pytorch-fid's InceptionV3 weights to the npz that FID here loads.

    python -m scsnet_jax.pretrained.convert_inception \
        --input pt_inception-2015-12-05-6726825d.pth --output inception.npz

The ``.pth`` is read by the allow-listed reader in ``torch_reader`` (torch is
not needed and nothing in the file is executed). For every ``BasicConv2d``
prefix P (``Mixed_5b.branch1x1``) the file holds ``P.conv.weight`` (O, I, kh,
kw) and ``P.bn.{weight, bias, running_mean, running_var}``; the npz gets
``P.kernel`` (kh, kw, I, O) and ``P.bias`` with the inference-mode BatchNorm
(eps 1e-3) folded in:
    scale = gamma / sqrt(running_var + eps)
    kernel = weight * scale (per output channel),  bias = beta - mean * scale.
The classifier (``fc.*``) and ``bn.num_batches_tracked`` are dropped.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from scsnet_jax import atomic
from scsnet_jax.hashing import file_sha256
from scsnet_jax.errors import UserError, one_line
from scsnet_jax.pretrained import inception
from scsnet_jax.pretrained import torch_reader

BATCH_NORM_EPS = 1e-3  # torchvision's BasicConv2d
PYTORCH_FID_FILENAME = 'pt_inception-2015-12-05-6726825d.pth'
_BATCH_NORM_FIELDS = ('weight', 'bias', 'running_mean', 'running_var')
_IGNORED_SUFFIXES = ('.num_batches_tracked',)
_IGNORED_PREFIXES = ('fc.', 'AuxLogits.')


def fold_batch_norm(weight_oihw, gamma, beta, mean, var, eps=BATCH_NORM_EPS):
  """OIHW conv without bias + BN -> (HWIO kernel, bias), in float64 then f32."""
  scale = np.asarray(gamma, np.float64) / np.sqrt(
      np.asarray(var, np.float64) + eps)
  kernel = np.asarray(weight_oihw, np.float64) * scale[:, None, None, None]
  bias = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
  return (np.transpose(kernel, (2, 3, 1, 0)).astype(np.float32),
          bias.astype(np.float32))


def convert_state_dict(state_dict: dict[str, np.ndarray],
                       expected_shapes: dict[str, tuple] | None = None
                       ) -> dict[str, np.ndarray]:
  """pytorch-fid state dict -> {'<prefix>.kernel': HWIO, '<prefix>.bias': O}.

  ``expected_shapes`` (prefix -> HWIO shape) defaults to the Flax model's;
  any missing, unexpected or mis-shaped tensor is a ValueError.
  """
  if expected_shapes is None:
    expected_shapes = inception.folded_conv_shapes()
  used = set()
  converted = {}
  for prefix, shape in expected_shapes.items():
    names = [f'{prefix}.conv.weight'] + [
        f'{prefix}.bn.{field}' for field in _BATCH_NORM_FIELDS]
    missing = [n for n in names if n not in state_dict]
    if missing:
      raise UserError(f'not a pytorch-fid Inception state dict: missing '
                       f'{missing[0]} (and {len(missing) - 1} more here).')
    weight = np.asarray(state_dict[names[0]])
    kh, kw, cin, cout = shape
    batch_norm = [np.asarray(state_dict[n]) for n in names[1:]]
    if weight.shape != (cout, cin, kh, kw) or any(
        v.shape != (cout,) for v in batch_norm):
      raise UserError(f'{names[0]}: shape {weight.shape} (OIHW) does not '
                       f'match the FID Inception (HWIO {tuple(shape)}).')
    kernel, bias = fold_batch_norm(weight, *batch_norm)
    converted[f'{prefix}.kernel'], converted[f'{prefix}.bias'] = kernel, bias
    used.update(names)
  leftover = sorted(
      k for k in state_dict if k not in used and
      not k.endswith(_IGNORED_SUFFIXES) and not k.startswith(_IGNORED_PREFIXES))
  if leftover:
    raise UserError(f'unexpected tensors in the state dict, e.g. '
                     f'{leftover[:3]}; is this pytorch-fid\'s '
                     f'{PYTORCH_FID_FILENAME}?')
  return converted


def convert_file(input_path, output_path,
                 sha256: str | None = None) -> dict[str, np.ndarray]:
  """Reads a .pth safely (after checking ``sha256``, a hex prefix, if
  given), converts it, writes an uncompressed npz."""
  state_dict = torch_reader.load_torch_state_dict(input_path,
                                                  expected_sha256=sha256)
  converted = convert_state_dict(state_dict)
  output_dir = os.path.dirname(os.path.abspath(output_path))
  os.makedirs(output_dir, exist_ok=True)
  with atomic.open_atomic(output_path) as f:  # a file: no '.npz' appended
    np.savez(f, **converted)
  return converted


def _sha256_prefix(path, length=8):
  return file_sha256(path)[:length]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  torch_reader.add_converter_arguments(
      parser, source=f'pytorch-fid weights, {PYTORCH_FID_FILENAME}',
      digest_example="pytorch-fid's file is 6726825d...")
  args = parser.parse_args(argv)
  if not os.path.isfile(args.input):
    parser.error(f'no such file: {args.input}')
  try:
    converted = convert_file(args.input, args.output, args.sha256)
  except (UserError, OSError) as error:  # bad, unsafe or mismatched file
    print(f'convert_inception: error: {one_line(error)}', file=sys.stderr)
    return 1
  expected_hash = PYTORCH_FID_FILENAME.rsplit('-', 1)[-1].split('.')[0]
  actual_hash = _sha256_prefix(args.input)
  note = ('matches' if actual_hash == expected_hash[:8] else
          f'differs from the published {expected_hash}: FID will not be '
          'comparable with published numbers')
  print(f'wrote {len(converted) // 2} folded convolutions to {args.output}; '
        f'input sha256 prefix {actual_hash} ({note})')
  return 0


if __name__ == '__main__':
  sys.exit(main())
