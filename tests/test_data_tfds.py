"""COCO panoptic through ``tfds.data_source`` under ``tfds.testing.mock_data`` (no download).

TFDS's coco builder imports TensorFlow, so the test extra installs tensorflow-cpu.
"""
import ml_collections
import numpy as np
import pytest

import tensorflow  # noqa: F401  (the test extra installs tensorflow-cpu)
import tensorflow_datasets as tfds

from piggyjax import data  # noqa: E402


def config(**fields):
  return ml_collections.ConfigDict({"data": {"source": "tfds", **fields}})


def random_records(n):
  """TFDS's random mock records, with each object list cut to one length (the random generator
  draws the lengths of ``id`` and ``label`` independently; real records never differ)."""
  raw = tfds.data_source("coco/2017_panoptic", split="train")
  out = []
  for i in range(n):
    r = dict(raw[i])
    objects = r["panoptic_objects"]
    k = min(len(v) for v in objects.values())
    r["panoptic_objects"] = {key: v[:k] for key, v in objects.items()}
    out.append(r)
  return out


def test_random_mock_data_through_make_source_and_batches():
  """Random mock records: image and panoptic PNG get independent random sizes."""
  with tfds.testing.mock_data(num_examples=6):
    raw_src = data.make_source("seg_coco", "eval", config(on_label_size_mismatch="resize"))
    for i in range(len(raw_src)):
      with pytest.raises(data.SkipRecord):  # inconsistent object lists: every record skipped
        raw_src[i]
    assert len(raw_src.skipped) == 6 and all("ids but" in r for r in raw_src.skipped.values())
    records = random_records(6)
    content = data.make_source("colorize_coco", "train", config())
    assert not content.has_labels and set(content[0]) == {"image", "id"}

  mismatched = {r["image/filename"] for r in records
                if r["image"].shape[:2] != r["panoptic_image"].shape[:2]}
  assert mismatched
  with tfds.testing.mock_data(as_data_source_fn=lambda self, split, *a, **k: records):
    src = data.make_source("seg_coco", "eval", config(on_label_size_mismatch="resize"))
    assert isinstance(src, data.TfdsCocoPanoptic) and len(src) == 6 and src.num_classes == 133
    for i in range(len(src)):
      ex = src[i]
      assert ex["image"].dtype == np.uint8 and ex["image"].shape[2] == 3
      assert ex["label"].shape == ex["image"].shape[:2]
      assert set(np.unique(ex["label"])) <= set(range(133)) | {255}
    batches = list(data.batches(src, batch_size=4, image_size=32, train=False, seed=0,
                                shard_index=0, shard_count=1))
    assert [b["valid"].sum() for b in batches] == [4, 2] and batches[0]["label"].shape == (4, 32, 32)

    strict = data.make_source("seg_coco", "train", config())  # default: size mismatch is a skip
    kept = []
    for i in range(len(strict)):
      try:
        kept.append(strict[i]["id"])
      except data.SkipRecord:
        pass
    assert set(strict.skipped) == mismatched
    assert all("panoptic PNG is" in r for r in strict.skipped.values())
    assert len(kept) == 6 - len(mismatched)


def panoptic_record(ids, objects, h=12, w=16, name="x.jpg"):
  ids = np.asarray(ids, np.int64)
  png = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
  return {"image": np.full((h, w, 3), 7, np.uint8), "image/filename": name, "image/id": 1,
          "panoptic_image": png, "panoptic_image/filename": name.replace(".jpg", ".png"),
          "panoptic_objects": {"id": np.array([o[0] for o in objects], np.int64),
                               "label": np.array([o[1] for o in objects], np.int64),
                               "area": np.zeros(len(objects), np.int64),
                               "bbox": np.zeros((len(objects), 4), np.float32),
                               "is_crowd": np.zeros(len(objects), bool)}}


def test_controlled_records_map_segments_to_categories():
  ids = np.zeros((12, 16), np.int64)
  ids[:, :8] = 66000  # TFDS label 15 = cat (a thing)
  ids[:6, 8:] = 42  # TFDS label 119 = a stuff class
  records = [panoptic_record(ids, [(66000, 15), (42, 119)], name="a.jpg"),
             panoptic_record(ids[:6], [(66000, 15)], name="small_png.jpg")]

  def as_data_source(self, split, *args, **kwargs):
    return records

  with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    src = data.TfdsCocoPanoptic("eval")
    label = src[0]["label"]
    assert np.all(label[:, :8] == 15) and np.all(label[:6, 8:] == 119)
    assert np.all(label[6:, 8:] == 255)  # id 0: unlabeled -> void
    assert data.COCO_PANOPTIC_NAMES[15] == "cat"
    with pytest.raises(data.SkipRecord):
      src[1]
    assert list(src.skipped) == ["small_png.jpg"]

    things = data.TfdsCocoPanoptic("eval", things_only=True, on_size_mismatch="resize")
    assert things.num_classes == 81 and things.class_names[16] == "cat"
    label = things[0]["label"]
    assert np.all(label[:, :8] == 16) and np.all(label[:6, 8:] == 0) and np.all(label[6:, 8:] == 255)
    resized = things[1]["label"]  # 6x16 PNG of cat ids, nearest-resized to the 12x16 image
    assert resized.shape == (12, 16) and np.all(resized[:, :8] == 16)
