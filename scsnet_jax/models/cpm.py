"""CPM (continuous pixel mapping): colour at any continuous position.

For a query point (x, y) in (0, 1) the CPM bilinearly samples the fused
low-resolution feature map, appends the point's local coordinate inside its
LR pixel, and runs a per-point MLP. Where a position lands on the LR map is
``sampling`` (``SAMPLINGS``): 'corners' is the spec and the paper ("we align
the corner", ``grid_sample(..., align_corners=True)``: u = x (W-1));
'centres' uses half-pixel centres (u = x W - 0.5, edges replicated), the
geometry of the output grid, of the local coordinate, of the bicubic base
and of the data's bicubic downsampling. The two disagree by (0.5 - x) LR
pixels: nothing in the middle, half an LR pixel at the borders. The MLP is written for ONE point and lifted
over all points with ``jax.vmap``; points go through in chunks (``lax.map``)
so memory stays bounded for any output size.

"Project first": the MLP's first Dense is linear and bilinear sampling is
linear, so ``W1 . sample(f) == sample(f . W1)``. Applying the feature half of
W1 to the LR map before sampling is mathematically equal and cheaper
whenever there are more output points than LR pixels (upscaling).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scsnet_jax.errors import UserError, not_one_of


def grid_coordinates(out_h: int, out_w: int):
  """Pixel centres of an (out_h, out_w) grid as (out_h*out_w, 2) (x, y)."""
  y = (jnp.arange(out_h, dtype=jnp.float32) + 0.5) / out_h
  x = (jnp.arange(out_w, dtype=jnp.float32) + 0.5) / out_w
  yy, xx = jnp.meshgrid(y, x, indexing='ij')
  return jnp.stack([xx.reshape(-1), yy.reshape(-1)], axis=-1)


SAMPLINGS = ('corners', 'centres')


def check_sampling(sampling: str) -> None:
  if sampling not in SAMPLINGS:
    raise UserError(not_one_of('model.cpm_sampling', sampling, SAMPLINGS))


def source_coordinate(t, n: int, sampling: str = 'corners'):
  """Position t in [0, 1] on an axis of n LR pixels -> the LR coordinate
  (pixel i's centre is i) that bilinear sampling reads, clipped to
  [0, n-1] (edges replicated)."""
  if sampling == 'corners':
    u = t * (n - 1)
  else:
    u = t * n - 0.5
  clip = np.clip if isinstance(u, np.ndarray) else jnp.clip  # host plans
  return clip(u, 0, n - 1)


def sample_position(u, n: int, sampling: str = 'corners'):
  """Inverse of ``source_coordinate`` (before clipping): the position in
  [0, 1] whose LR coordinate on an axis of n pixels is u (numpy or jax)."""
  if sampling == 'corners':
    return u / max(n - 1, 1)
  return (u + 0.5) / n


def bilinear_sample_point(feature_map, xy, sampling: str = 'corners'):
  """Sample (H, W, C) at one point xy = (x, y) in [0, 1] -> (C,).

  LR coordinates as ``source_coordinate`` (per ``sampling``).
  """
  h, w = feature_map.shape[0], feature_map.shape[1]
  u = source_coordinate(xy[0], w, sampling)
  v = source_coordinate(xy[1], h, sampling)
  x0 = jnp.clip(jnp.floor(u), 0, w - 1)
  y0 = jnp.clip(jnp.floor(v), 0, h - 1)
  wx = (u - x0).astype(feature_map.dtype)
  wy = (v - y0).astype(feature_map.dtype)
  x0i, y0i = x0.astype(jnp.int32), y0.astype(jnp.int32)
  x1i, y1i = jnp.minimum(x0i + 1, w - 1), jnp.minimum(y0i + 1, h - 1)
  top = feature_map[y0i, x0i] * (1 - wx) + feature_map[y0i, x1i] * wx
  bottom = feature_map[y1i, x0i] * (1 - wx) + feature_map[y1i, x1i] * wx
  return top * (1 - wy) + bottom * wy


def interpolate_axis(values, positions, axis: int, sampling: str = 'corners'):
  """Linear interpolation of ``values`` along ``axis`` at positions in
  [0, 1] (LR coordinates as ``source_coordinate``): one axis of
  ``bilinear_sample_point`` for a whole row or column of points."""
  n = values.shape[axis]
  u = source_coordinate(positions, n, sampling)
  i0 = jnp.clip(jnp.floor(u), 0, n - 1)
  weight = (u - i0).astype(values.dtype)
  i0 = i0.astype(jnp.int32)
  i1 = jnp.minimum(i0 + 1, n - 1)
  shape = [1] * values.ndim
  shape[axis] = positions.shape[0]
  weight = weight.reshape(shape)
  return (jnp.take(values, i0, axis=axis) * (1 - weight)
          + jnp.take(values, i1, axis=axis) * weight)


def local_offset(t, lr_size):
  """Position of t in (0, 1) inside its LR pixel along one axis, in [-1, 1)."""
  scaled = t * lr_size
  return 2 * (scaled - jnp.floor(scaled)) - 1


def local_coordinate(xy, lr_h: int, lr_w: int):
  """Position inside the containing LR pixel, in [-1, 1): (x first)."""
  return jnp.stack([local_offset(xy[0], lr_w), local_offset(xy[1], lr_h)])


class ContinuousPixelMapping(nnx.Module):
  """The CPM head: features (B, H, W, C) -> colours at query points."""

  def __init__(self, in_features: int = 256,
               hidden: Sequence[int] = (512, 256, 256), out_features: int = 3,
               *, chunk_size: int = 65536, project_first='auto',
               sampling: str = 'corners', dtype=jnp.float32,
               rngs: nnx.Rngs):
    check_sampling(sampling)
    widths = [in_features + 2, *hidden]
    self.hidden_layers = nnx.List([
        nnx.Linear(a, b, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        for a, b in zip(widths[:-1], widths[1:])])
    self.output_layer = nnx.Linear(widths[-1], out_features, dtype=dtype,
                                   param_dtype=jnp.float32, rngs=rngs)
    self.in_features = in_features
    self.chunk_size = chunk_size
    self.project_first = project_first
    self.sampling = sampling
    self.dtype = dtype

  # -- the per-point MLP ------------------------------------------------------
  def _first_preactivation(self, sampled, z, projected: bool):
    """Pre-activation of the first Dense for one point."""
    first = self.hidden_layers[0]
    if not projected:
      return first(jnp.concatenate([sampled, z.astype(sampled.dtype)]))
    kernel = first.kernel[...][self.in_features:].astype(sampled.dtype)
    return sampled + z.astype(sampled.dtype) @ kernel + first.bias[...].astype(
        sampled.dtype)

  def _hidden(self, sampled, z, projected: bool):
    """The hidden ReLU activations of one point, first layer first."""
    h = jax.nn.relu(self._first_preactivation(sampled, z, projected))
    hidden = [h]
    for layer in self.hidden_layers[1:]:
      h = jax.nn.relu(layer(h))
      hidden.append(h)
    return hidden

  def _point_mlp(self, sampled, z, projected: bool):
    """(C or 512,), (2,) -> (3,): the MLP written for one coordinate."""
    return self.output_layer(self._hidden(sampled, z, projected)[-1])

  def activations(self, features, coords):
    """What the training-health instruments read (train/health.py): the
    hidden ReLU activations [(B, N, width) per layer] and the head's output
    (B, N, 3) at points coords (B, N, 2), unchunked (a few thousand points).
    """
    lr_h, lr_w = features.shape[1], features.shape[2]

    def one_point(feature_map, xy):
      z = local_coordinate(xy, lr_h, lr_w)
      sampled = bilinear_sample_point(feature_map, xy, self.sampling)
      hidden = self._hidden(sampled, z, projected=False)
      return hidden, self.output_layer(hidden[-1])

    return jax.vmap(jax.vmap(one_point, in_axes=(None, 0)))(
        features.astype(self.dtype), coords)

  def _project(self, features):
    """Feature half of the first Dense applied to the LR map (no bias)."""
    kernel = self.hidden_layers[0].kernel[...][:self.in_features]
    return jnp.einsum('bhwc,cd->bhwd', features.astype(self.dtype),
                      kernel.astype(self.dtype))

  def _use_projection(self, lr_pixels, n_points):
    """``project_first``: 'auto', 'always' or 'never' (True/False alike)."""
    mode = self.project_first
    if mode is True or mode == 'always':
      return True
    if mode is False or mode == 'never':
      return False
    if mode != 'auto':  # e.g. the string 'False' from a flag: never truthy
      raise UserError(f"project_first must be 'auto', 'always', 'never' or a "
                       f'bool, got {mode!r}')
    if isinstance(lr_pixels, int) and isinstance(n_points, int):
      return n_points > lr_pixels
    return True  # symbolic shapes (export): upscaling is the use case

  # -- rendering ---------------------------------------------------------------
  def _source(self, features, n_points):
    """The map to sample from: f_cs, or f_cs projected by W1 (see above)."""
    lr_pixels = features.shape[1] * features.shape[2]
    projected = self._use_projection(lr_pixels, n_points)
    source = (self._project(features) if projected
              else features.astype(self.dtype))
    return source, projected

  def render_points(self, features, coords):
    """Colours at arbitrary points: coords (B, N, 2) as (x, y) in [0, 1].

    features (B, H, W, C) -> (B, N, 3) float32; chunks of ``chunk_size``.
    """
    lr_h, lr_w = features.shape[1], features.shape[2]
    n_points = coords.shape[1]
    source, projected = self._source(features, n_points)

    def one_point(feature_map, xy):
      z = local_coordinate(xy, lr_h, lr_w)
      return self._point_mlp(
          bilinear_sample_point(feature_map, xy, self.sampling), z, projected)

    per_image = jax.vmap(jax.vmap(one_point, in_axes=(None, 0)))
    chunk = self.chunk_size
    if not chunk or not isinstance(n_points, int) or n_points <= chunk:
      return per_image(source, coords).astype(jnp.float32)
    # Points one chunk at a time (each chunk vmapped): (N, B, 3) out.
    one_per_image = jax.vmap(one_point, in_axes=(0, 0))
    out = jax.lax.map(lambda xy: one_per_image(source, xy),
                      coords.swapaxes(0, 1), batch_size=chunk)
    return out.swapaxes(0, 1).astype(jnp.float32)

  def render_separable(self, features, sample_x, sample_y, local_x, local_y):
    """Colours on a separable grid: point (i, j) samples f at
    (sample_x[j], sample_y[i]) with local coordinate (local_x[j], local_y[i]).

    features (B,H,W,C); sample_*, local_* (n,) -> (B, ny, nx, 3) float32.
    The full output grid is one such grid; an inference tile is another
    (its sampling positions are tile-relative, its local coordinates are
    those of the global grid). On a separable grid bilinear sampling is two
    1-D interpolations (rows, then columns: contiguous slices instead of
    four scattered reads per point); the MLP still runs per point under
    ``vmap``. Rows go through ``lax.map`` in chunks of about ``chunk_size``
    points.
    """
    n_y, n_x = sample_y.shape[0], sample_x.shape[0]
    source, projected = self._source(features, n_y * n_x)
    mlp = jax.vmap(jax.vmap(jax.vmap(
        lambda f, zx, zy: self._point_mlp(f, jnp.stack([zx, zy]), projected),
        in_axes=(0, 0, None)), in_axes=(0, None, 0)), in_axes=(0, None, None))

    def render_rows(sy, zy):
      sampled = interpolate_axis(
          interpolate_axis(source, sy, axis=1, sampling=self.sampling),
          sample_x, axis=2, sampling=self.sampling)
      return mlp(sampled, local_x, zy)

    chunk = self.chunk_size
    concrete = isinstance(n_y, int) and isinstance(n_x, int)
    rows_per_chunk = max(1, chunk // n_x) if chunk and concrete else None
    if rows_per_chunk is None or rows_per_chunk >= n_y:
      return render_rows(sample_y, local_y).astype(jnp.float32)
    # Rows one chunk at a time (each chunk vmapped): (n_y, B, n_x, 3) out.
    out = jax.lax.map(lambda row: render_rows(row[0][None], row[1][None])[:, 0],
                      (sample_y, local_y), batch_size=rows_per_chunk)
    return jnp.moveaxis(out, 0, 1).astype(jnp.float32)

  def __call__(self, features, out_size):
    """Full grid: features (B, H, W, C) -> (B, Ht, Wt, 3)."""
    out_h, out_w = out_size
    x = (jnp.arange(out_w, dtype=jnp.float32) + 0.5) / out_w
    y = (jnp.arange(out_h, dtype=jnp.float32) + 0.5) / out_h
    return self.render_separable(features, x, y,
                                 local_offset(x, features.shape[2]),
                                 local_offset(y, features.shape[1]))
