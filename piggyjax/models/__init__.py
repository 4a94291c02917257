"""Backbones by name: the U-Net presets (trained by a bank's first task) and pretrained ImageNet
networks (the bank's base before any task; every task, the first too, is learned by a strategy).

    cfg = models.config_of(config.model)          # 'medium' -> UNetConfig, 'vgg16' -> ClassifierConfig
    model = models.build(cfg, (("seg_camvid", 11),))
    models.pretrained(cfg)                         # {'params': {'backbone'}} or None
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from piggyjax.models import classifier, unet
from piggyjax.models.classifier import ClassifierConfig
from piggyjax.models.unet import UNetConfig

ModelConfig = UNetConfig | ClassifierConfig
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def preset_names() -> list[str]:
  return sorted(unet.PRESETS) + classifier.names()


def config_of(model: Any) -> ModelConfig:
  """``config.model`` (preset, norm, dtype, weights) -> the backbone's config."""
  name = model.get("preset")
  dtype = DTYPES[model.get("dtype", "float32") or "float32"]
  if name in unet.PRESETS:
    return unet.preset(name, norm=model.get("norm", "batch"), dtype=dtype)
  if name in classifier.names():
    return ClassifierConfig(backbone=name, dtype=dtype, weights=str(model.get("weights") or ""))
  raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(preset_names())}")


def is_pretrained(cfg: ModelConfig) -> bool:
  return isinstance(cfg, ClassifierConfig)


def build(cfg: ModelConfig, heads: Sequence[tuple[str, int]]) -> nn.Module:
  if isinstance(cfg, ClassifierConfig):
    return classifier.Classifier(cfg, tuple(heads))
  return unet.UNet(cfg, tuple(heads))


def init(cfg: ModelConfig, heads: Sequence[tuple[str, int]], rng: int | jax.Array,
         image_size: int = 32) -> dict:
  """Random params (and batch_stats where the net has BatchNorm) for every head."""
  if isinstance(cfg, UNetConfig):
    return unet.init(cfg, heads, rng, image_size)
  if isinstance(rng, int):
    rng = jax.random.key(rng, impl="rbg")
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  model = build(cfg, heads)
  return jax.jit(lambda r: model.init(r, x, None, False))(rng)


def pretrained(cfg: ModelConfig) -> dict | None:
  """The ImageNet weights a pretrained backbone starts every bank with; None for a U-Net."""
  return classifier.pretrained(cfg) if isinstance(cfg, ClassifierConfig) else None


def backbone_features(cfg: ModelConfig, variables: dict, x_BHWC, train) -> jax.Array:
  """What the heads read, from the backbone alone; BatchNorm updates of this call are dropped."""
  if isinstance(cfg, ClassifierConfig):
    return classifier.features(cfg, variables["params"]["backbone"], x_BHWC, bool(train))
  bb = unet.Backbone(cfg)
  v = {"params": variables["params"]["backbone"]}
  if "batch_stats" in variables:
    v["batch_stats"] = variables["batch_stats"]["backbone"]
  if train and "batch_stats" in v:
    feats, _ = bb.apply(v, x_BHWC, train, mutable=["batch_stats"])
    return feats
  return bb.apply(v, x_BHWC, False)


def arch(cfg: ModelConfig) -> dict:
  """What a bank records to refuse a task of another network."""
  if isinstance(cfg, ClassifierConfig):
    return {"backbone": cfg.backbone, "norm": cfg.norm}
  out = {"widths": list(cfg.widths), "norm": cfg.norm}
  return out if cfg.encoder == "unet" else {**out, "encoder": cfg.encoder}  # old banks match


def size_multiple(cfg: ModelConfig) -> int:
  """Input sides must be multiples of this (the U-Net halves them ``depth`` times)."""
  return 2 ** cfg.depth


def parameter_count(tree) -> int:
  return int(sum(np.size(x) for x in jax.tree.leaves(tree)))
