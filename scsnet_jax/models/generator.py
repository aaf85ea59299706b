"""The SCSNet generator (its layer table: docs/architecture.md).

Data flow::

  gray (B,H,W,1) -> init conv -> f_init (B,H,W,64)
    colorization branch: source encoder -> f_s (B,H/4,W/4,256)
        [referential: reference encoder(reference) -> f_r; PVCAttn(f_s, f_r)]
        -> colour decoder -> f_color (B,H,W,64)
    super-resolution branch: texture encoder(f_init) -> f_tex (B,H,W,64)
    fusion conv(concat[f_tex, f_color]) -> f_cs (B,H,W,256)
    CPM(f_cs, (Ht,Wt)) -> normalised LAB (B,Ht,Wt,3)

Every width lives in ``GeneratorConfig``; nothing else repeats them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional, Sequence

import jax.numpy as jnp
from flax import nnx

from scsnet_jax.errors import UserError, not_one_of
from scsnet_jax.models import bicubic
from scsnet_jax.models.geometry import INPUT_MULTIPLE
from scsnet_jax.models.attention import PyramidValveCrossAttention, SelfAttention
from scsnet_jax.models.cpm import SAMPLINGS, ContinuousPixelMapping
from scsnet_jax.models.layers import (Down, ResBlock, Up, conv, lrelu,
                                      res_stack, run_stack)

# Compute dtypes a model can run in (parameters stay float32).
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# GeneratorConfig.cpm_project_first, besides a bool (ContinuousPixelMapping).
PROJECT_FIRST = ('auto', 'always', 'never')
# GeneratorConfig.reference_keys: what PVCAttn's keys are computed from.
REFERENCE_KEYS = ('reference', 'luminance')
# GeneratorConfig.attention_impl: jax.nn.dot_product_attention's choices.
ATTENTION_IMPLS = (None, 'xla', 'cudnn')


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
  """Widths and switches of the generator; defaults are the spec's."""
  referential: bool = False
  dtype: str = 'float32'
  init_width: int = 64
  encoder_widths: Sequence[int] = (128, 256)
  source_res_blocks: int = 3
  reference_res_blocks: int = 2
  cross_attention_qk: int = 64
  pyramid_levels: int = 3
  self_attention_qk: int = 32
  decoder_res_blocks: Sequence[int] = (2, 2, 1)
  texture_res_blocks: int = 20
  fusion_width: int = 256
  cpm_hidden: Sequence[int] = (512, 256, 256)
  cpm_chunk_size: int = 65536
  cpm_project_first: Any = 'auto'
  # Where the CPM reads the LR features for an output position
  # (models/cpm.py): 'corners' = the spec and the paper (u = x (W-1));
  # 'centres' = half-pixel centres (u = x W - 0.5), the geometry of the
  # output grid, the local coordinate, the bicubic base and the data.
  cpm_sampling: str = 'corners'
  attention_impl: Optional[str] = None
  # Deviation from the spec (off = the spec): the output's L channel is the
  # CPM's output plus the bicubic enlargement of the gray input, and the
  # CPM's last Dense starts at zero, so an untrained network already renders
  # bicubic L with zero chroma (as VDSR / EDSR-style SR networks learn a
  # residual). See docs/training.md, "The CPU recipe".
  luminance_residual: bool = False
  # Deviation from the spec (off = the spec): in referential mode the
  # colour decoder reads f_s + PVCAttn(f_s, f_r) instead of PVCAttn(f_s,
  # f_r), and PVCAttn's last conv starts at zero, so an untrained
  # referential model is the automatic one and the reference adds a learned
  # residual (as ControlNet adds a condition) instead of replacing f_s with
  # a random re-mapping of it. Measured: the reference is used more
  # (docs/results.md, "Levers").
  reference_residual: bool = False
  # Deviation from the spec ('reference' = the spec): where PVCAttn's keys
  # come from. 'luminance': the reference's L channel through the source
  # encoder and the source side's projections (the same mapping as the
  # queries, key projection initialised equal to the query's), so matching
  # compares like with like, as exemplar colourisers match luminance
  # features; the values stay the reference encoder's colour features. No
  # extra parameters. Measured: with the spec's keys the attention of a
  # trained model stays near uniform (docs/results.md).
  reference_keys: str = 'reference'
  # Deviation from the spec (1.0 = the spec): a constant multiplying
  # PVCAttn's logits. Measured: trained attention stays within 0.1% of
  # uniform entropy, so the reference acts as its global colour statistics
  # even where the keys rank the right position first (docs/results.md).
  cross_attention_logit_scale: float = 1.0
  # Initialisation only (the architecture is the spec's): the second conv
  # of every ResBlock starts scaled by this factor. 1.0 = Flax's default
  # (the spec); 0.1 keeps the 20-block texture encoder's activations from
  # growing ~1.5x per block at initialisation (as EDSR's residual scaling
  # and Fixup do), which lets Adam take larger steps without diverging.
  res_branch_init_scale: float = 1.0

  @classmethod
  def from_mapping(cls, values: Mapping[str, Any]) -> 'GeneratorConfig':
    """From ``config.model`` (a ConfigDict or a dict, lists for tuples)."""
    if hasattr(values, 'to_dict'):
      values = values.to_dict()
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
      raise UserError(f'unknown model config keys: {sorted(unknown)}')
    fixed = {k: tuple(v) if isinstance(v, list) else v
             for k, v in values.items()}
    return cls(**fixed)

  def __post_init__(self):
    """One UserError line for every switch outside its closed set (flags
    give strings: 'False' must not silently mean True)."""
    errors = []
    if self.dtype not in DTYPES:
      errors.append(not_one_of('model.dtype', self.dtype, tuple(DTYPES)))
    project = self.cpm_project_first
    if not (isinstance(project, bool) or project in PROJECT_FIRST):
      hint = {'true': "'always'", 'false': "'never'"}.get(str(project).lower())
      errors.append(not_one_of('model.cpm_project_first', project,
                               PROJECT_FIRST, also_bool=True, hint=hint))
    if self.reference_keys not in REFERENCE_KEYS:
      errors.append(not_one_of('model.reference_keys', self.reference_keys,
                               REFERENCE_KEYS))
    if self.attention_impl not in ATTENTION_IMPLS:
      errors.append(not_one_of('model.attention_impl', self.attention_impl,
                               ATTENTION_IMPLS))
    if self.cpm_sampling not in SAMPLINGS:
      errors.append(not_one_of('model.cpm_sampling', self.cpm_sampling,
                               SAMPLINGS))
    if errors:
      raise UserError('; '.join(errors))


def model_config_dict() -> dict:
  """Defaults of ``config.model`` (the ConfigDict section)."""
  return {k: list(v) if isinstance(v, tuple) else v
          for k, v in dataclasses.asdict(GeneratorConfig()).items()}


class SourceEncoder(nnx.Module):
  """f_init (B,H,W,64) -> f_s (B,H/4,W/4,256)."""

  def __init__(self, cfg: GeneratorConfig, dtype, rngs):
    mid, out = cfg.encoder_widths
    self.down1 = Down(cfg.init_width, mid, dtype=dtype, rngs=rngs)
    self.res1 = ResBlock(mid, dtype=dtype, rngs=rngs)
    self.down2 = Down(mid, out, dtype=dtype, rngs=rngs)
    self.res2 = res_stack(cfg.source_res_blocks, out, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return run_stack(self.res2, self.down2(self.res1(self.down1(x))))


class ReferenceEncoder(SourceEncoder):
  """Colour reference (B,Hr,Wr,3) -> f_r (B,Hr/4,Wr/4,256)."""

  def __init__(self, cfg: GeneratorConfig, dtype, rngs):
    super().__init__(dataclasses.replace(
        cfg, source_res_blocks=cfg.reference_res_blocks), dtype, rngs)
    self.stem = conv(3, 3, cfg.init_width, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return super().__call__(lrelu(self.stem(x)))


class ColorDecoder(nnx.Module):
  """f_int (B,H/4,W/4,256) -> f_color (B,H,W,64)."""

  def __init__(self, cfg: GeneratorConfig, dtype, rngs):
    mid, wide = cfg.encoder_widths
    n_wide, n_mid, n_init = cfg.decoder_res_blocks
    self.self_attention = SelfAttention(wide, cfg.self_attention_qk,
                                        dtype=dtype,
                                        attention_impl=cfg.attention_impl,
                                        rngs=rngs)
    self.res_wide = res_stack(n_wide, wide, dtype=dtype, rngs=rngs)
    self.up1 = Up(wide, mid, dtype=dtype, rngs=rngs)
    self.res_mid = res_stack(n_mid, mid, dtype=dtype, rngs=rngs)
    self.up2 = Up(mid, cfg.init_width, dtype=dtype, rngs=rngs)
    self.res_init = res_stack(n_init, cfg.init_width, dtype=dtype, rngs=rngs)
    self.out = conv(3, cfg.init_width, cfg.init_width, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    x = run_stack(self.res_wide, self.self_attention(x))
    x = run_stack(self.res_mid, self.up1(x))
    x = run_stack(self.res_init, self.up2(x))
    return self.out(x)


class TextureEncoder(nnx.Module):
  """f_tex = f_init + conv(ResBlock x20 (f_init))."""

  def __init__(self, cfg: GeneratorConfig, dtype, rngs):
    self.blocks = res_stack(cfg.texture_res_blocks, cfg.init_width,
                            dtype=dtype, rngs=rngs)
    self.out = conv(3, cfg.init_width, cfg.init_width, dtype=dtype, rngs=rngs)

  def __call__(self, f_init):
    return f_init + self.out(run_stack(self.blocks, f_init))


def resolve_out_size(height, width, scale=None, out_size=None):
  """Output (Ht, Wt) from ``scale`` (round(p*H), round(p*W)) or explicit."""
  if (scale is None) == (out_size is None):
    raise UserError('pass exactly one of scale= or out_size=')
  if out_size is not None:
    out_h, out_w = out_size
    for v in (out_h, out_w):
      if isinstance(v, (int, float)) and (v != int(v) or v < 1):
        raise UserError(f'out_size must be positive integers, got {out_size}')
    return out_h, out_w
  try:
    p = float(scale)
  except (TypeError, ValueError):
    raise UserError(f'scale must be a number, got {scale!r}') from None
  if not math.isfinite(p) or p <= 0:
    raise UserError(f'scale must be a positive finite number, got {scale}')
  if p == int(p):  # integer scales keep symbolic (exported) shapes symbolic
    return int(p) * height, int(p) * width
  out_h, out_w = round(p * height), round(p * width)
  if out_h < 1 or out_w < 1:
    raise UserError(f'scale {scale} makes a {height}x{width} (HxW) input '
                     'smaller than one pixel')
  return out_h, out_w


def _check_input_multiple(name, shape):
  for dim in shape[1:3]:
    if isinstance(dim, int) and dim % INPUT_MULTIPLE:
      raise ValueError(f'{name} height and width must be multiples of '
                       f'{INPUT_MULTIPLE}, '
                       f'got {shape[1]}x{shape[2]} (pad by reflection first)')


class Generator(nnx.Module):
  """SCSNet generator; automatic mode, plus referential if configured."""

  def __init__(self, config: GeneratorConfig | None = None, *,
               referential: bool | None = None, rngs: nnx.Rngs):
    cfg = config or GeneratorConfig()
    if referential is not None:
      cfg = dataclasses.replace(cfg, referential=referential)
    dtype = DTYPES[cfg.dtype]
    self.config = cfg
    width = cfg.encoder_widths[-1]
    self.init_conv = conv(3, 1, cfg.init_width, dtype=dtype, rngs=rngs)
    self.source_encoder = SourceEncoder(cfg, dtype, rngs)
    if cfg.referential:
      self.reference_encoder = ReferenceEncoder(cfg, dtype, rngs)
      self.pvc_attention = PyramidValveCrossAttention(
          width, cfg.cross_attention_qk, cfg.pyramid_levels, dtype=dtype,
          attention_impl=cfg.attention_impl,
          logit_scale=cfg.cross_attention_logit_scale, rngs=rngs)
    self.color_decoder = ColorDecoder(cfg, dtype, rngs)
    self.texture_encoder = TextureEncoder(cfg, dtype, rngs)
    self.fusion = conv(3, 2 * cfg.init_width, cfg.fusion_width, dtype=dtype,
                       rngs=rngs)
    self.cpm = ContinuousPixelMapping(
        cfg.fusion_width, cfg.cpm_hidden, 3, chunk_size=cfg.cpm_chunk_size,
        project_first=cfg.cpm_project_first, sampling=cfg.cpm_sampling,
        dtype=dtype, rngs=rngs)
    if cfg.res_branch_init_scale != 1.0:
      for _, module in nnx.iter_graph(self):
        if isinstance(module, ResBlock):
          kernel = module.conv2.kernel
          kernel.value = kernel.value * cfg.res_branch_init_scale
    if cfg.referential and cfg.reference_keys == 'luminance':
      for level in self.pvc_attention.levels:
        level.tie_key_to_query()
    if cfg.referential and cfg.reference_residual:
      out = self.pvc_attention.fuse_out
      out.kernel.value = jnp.zeros_like(out.kernel.value)
      out.bias.value = jnp.zeros_like(out.bias.value)
    if cfg.luminance_residual:
      out = self.cpm.output_layer
      out.kernel.value = jnp.zeros_like(out.kernel.value)
      out.bias.value = jnp.zeros_like(out.bias.value)
    self.dtype = dtype

  def _validate(self, gray, reference):
    if gray.ndim != 4 or gray.shape[-1] != 1:
      raise ValueError(f'gray must be (B, H, W, 1), got shape {gray.shape}')
    _check_input_multiple('gray', gray.shape)
    if reference is None:
      return
    if not self.config.referential:
      raise UserError('this generator was built with referential=False; '
                       'it cannot take a reference image')
    if reference.ndim != 4 or reference.shape[-1] != 3:
      raise ValueError('reference must be (B, Hr, Wr, 3) normalised LAB, got '
                       f'shape {reference.shape}')
    if reference.shape[0] != gray.shape[0]:
      raise ValueError(f'reference batch {reference.shape[0]} != gray batch '
                       f'{gray.shape[0]}')
    _check_input_multiple('reference', reference.shape)

  def features(self, gray, reference=None):
    """The fused LR feature map f_cs (B, H, W, 256) the CPM samples from."""
    self._validate(gray, reference)
    f_init = self.init_conv(gray.astype(self.dtype))
    f_int = self.source_encoder(f_init)
    if reference is not None:
      f_ref, keys_from = self._reference_features(reference)
      borrowed = self.pvc_attention(f_int, f_ref, keys_from)
      f_int = (f_int + borrowed if self.config.reference_residual else
               borrowed)
    f_color = self.color_decoder(f_int)
    f_tex = self.texture_encoder(f_init)
    return self.fusion(jnp.concatenate([f_tex, f_color], axis=-1))

  def _reference_features(self, reference):
    """(f_r, what the keys are computed from or None) of a reference."""
    f_ref = self.reference_encoder(reference.astype(self.dtype))
    if self.config.reference_keys != 'luminance':
      return f_ref, None
    return f_ref, self.source_encoder(self.init_conv(
        reference[..., :1].astype(self.dtype)))

  def reference_attention(self, gray, reference) -> list[jax.Array]:
    """PVCAttn's attention weights per pyramid level, (B, Nq, Nk) float32:
    how each position of the gray image spreads over the reference (an
    instrument; train/health reads it)."""
    self._validate(gray, reference)
    f_s = self.source_encoder(self.init_conv(gray.astype(self.dtype)))
    return self.pvc_attention.attention_weights(
        f_s, *self._reference_features(reference))

  def __call__(self, gray, reference=None, *, scale=None, out_size=None):
    """(B,H,W,1) gray [+ (B,Hr,Wr,3) reference] -> (B,Ht,Wt,3) norm. LAB."""
    out_h, out_w = resolve_out_size(gray.shape[1], gray.shape[2], scale,
                                    out_size)
    out = self.cpm(self.features(gray, reference), (out_h, out_w))
    return self.add_luminance_base(out, gray)

  def render_points(self, gray, coords, reference=None):
    """Colours at arbitrary points: coords (B, N, 2), (x, y) in [0, 1]."""
    out = self.cpm.render_points(self.features(gray, reference), coords)
    if not self.config.luminance_residual:
      return out
    base = bicubic.sample_points(gray[..., 0].astype(jnp.float32), coords)
    return out.at[..., 0].add(base)

  def add_luminance_base(self, out, gray):
    """``out`` (B,Ht,Wt,3) from the CPM, plus the bicubic L of ``gray``
    (B,H,W,1) when ``luminance_residual`` is on (unchanged otherwise)."""
    if not self.config.luminance_residual:
      return out
    base = bicubic.resize(gray.astype(jnp.float32), out.shape[1:3])
    return out.at[..., :1].add(base)


def build_generator(model_config: Mapping[str, Any] | GeneratorConfig,
                    rngs: nnx.Rngs, **overrides) -> Generator:
  """A Generator from ``config.model`` (a ConfigDict or dict) or a
  GeneratorConfig, with ``overrides`` of its fields (e.g. ``dtype=``)."""
  config = (model_config if isinstance(model_config, GeneratorConfig) else
            GeneratorConfig.from_mapping(model_config))
  return Generator(dataclasses.replace(config, **overrides), rngs=rngs)


def abstract_generator(model_config: Mapping[str, Any] | GeneratorConfig,
                       **overrides) -> Generator:
  """The Generator of ``model_config`` as shapes only (``nnx.eval_shape``:
  nothing is allocated or computed): ``nnx.split`` of it gives the graphdef
  that ``nnx.merge`` needs and the parameter tree a checkpoint restores
  into. Loading, export and the predictor all start from it."""
  return nnx.eval_shape(
      lambda: build_generator(model_config, nnx.Rngs(0), **overrides))


def apply_generator(graphdef, params, gray, reference=None, *, out_size):
  """Pure function form for ``jax.jit``: (graphdef, params, inputs) -> LAB."""
  return nnx.merge(graphdef, params)(gray, reference, out_size=out_size)
