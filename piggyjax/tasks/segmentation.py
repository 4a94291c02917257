"""Semantic segmentation: per-pixel softmax cross-entropy, mIoU from a confusion matrix.

Labels are int32 BHW class ids in [0, K); 255 (VOC's void border, COCO's unlabeled) and any
other id outside [0, K) are ignored by both the loss and the metrics, as are padded rows.

mIoU convention: IoU_c = TP_c / (TP_c + FP_c + FN_c) over the whole evaluation set (one
confusion matrix, not a mean of per-image scores). A class absent from both the ground truth
and the predictions has 0/0 and is left out of the mean; a class predicted but never present
(or present but never predicted) has IoU 0 and counts. This is the VOC devkit's and mmseg's rule.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from piggyjax.colormap import voc_colormap
from piggyjax.tasks import imaging
from piggyjax.tasks.base import Batch, Consts, Metrics, Task

IGNORE = 255



def _valid_pixels(labels_BHW: jax.Array, valid_B: jax.Array, k: int) -> jax.Array:
  return (labels_BHW >= 0) & (labels_BHW < k) & valid_B[:, None, None]


def cross_entropy(logits_BHWK: jax.Array, labels_BHW: jax.Array,
                  valid_B: jax.Array) -> jax.Array:
  """Mean over the counted pixels of all valid rows (pixel-weighted, like torch's ignore_index)."""
  k = logits_BHWK.shape[-1]
  mask = _valid_pixels(labels_BHW, valid_B, k)
  safe = jnp.where(mask, labels_BHW, 0)   # ignored pixels need an in-range id; their weight is 0
  ce = optax.softmax_cross_entropy_with_integer_labels(logits_BHWK.astype(jnp.float32), safe)
  w = mask.astype(jnp.float32)
  return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)


def confusion(pred_BHW: jax.Array, labels_BHW: jax.Array, valid_B: jax.Array,
              k: int) -> jax.Array:
  """K x K int32 counts, rows = ground truth, columns = prediction.

  int32 holds 2.1e9 pixels per cell: ~8,000 images at 512x512 all of one class; enough for an
  evaluation set, and int64 would need jax_enable_x64.
  """
  mask = _valid_pixels(labels_BHW, valid_B, k)
  idx = jnp.where(mask, labels_BHW * k + pred_BHW, 0).reshape(-1)
  counts = jnp.zeros((k * k,), jnp.int32).at[idx].add(mask.reshape(-1).astype(jnp.int32))
  return counts.reshape(k, k)


def miou_from_confusion(conf_KK: np.ndarray) -> dict[str, float]:
  """miou and pixel_acc, both in %; NaN when no pixel was counted."""
  conf = np.asarray(conf_KK, np.int64)
  tp = np.diag(conf).astype(np.float64)
  union = conf.sum(0) + conf.sum(1) - tp
  present = union > 0
  total = conf.sum()
  miou = 100.0 * float(np.mean(tp[present] / union[present])) if present.any() else float("nan")
  acc = 100.0 * float(tp.sum() / total) if total else float("nan")
  return {"miou": miou, "pixel_acc": acc}


def iou_per_class(conf_KK: np.ndarray) -> list[float | None]:
  """IoU_c in % per class; None where the class is absent from truth and predictions alike."""
  conf = np.asarray(conf_KK, np.int64)
  tp = np.diag(conf).astype(np.float64)
  union = conf.sum(0) + conf.sum(1) - tp
  return [100.0 * float(t / u) if u > 0 else None for t, u in zip(tp, union)]


@dataclasses.dataclass(frozen=True)
class Segmentation(Task):
  """K-way segmentation; ``head_channels`` is the number of classes, ``class_names`` their
  names (optional; per-class IoU is keyed by them when given)."""
  kind: str = "segmentation"
  head_channels: int = 21
  primary_metric: str = "miou"
  higher_is_better: bool = True
  class_names: tuple[str, ...] = ()

  def loss(self, consts: Consts, outputs_BHWK: jax.Array, batch: Batch):
    labels = jnp.asarray(batch["label"]).astype(jnp.int32)
    ce = cross_entropy(outputs_BHWK, labels, imaging.valid_rows(batch, labels.shape[0]))
    return ce, {"ce": ce}

  def metrics_init(self) -> Metrics:
    k = self.head_channels
    return {"confusion": jnp.zeros((k, k), jnp.int32)}

  def metrics_update(self, consts: Consts, state: Metrics, outputs_BHWK: jax.Array,
                     batch: Batch) -> Metrics:
    labels = jnp.asarray(batch["label"]).astype(jnp.int32)
    pred = jnp.argmax(outputs_BHWK, axis=-1).astype(jnp.int32)
    valid = imaging.valid_rows(batch, labels.shape[0])
    return {"confusion": state["confusion"] + confusion(pred, labels, valid, self.head_channels)}

  def metrics_finalize(self, state: Metrics) -> dict[str, float]:
    return miou_from_confusion(np.asarray(jax.device_get(state["confusion"])))

  def class_iou(self, state: Metrics, names: tuple[str, ...] = ()) -> dict[str, float]:
    """{class name: IoU %} of the classes seen in truth or predictions (the mIoU's terms);
    ``names`` (else ``class_names``) name them, a class without a name is its index."""
    names = tuple(names) or self.class_names
    ious = iou_per_class(np.asarray(jax.device_get(state["confusion"])))
    return {(names[c] if c < len(names) else str(c)): v for c, v in enumerate(ious) if v is not None}

  def to_image(self, outputs_HWK: jax.Array, image_HW3: np.ndarray) -> np.ndarray:
    pred = np.asarray(jnp.argmax(outputs_HWK, axis=-1))
    return voc_colormap(max(256, self.head_channels))[pred]
