"""Image classification: softmax cross-entropy on one label per image; top-1 error (primary),
top-5 error (10 classes or more), per-class accuracy.

The model's output is B x 1 x 1 x K (a 1x1 head over globally pooled features, piggyjax/models/
classifier.py); a dense output (a U-Net's) is averaged over space first, so the task also runs on
a U-Net. Labels are int32 B; a label outside [0, K) (an eval pad row, -1) counts nowhere.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image, ImageDraw

from piggyjax.tasks import imaging
from piggyjax.tasks.base import Batch, Consts, Metrics, Task

TOP5_MIN_CLASSES = 10  # below that, top-5 is nearly always right and says nothing


def logits_of(outputs_BHWK: jax.Array) -> jax.Array:
  return jnp.mean(outputs_BHWK.astype(jnp.float32), axis=(1, 2))


def _counted(labels_B: jax.Array, batch: Batch, k: int) -> jax.Array:
  return imaging.valid_rows(batch, labels_B.shape[0]) & (labels_B >= 0) & (labels_B < k)


@dataclasses.dataclass(frozen=True)
class Classification(Task):
  kind: str = "classification"
  head_channels: int = 10
  primary_metric: str = "top1_error"
  higher_is_better: bool = False
  class_names: tuple[str, ...] = ()
  # A random linear head adds random logits the features must first out-vote; at zero every
  # class starts equally likely (and a mask, which can only remove weights, is not fighting it).
  zero_head_init: ClassVar[bool] = True

  def loss(self, consts: Consts, outputs_BHWK: jax.Array, batch: Batch):
    logits = logits_of(outputs_BHWK)
    labels = jnp.asarray(batch["label"]).astype(jnp.int32).reshape(-1)
    w = _counted(labels, batch, self.head_channels).astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(w > 0, labels, 0))
    ce = jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)
    acc = jnp.sum((jnp.argmax(logits, -1) == labels) * w) / jnp.maximum(jnp.sum(w), 1.0)
    return ce, {"ce": ce, "accuracy": acc}

  def metrics_init(self) -> Metrics:
    k = self.head_channels
    return {"correct_K": jnp.zeros((k,), jnp.float32), "total_K": jnp.zeros((k,), jnp.float32),
            "top5": jnp.zeros((), jnp.float32)}

  def metrics_update(self, consts: Consts, state: Metrics, outputs_BHWK: jax.Array,
                     batch: Batch) -> Metrics:
    k = self.head_channels
    logits = logits_of(outputs_BHWK)
    labels = jnp.asarray(batch["label"]).astype(jnp.int32).reshape(-1)
    w = _counted(labels, batch, k).astype(jnp.float32)
    onehot = jax.nn.one_hot(jnp.where(w > 0, labels, 0), k) * w[:, None]
    hit = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    _, top = jax.lax.top_k(logits, min(5, k))
    in5 = jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)
    return {"correct_K": state["correct_K"] + jnp.sum(onehot * hit[:, None], 0),
            "total_K": state["total_K"] + jnp.sum(onehot, 0),
            "top5": state["top5"] + jnp.sum(in5 * w)}

  def metrics_finalize(self, state: Metrics) -> dict[str, float]:
    correct = np.asarray(jax.device_get(state["correct_K"]), np.float64)
    total = np.asarray(jax.device_get(state["total_K"]), np.float64)
    n = total.sum()
    if not n:
      nan = float("nan")
      return {"top1_error": nan, **({"top5_error": nan} if self.head_channels >= 10 else {}),
              "mean_class_accuracy": nan}
    out = {"top1_error": 100.0 * (1.0 - correct.sum() / n)}
    if self.head_channels >= TOP5_MIN_CLASSES:
      out["top5_error"] = 100.0 * (1.0 - float(jax.device_get(state["top5"])) / n)
    seen = total > 0
    out["mean_class_accuracy"] = 100.0 * float(np.mean(correct[seen] / total[seen]))
    return out

  def class_accuracy(self, state: Metrics, names: tuple[str, ...] = ()) -> dict[str, float]:
    """{class name: accuracy %} over the classes the eval split holds."""
    names = tuple(names) or self.class_names
    correct = np.asarray(jax.device_get(state["correct_K"]), np.float64)
    total = np.asarray(jax.device_get(state["total_K"]), np.float64)
    return {(names[c] if c < len(names) else str(c)): 100.0 * correct[c] / total[c]
            for c in range(len(total)) if total[c] > 0}

  per_class = class_accuracy  # what continual.py records per class, for every kind that has it

  def to_image(self, outputs_HWK: jax.Array, image_HW3: np.ndarray,
               names: tuple[str, ...] = ()) -> np.ndarray:
    """The image with its predicted class written on it."""
    pred = int(np.argmax(np.asarray(logits_of(jnp.asarray(outputs_HWK)[None]))[0]))
    return label_image(image_HW3, self.name_of(pred, names))

  def top(self, outputs_HWK, k: int = 5, names: tuple[str, ...] = ()) -> list[tuple[str, float]]:
    """The ``k`` likeliest classes with their softmax probabilities, named."""
    logits = np.asarray(outputs_HWK, np.float64).reshape(-1, np.shape(outputs_HWK)[-1]).mean(0)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return [(self.name_of(int(c), names), float(p[c])) for c in np.argsort(-p)[:k]]

  def name_of(self, index: int, names: tuple[str, ...] = ()) -> str:
    names = tuple(names) or self.class_names
    return names[index] if 0 <= index < len(names) else str(index)


def label_image(image_HW3: np.ndarray, text: str, colour=(255, 255, 255)) -> np.ndarray:
  """``text`` on a dark band across the image's bottom (PIL's built-in font: no font files)."""
  img = Image.fromarray(np.asarray(image_HW3, np.uint8)).convert("RGB")
  w, h = img.size
  draw = ImageDraw.Draw(img)
  band = max(10, h // 8)
  draw.rectangle((0, h - band, w, h), fill=(0, 0, 0))
  draw.text((2, h - band + 1), text[: max(4, w // 6)], fill=colour)
  return np.asarray(img)
