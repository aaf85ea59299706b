"""Colourise a gray photo with an exported SCSNet ONNX file, without JAX.

  python examples/onnx_colorize.py exported_onnx/generator_automatic_x4.onnx \
      in.png out.png

Needs onnxruntime, numpy and Pillow only (copy this file anywhere). The file
``python -m scsnet_jax.export --format onnx`` writes takes normalised LAB
lightness ``gray`` (1, H, W, 1), L/50 - 1, with H and W multiples of 4, and
returns normalised LAB (1, s*H, s*W, 3), (L/50 - 1, a/110, b/110), at the
file's integer scale s. This script converts sRGB -> L (D65), pads the sides
to multiples of 4 by reflection, runs the model, crops the padding off and
converts LAB -> sRGB, as the project's own ``predict`` does (tested to within
one 8-bit level in tests/export/onnx_writer_test.py). Automatic files only: a
referential file also needs ``reference`` (1, Hr, Wr, 3), normalised LAB.
"""

import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

if len(sys.argv) != 4:
  sys.exit('usage: python onnx_colorize.py MODEL.onnx INPUT_IMAGE OUTPUT.png')
model, image, out = sys.argv[1:4]
M = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
              [0.019334, 0.119193, 0.950227]])  # linear sRGB -> XYZ
WHITE = np.array([0.95047, 1.0, 1.08883])       # D65

rgb = np.asarray(Image.open(image).convert('RGB'), np.float64) / 255
lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
y = lin @ M[1]                                   # luminance Y
L = 116 * np.where(y > 0.008856, np.cbrt(y), 7.787 * y + 16 / 116) - 16
h, w = L.shape                                   # sides -> multiples of 4
gray = np.pad(L / 50 - 1, ((0, -h % 4), (0, -w % 4)), mode='reflect')

session = ort.InferenceSession(model, providers=['CPUExecutionProvider'])
lab = session.run(None, {'gray': gray[None, :, :, None].astype(np.float32)})[0][0]
s = lab.shape[0] // gray.shape[0]                # the file's scale
lab = lab[:s * h, :s * w].astype(np.float64) * [50, 110, 110] + [50, 0, 0]

fy = (lab[..., 0] + 16) / 116                    # CIE LAB -> XYZ -> sRGB
f = np.stack([fy + lab[..., 1] / 500, fy,
              np.maximum(fy - lab[..., 2] / 200, 0)], axis=-1)
xyz = np.where(f > 6 / 29, f ** 3, (f - 16 / 116) / 7.787) * WHITE
lin = xyz @ np.linalg.inv(M).T
srgb = np.where(lin <= 0.0031308, 12.92 * lin,
                1.055 * np.maximum(lin, 0.0031308) ** (1 / 2.4) - 0.055)
Image.fromarray(np.round(np.clip(srgb, 0, 1) * 255).astype(np.uint8)).save(out)
print(f'wrote {out} ({s * w}x{s * h}, x{s} of {image})')
