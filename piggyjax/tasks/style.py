"""Fast style transfer (Johnson, Alahi & Fei-Fei 2016): the perceptual loss on VGG-16.

With y the stylised image, c the content image, s the painting and F_l the VGG-16 activations
(B, H, W, C) at relu1_2 / relu2_2 / relu3_3 / relu4_3:
  content = mean((F_relu2_2(y) - F_relu2_2(c))^2)
  style   = sum_l mean((G_l(y) - G_l(s))^2),   G_l = F_l^T F_l / (C H W)   (a C x C Gram)
  tv      = mean((y[i+1, j] - y[i, j])^2) + mean((y[i, j+1] - y[i, j])^2)   on y in [0, 1]
  total   = content_weight * content + style_weight * style + tv_weight * tv
Each term is per image, then averaged over valid rows. Metrics report the *weighted* terms (they
add up to total) and SSIM(stylised, content) on 0-255 RGB.

Output: y = sigmoid(outputs_BHW3). Sigmoid keeps y in [0, 1] with a gradient everywhere (a clip
would cut it) and starts a zero head at mid-gray; Johnson's net ends in a scaled tanh, the same
family.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from piggyjax.models import vgg
from piggyjax.tasks import imaging, paintings
from piggyjax.tasks.base import (Batch, Consts, Metrics, Task, add_rows, finalize_means,
                                 summed_metrics)

# Defaults. Adam is invariant to the loss's overall scale, so only the ratios matter.
# style/content = 1e5: pytorch/examples' fast_neural_style uses 1e10/1e5 with the same
# torchvision VGG-16, the same [0,1]+ImageNet normalisation and the same mean-squared terms.
# tv = 2: Johnson et al.'s 1e-6 on half the summed squared differences of 0-255 pixels is
# ~6400 x our tv at 256x256, against a content term ~3300 x ours (caffe VGG features are
# ~255 * 0.226 = 58x larger, squared), so ~2 per unit of content weight.
DEFAULT_WEIGHTS = {"content_weight": 1.0, "style_weight": 1e5, "tv_weight": 2.0}
# Johnson et al. scale the painting so its longer side is 256 before taking its Grams.
DEFAULT_STYLE_SIZE = 256
TERMS = ("content_loss", "style_loss", "tv_loss")


def gram(f_BHWC: jax.Array) -> jax.Array:
  b, h, w, c = f_BHWC.shape
  f = f_BHWC.reshape(b, h * w, c).astype(jnp.float32)
  # HIGHEST: Grams are averages of many products; bf16 passes would blur the targets' detail.
  g = jnp.einsum("bnc,bnd->bcd", f, f, precision=jax.lax.Precision.HIGHEST)
  return g / (c * h * w)


def total_variation(y_BHW3: jax.Array) -> jax.Array:
  dy = jnp.mean((y_BHW3[:, 1:] - y_BHW3[:, :-1]) ** 2, axis=(1, 2, 3))
  dx = jnp.mean((y_BHW3[:, :, 1:] - y_BHW3[:, :, :-1]) ** 2, axis=(1, 2, 3))
  return dy + dx


def resize_longer_side(image_HW3: np.ndarray, size: int | None) -> np.ndarray:
  if not size:
    return image_HW3
  from PIL import Image  # host-only, once per load
  h, w = image_HW3.shape[:2]
  scale = size / max(h, w)
  new = (max(1, round(w * scale)), max(1, round(h * scale)))
  return np.asarray(Image.fromarray(image_HW3).resize(new, Image.BICUBIC))


def make_consts(vgg_params: Mapping[str, Any], style_HW3: np.ndarray,
                style_size: int | None = DEFAULT_STYLE_SIZE,
                weights: Mapping[str, float] | None = None) -> dict:
  """{'vgg': params, 'grams': [C x C per style layer], 'weights': {name: f32 scalar}}."""
  w = {**DEFAULT_WEIGHTS, **(weights or {})}
  needed = max(vgg.LAYERS[n] for n in vgg.STYLE_LAYERS)   # Conv_10..12 are never evaluated
  convs = {k: v for k, v in vgg_params[vgg.SCOPE].items() if int(k.split("_")[1]) <= needed}
  params = jax.tree.map(jnp.asarray, {vgg.SCOPE: convs})
  style = resize_longer_side(np.asarray(style_HW3, np.uint8), style_size)
  feats = vgg.features(params, jnp.asarray(style, jnp.float32)[None] / 255.0)
  grams = [gram(feats[n])[0] for n in vgg.STYLE_LAYERS]
  return {"vgg": params, "grams": grams,
          "weights": {k: jnp.asarray(w[k], jnp.float32) for k in DEFAULT_WEIGHTS}}


def _field(cfg: Any, name: str, default: Any = None) -> Any:
  """cfg.name if the (ConfigDict/dict/object) has it and it is not None, else default."""
  if cfg is None:
    return default
  value = cfg.get(name, None) if hasattr(cfg, "get") else getattr(cfg, name, None)
  return default if value is None else value


def per_row_terms(consts: Consts, y_BHW3: jax.Array, content_BHW3: jax.Array) -> dict:
  fy = vgg.features(consts["vgg"], y_BHW3)
  fc = vgg.features(consts["vgg"], content_BHW3, layers=(vgg.CONTENT_LAYER,))
  wts = consts["weights"]
  content = jnp.mean((fy[vgg.CONTENT_LAYER] - fc[vgg.CONTENT_LAYER]) ** 2, axis=(1, 2, 3))
  style = sum(jnp.mean((gram(fy[n]) - g[None]) ** 2, axis=(1, 2))
              for n, g in zip(vgg.STYLE_LAYERS, consts["grams"]))
  terms = {"content_loss": wts["content_weight"] * content,
           "style_loss": wts["style_weight"] * style,
           "tv_loss": wts["tv_weight"] * total_variation(y_BHW3)}
  terms["total_loss"] = sum(terms[t] for t in TERMS)
  return terms


@dataclasses.dataclass(frozen=True)
class Style(Task):
  """``style_name`` is what ``paintings.find_style_image`` looks up (e.g. 'starry_night');
  ``style_path`` a painting file for this task (``config.style_image`` still wins)."""
  kind: str = "style"
  head_channels: int = 3
  primary_metric: str = "total_loss"
  higher_is_better: bool = False
  zero_head_init: ClassVar[bool] = True   # sigmoid(0): starts at mid-gray
  style_name: str = "starry_night"
  style_path: str = ""

  def load(self, config: Any) -> Consts:
    """Reads config.style.{content_weight, style_weight, tv_weight, style_size, vgg_weights},
    config.style_image (a path, or a mapping task name / style name -> path) and
    config.data.data_dir; every one may be absent."""
    style_cfg = _field(config, "style")
    path = _field(config, "style_image")
    if path is not None and not isinstance(path, (str, bytes)) and hasattr(path, "get"):
      path = path.get(self.name, None) or path.get(self.style_name, None)
    data_dir = _field(_field(config, "data"), "data_dir")
    try:
      painting = paintings.find_style_image(self.style_name, path=path or self.style_path or None,
                                            data_dir=data_dir)
    except FileNotFoundError:
      if _field(_field(config, "data"), "source") != "quickstart":
        raise
      from absl import logging
      logging.warning("%s: painting %r not found; the offline quickstart uses scikit-image's "
                      "%r instead. Pass --data_dir=DIR with DIR/styles/%s.jpg for the real one.",
                      self.name, self.style_name, paintings.STANDINS.get(self.style_name), self.style_name)
      painting = paintings.standin_style(self.style_name)
    weights = {k: float(_field(style_cfg, k, d)) for k, d in DEFAULT_WEIGHTS.items()}
    return make_consts(vgg.load_params(_field(style_cfg, "vgg_weights")), painting,
                       int(_field(style_cfg, "style_size", DEFAULT_STYLE_SIZE)), weights)

  def loss(self, consts: Consts, outputs_BHWK: jax.Array, batch: Batch):
    y = jax.nn.sigmoid(outputs_BHWK.astype(jnp.float32))
    terms = per_row_terms(consts, y, self.model_input(batch))
    valid = imaging.valid_rows(batch, y.shape[0])
    means = {k: imaging.masked_mean(v, valid) for k, v in terms.items()}
    return means["total_loss"], means

  def metrics_init(self) -> Metrics:
    return summed_metrics(("ssim",) + TERMS + ("total_loss", "style_loss_photo"))

  def metrics_update(self, consts: Consts, state: Metrics, outputs_BHWK: jax.Array,
                     batch: Batch) -> Metrics:
    y = jax.nn.sigmoid(outputs_BHWK.astype(jnp.float32))
    content = self.model_input(batch)
    per_row = per_row_terms(consts, y, content)
    image = jnp.asarray(batch["image"]).astype(jnp.float32)
    per_row["ssim"] = imaging.ssim(jnp.round(y * 255.0), image, max_val=255.0)
    # The unchanged photo's style term: how far its Grams are from the painting's to begin with.
    per_row["style_loss_photo"] = per_row_terms(consts, content, content)["style_loss"]
    return add_rows(state, per_row, imaging.valid_rows(batch, y.shape[0]))

  def metrics_finalize(self, state: Metrics) -> dict[str, float]:
    out = finalize_means(jax.device_get(state))
    # style_closed_pct: the share of the photo's Gram distance to the painting that the output
    # closed (100 = the painting's Grams exactly, 0 = no more painterly than the photo).
    if out.get("style_loss_photo"):
      out["style_closed_pct"] = 100.0 * (1.0 - out["style_loss"] / out["style_loss_photo"])
    return out

  def to_image(self, outputs_HWK: jax.Array, image_HW3: np.ndarray) -> np.ndarray:
    return imaging.to_uint8(jax.nn.sigmoid(jnp.asarray(outputs_HWK, jnp.float32)))
