"""sRGB <-> CIE LAB (D65) and the network's [-1, 1] normalisation.

Names say the dtype: ``rgb01`` is float sRGB in [0, 1], ``rgb8`` is uint8
sRGB, ``nlab`` the network's normalised LAB and ``gray`` its normalised L
channel (..., 1), both float. The float functions work on numpy arrays (in
numpy: grain workers must not touch JAX) and on jax arrays and tracers (in
jax.numpy: the differentiable losses) alike, so the input pipeline and the
losses share one implementation; the namespace follows the input (``xp``
overrides it). The uint8 functions (numpy) are what the predict CLI, the app
and the export checks read and write. Constants follow scikit-image
(``skimage.color.rgb2lab`` with illuminant D65, observer 2).
"""

from __future__ import annotations

import numpy as np

try:  # JAX is optional for the numpy-only callers (grain workers).
  import jax.numpy as jnp
except ImportError:  # pragma: no cover
  jnp = None

XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
D65_WHITE = np.array([0.95047, 1.0, 1.08883])

# CIE constants: f(t) is a cube root above EPSILON, linear below.
_EPSILON = 0.008856
_KAPPA_SLOPE = 7.787
_OFFSET = 16.0 / 116.0
_F_THRESHOLD = 0.20689655172413793  # f(_EPSILON) = 6/29

L_SCALE, L_OFFSET, AB_SCALE = 50.0, 1.0, 110.0


def _ns(array, xp):
  """``xp`` if given, else the input's namespace: numpy for numpy arrays
  and Python numbers, jax.numpy for jax arrays and tracers."""
  if xp is not None:
    return xp
  if jnp is None or isinstance(array, (np.ndarray, np.generic, float, int,
                                       list, tuple)):
    return np
  return jnp


def _matmul_last(x, matrix, xp):
  return xp.einsum('...c,dc->...d', x, xp.asarray(matrix, dtype=x.dtype))


def srgb_to_linear(rgb, xp=None):
  xp = _ns(rgb, xp)
  safe = xp.maximum(rgb, 0.04045)
  return xp.where(rgb <= 0.04045, rgb / 12.92, ((safe + 0.055) / 1.055)**2.4)


def linear_to_srgb(lin, xp=None):
  xp = _ns(lin, xp)
  safe = xp.maximum(lin, 0.0031308)  # keeps the power's gradient finite at 0
  return xp.where(lin <= 0.0031308, 12.92 * lin,
                  1.055 * safe**(1.0 / 2.4) - 0.055)


def rgb01_to_lab(rgb, xp=None):
  """sRGB in [0, 1], (..., 3) -> CIE LAB (L in [0, 100])."""
  xp = _ns(rgb, xp)
  xyz = _matmul_last(srgb_to_linear(rgb, xp), XYZ_FROM_RGB, xp)
  t = xyz / xp.asarray(D65_WHITE, dtype=xyz.dtype)
  f = xp.where(t > _EPSILON, xp.maximum(t, _EPSILON)**(1.0 / 3.0),
               _KAPPA_SLOPE * t + _OFFSET)
  fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
  return xp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)],
                  axis=-1)


def lab_to_rgb01(lab, xp=None, clip=True):
  """CIE LAB (..., 3) -> sRGB; clipped to [0, 1] unless ``clip=False``."""
  xp = _ns(lab, xp)
  fy = (lab[..., 0] + 16.0) / 116.0
  fx = lab[..., 1] / 500.0 + fy
  fz = xp.maximum(fy - lab[..., 2] / 200.0, 0.0)  # as skimage: z >= 0
  f = xp.stack([fx, fy, fz], axis=-1)
  t = xp.where(f > _F_THRESHOLD, f**3, (f - _OFFSET) / _KAPPA_SLOPE)
  xyz = t * xp.asarray(D65_WHITE, dtype=t.dtype)
  rgb = linear_to_srgb(_matmul_last(xyz, RGB_FROM_XYZ, xp), xp)
  return xp.clip(rgb, 0.0, 1.0) if clip else rgb


def normalize_lab(lab, xp=None):
  """LAB -> the network's range: (L/50 - 1, a/110, b/110)."""
  xp = _ns(lab, xp)
  return xp.stack([lab[..., 0] / L_SCALE - L_OFFSET, lab[..., 1] / AB_SCALE,
                   lab[..., 2] / AB_SCALE], axis=-1)


def denormalize_lab(nlab, xp=None):
  xp = _ns(nlab, xp)
  return xp.stack([(nlab[..., 0] + L_OFFSET) * L_SCALE,
                   nlab[..., 1] * AB_SCALE, nlab[..., 2] * AB_SCALE], axis=-1)


def rgb01_to_nlab(rgb, xp=None):
  """sRGB [0, 1] -> normalised LAB in [-1, 1] (the network's colour space)."""
  xp = _ns(rgb, xp)
  return normalize_lab(rgb01_to_lab(rgb, xp), xp)


def nlab_to_rgb01(nlab, xp=None, clip=True):
  """Normalised LAB -> sRGB [0, 1] (clipped unless ``clip=False``)."""
  xp = _ns(nlab, xp)
  return lab_to_rgb01(denormalize_lab(nlab, xp), xp, clip=clip)


def rgb01_to_gray(rgb, xp=None):
  """sRGB [0, 1] (..., 3) -> normalised L channel (..., 1)."""
  return rgb01_to_nlab(rgb, xp)[..., :1]


def colorfulness(rgb_uint8):
  """Hasler & Suesstrunk (2003) M3 on sRGB 0-255.

  rg = R - G, yb = (R + G)/2 - B (signed); CN = sqrt(std_rg^2 + std_yb^2) +
  0.3 sqrt(mean_rg^2 + mean_yb^2), statistics over the pixels of one image.
  Args: uint8 (H,W,3) -> float, or (B,H,W,3) -> (B,) float64.
  """
  rgb = np.asarray(rgb_uint8)
  if rgb.dtype != np.uint8 or rgb.ndim not in (3, 4) or rgb.shape[-1] != 3:
    raise ValueError('colorfulness needs uint8 sRGB (H, W, 3) or (B, H, W, 3), '
                     f'got {rgb.dtype} {rgb.shape}')
  single = rgb.ndim == 3
  rgb = (rgb[None] if single else rgb).astype(np.float64)
  red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  rg = red - green
  yb = 0.5 * (red + green) - blue
  axes = (1, 2)
  spread = np.sqrt(rg.var(axis=axes) + yb.var(axis=axes))
  offset = np.sqrt(rg.mean(axis=axes)**2 + yb.mean(axis=axes)**2)
  values = spread + 0.3 * offset
  return float(values[0]) if single else values


# ------------------------------------------------- uint8 images (numpy) ---
# What the predict CLI, the web app and the export checks read and write:
# uint8 sRGB images of any size. These work in float32 blocks of rows, so a
# 5000 x 5000 photo needs a few tens of MB of temporaries, not ~7 float64
# copies of the image (1.4 GB) as the float64 LAB of the whole image would.
_ROWS_PER_BLOCK = 256


def _srgb_to_linear_table() -> np.ndarray:
  levels = np.arange(256, dtype=np.float64) / 255.0
  return srgb_to_linear(levels, xp=np).astype(np.float32)


_LINEAR = _srgb_to_linear_table()   # uint8 sRGB level -> linear light


def rgb8_to_gray(pixels: np.ndarray,
                  rows_per_block: int = _ROWS_PER_BLOCK) -> np.ndarray:
  """uint8 sRGB (H, W, 3) -> normalised L (H, W, 1) float32, the model's
  gray input.

  ``rgb01_to_gray`` in float64 to within 5e-7 over all 2^24 colours, ~10x
  faster: L needs only the luminance Y, so per block of rows it is three
  table look-ups and a cube root.
  """
  if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[-1] != 3:
    raise ValueError(f'expected uint8 (H, W, 3), got {pixels.dtype} '
                     f'{pixels.shape}')
  weights = (XYZ_FROM_RGB[1] / D65_WHITE[1]).astype(np.float32)
  epsilon, slope = np.float32(_EPSILON), np.float32(_KAPPA_SLOPE)
  offset = np.float32(_OFFSET)
  out = np.empty(pixels.shape[:2] + (1,), np.float32)
  for top in range(0, pixels.shape[0], rows_per_block):
    block = pixels[top:top + rows_per_block]
    y = _LINEAR[block[..., 0]] * weights[0]
    y += _LINEAR[block[..., 1]] * weights[1]
    y += _LINEAR[block[..., 2]] * weights[2]
    f = np.where(y > epsilon, np.cbrt(np.maximum(y, epsilon)),
                 slope * y + offset)
    lightness = np.float32(116.0) * f - np.float32(16.0)
    out[top:top + rows_per_block, :, 0] = (
        lightness / np.float32(L_SCALE) - np.float32(L_OFFSET))
  return out


def rgb8_to_nlab(pixels: np.ndarray) -> np.ndarray:
  """uint8 sRGB (H, W, 3) -> normalised LAB (H, W, 3) float32 (for
  references, which are small: float64 of the whole image)."""
  return rgb01_to_nlab(pixels.astype(np.float64) / 255.0,
                     xp=np).astype(np.float32)


def nlab_to_rgb8(nlab: np.ndarray,
                  rows_per_block: int = _ROWS_PER_BLOCK) -> np.ndarray:
  """Normalised LAB (H, W, 3) -> uint8 sRGB (H, W, 3) (clipped, rounded),
  in float32 blocks of rows."""
  nlab = np.asarray(nlab, np.float32)
  out = np.empty(nlab.shape, np.uint8)
  for top in range(0, nlab.shape[0], rows_per_block):
    rgb = nlab_to_rgb01(nlab[top:top + rows_per_block], xp=np, clip=True)
    out[top:top + rows_per_block] = np.round(rgb * 255.0)
  return out


def gray_to_rgb8(gray: np.ndarray) -> np.ndarray:
  """Normalised L (H, W, 1) -> gray uint8 sRGB (H, W, 3) (a = b = 0): how
  a gray input or its bicubic enlargement looks."""
  gray = np.asarray(gray, np.float32)
  return nlab_to_rgb8(np.concatenate(
      [gray, np.zeros(gray.shape[:2] + (2,), np.float32)], axis=-1))
