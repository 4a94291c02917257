"""Colorization: from the lightness L* of a photo, predict its chroma.

Colour space: the head predicts CIE Lab **ab** (2 channels, scaled by 1/AB_SCALE), and the
picture is Lab(L of the input, predicted ab) -> sRGB. Why ab rather than RGB: the lightness is
given, so predicting it again could only add error; with ab the output's lightness is the
input's exactly and the network spends itself on colour alone (as in Zhang et al. 2016 and
Iizuka et al. 2016). Input: L*/100 in [0, 1], repeated to 3 channels for the shared backbone.
The head is linear (no tanh): a zero-initialised head starts at gray, and ab outside the sRGB
gamut is clipped by the conversion, not squashed in the loss.

Metrics, on the picture a user would see (prediction rounded to uint8): MSE over 0-255 RGB
values and SSIM (data range 255), each per image, then averaged over valid images.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from piggyjax.tasks import imaging
from piggyjax.tasks.base import (Batch, Consts, Metrics, Task, add_rows, finalize_means,
                                 summed_metrics)

# a and b of sRGB colours lie within about [-87, 99] and [-108, 95]: 1/110 keeps targets in [-1, 1].
AB_SCALE = 110.0


def lab_of(image_BHW3: jax.Array) -> jax.Array:
  return imaging.rgb_to_lab(jnp.asarray(image_BHW3).astype(jnp.float32) / 255.0)


def gray_input(image_BHW3: jax.Array) -> jax.Array:
  lightness = lab_of(image_BHW3)[..., :1] / 100.0
  return jnp.repeat(lightness, 3, axis=-1)


def colorize(image_BHW3: jax.Array, outputs_BHW2: jax.Array) -> jax.Array:
  """sRGB in [0, 1] from the image's own L and the predicted ab."""
  lab = jnp.concatenate([lab_of(image_BHW3)[..., :1], outputs_BHW2 * AB_SCALE], axis=-1)
  return imaging.lab_to_rgb(lab)


@dataclasses.dataclass(frozen=True)
class Colorization(Task):
  kind: str = "colorization"
  head_channels: int = 2
  primary_metric: str = "mse"
  higher_is_better: bool = False
  zero_head_init: ClassVar[bool] = True   # ab = 0: starts at gray

  def model_input(self, batch: Batch) -> jax.Array:
    return gray_input(batch["image"])

  def loss(self, consts: Consts, outputs_BHWK: jax.Array, batch: Batch):
    target_BHW2 = lab_of(batch["image"])[..., 1:] / AB_SCALE
    per_row = jnp.mean((outputs_BHWK.astype(jnp.float32) - target_BHW2) ** 2, axis=(1, 2, 3))
    mse_ab = imaging.masked_mean(per_row, imaging.valid_rows(batch, per_row.shape[0]))
    return mse_ab, {"mse_ab": mse_ab}

  def metrics_init(self) -> Metrics:
    return summed_metrics(("mse", "ssim"))

  def metrics_update(self, consts: Consts, state: Metrics, outputs_BHWK: jax.Array,
                     batch: Batch) -> Metrics:
    target = jnp.asarray(batch["image"]).astype(jnp.float32)
    pred = jnp.round(colorize(batch["image"], outputs_BHWK.astype(jnp.float32)) * 255.0)
    per_row = {"mse": jnp.mean((pred - target) ** 2, axis=(1, 2, 3)),
               "ssim": imaging.ssim(pred, target, max_val=255.0)}
    return add_rows(state, per_row, imaging.valid_rows(batch, target.shape[0]))

  def metrics_finalize(self, state: Metrics) -> dict[str, float]:
    return finalize_means(jax.device_get(state))

  def to_image(self, outputs_HWK: jax.Array, image_HW3: np.ndarray) -> np.ndarray:
    rgb = colorize(jnp.asarray(image_HW3)[None], jnp.asarray(outputs_HWK)[None])[0]
    return imaging.to_uint8(rgb)
