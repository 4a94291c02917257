"""Segmentation: cross-entropy ignoring 255 and padded rows; mIoU from an accumulated confusion."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from piggyjax import tasks
from piggyjax.tasks import segmentation as seg

K = 5   # class 3 never appears; class 4 is predicted once but never in the ground truth
LABELS = np.array([[[0, 0, 1], [1, 2, 255]],
                   [[2, 2, 255], [0, 1, 1]],
                   [[0, 0, 0], [0, 0, 0]]], np.int32)       # row 2 is padding
PREDS = np.array([[[0, 1, 1], [1, 2, 4]],
                  [[2, 4, 0], [0, 1, 2]],
                  [[1, 1, 1], [1, 1, 1]]], np.int32)
VALID = np.array([True, True, False])
# Worked by hand from the pixel pairs (ground truth, prediction), 255 and row 2 skipped:
#   row 0: (0,0) (0,1) (1,1) (1,1) (2,2);  row 1: (2,2) (2,4) (0,0) (1,1) (1,2)
HAND_CONFUSION = np.array([[2, 1, 0, 0, 0],
                           [0, 3, 1, 0, 0],
                           [0, 0, 2, 0, 1],
                           [0, 0, 0, 0, 0],
                           [0, 0, 0, 0, 0]])
# IoU = TP / (row + column - TP): 0: 2/3, 1: 3/5, 2: 2/4, 3: 0/0 -> left out, 4: 0/1 = 0.
HAND_MIOU = 100 * (2 / 3 + 3 / 5 + 2 / 4 + 0) / 4
HAND_ACC = 100 * 7 / 10


def logits_of(pred_BHW: np.ndarray, k: int = K) -> jax.Array:
  return 10.0 * jax.nn.one_hot(pred_BHW, k)


def test_confusion_and_miou_match_hand_computation():
  task = seg.Segmentation("seg_test", head_channels=K)
  update = jax.jit(task.metrics_update)
  state = task.metrics_init()
  # two batches accumulate on device into one matrix
  for rows in (slice(0, 1), slice(1, 3)):
    batch = {"label": LABELS[rows], "valid": VALID[rows]}
    state = update({}, state, logits_of(PREDS[rows]), batch)
  assert state["confusion"].dtype == jnp.int32
  np.testing.assert_array_equal(np.asarray(state["confusion"]), HAND_CONFUSION)
  out = task.metrics_finalize(state)
  assert out["miou"] == pytest.approx(HAND_MIOU, abs=1e-9)
  assert out["pixel_acc"] == pytest.approx(HAND_ACC, abs=1e-9)
  assert out["miou"] != pytest.approx(100 * (2 / 3 + 3 / 5 + 2 / 4) / 5)  # absent class excluded


def test_miou_edge_cases():
  assert np.isnan(seg.miou_from_confusion(np.zeros((3, 3), np.int64))["miou"])
  assert seg.miou_from_confusion(np.diag([5, 0, 7]))["miou"] == pytest.approx(100.0)


def test_cross_entropy_ignores_255_and_padded_rows():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=LABELS.shape + (K,)).astype(np.float32)
  got = float(seg.cross_entropy(jnp.asarray(logits), jnp.asarray(LABELS), jnp.asarray(VALID)))
  # numpy reference over the counted pixels only
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  keep = (LABELS != 255) & VALID[:, None, None]
  ref = -np.mean(np.take_along_axis(logp, np.where(keep, LABELS, 0)[..., None], -1)[..., 0][keep])
  assert got == pytest.approx(ref, rel=1e-5)
  # scribbling on ignored pixels and on the padded row changes nothing
  scribbled = logits.copy()
  scribbled[~keep] = 100 * rng.normal(size=scribbled[~keep].shape)
  again = float(seg.cross_entropy(jnp.asarray(scribbled), jnp.asarray(LABELS), jnp.asarray(VALID)))
  assert again == pytest.approx(got, rel=1e-6)
  # nothing left to count: 0, not NaN
  all_ignored = jnp.asarray(np.full_like(LABELS, 255))
  assert float(seg.cross_entropy(jnp.asarray(logits), all_ignored, jnp.asarray(VALID))) == 0.0


def test_task_loss_uses_valid_and_reports_ce():
  task = tasks.get("seg_voc")
  labels = np.where(LABELS == 255, 255, LABELS)
  logits = jnp.asarray(np.random.default_rng(1).normal(size=labels.shape + (21,)), jnp.float32)
  loss, aux = jax.jit(task.loss)({}, logits, {"label": labels, "valid": VALID})
  assert float(loss) == pytest.approx(float(aux["ce"]))
  no_valid, _ = task.loss({}, logits, {"label": labels})   # training batches have no 'valid'
  assert float(no_valid) != pytest.approx(float(loss))


def test_palette_picture():
  task = tasks.get("seg_voc")
  pic = task.to_image(logits_of(PREDS[0], 21), np.zeros((2, 3, 3), np.uint8))
  assert pic.dtype == np.uint8 and pic.shape == (2, 3, 3)
  np.testing.assert_array_equal(pic[0, 0], [0, 0, 0])          # background
  np.testing.assert_array_equal(pic[0, 1], [128, 0, 0])        # VOC class 1 (aeroplane)
  np.testing.assert_array_equal(pic[1, 1], [0, 128, 0])        # VOC class 2 (bicycle)
  np.testing.assert_array_equal(seg.voc_colormap()[255], [224, 224, 192])   # VOC's void colour


def test_class_iou_names_the_classes_seen():
  conf = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # class 2 never in truth nor predicted
  task = tasks.Segmentation("seg_three", head_channels=3, class_names=("sky", "road", "car"))
  per = task.class_iou({"confusion": jnp.asarray(conf)})
  assert per == pytest.approx({"sky": 75.0, "road": 200 / 3})
  assert seg.miou_from_confusion(conf)["miou"] == pytest.approx(np.mean(list(per.values())))
  # the reader's names win (the quickstart's stand-in labels), an unnamed class is its index
  assert set(task.class_iou({"confusion": jnp.asarray(conf)}, names=("photo",))) == {"photo", "1"}
  from piggyjax import report
  results = {"tasks": ["seg_three"], "strategies": {"piggyback": {"class_iou": {"seg_three": {
      "after_training": per, "final": {"sky": 50.0, "road": 200 / 3}}}}}}
  assert report.class_iou_table(results, "seg_three") == [
      ["class", "piggyback"], ["sky", "75.0 -> 50.0"], ["road", "66.7"]]
