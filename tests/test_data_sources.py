"""Sources on real data: ../shared/data (VOC and COCO samples, the two paintings), and quickstart.

The shared-data tests read /work/shared/data, located as ``<repo>/../shared/data``; they fail
when that folder is absent (a clone outside this workspace).
"""
import json
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from PIL import Image

from piggyjax import data
from piggyjax.data import coco, quickstart
from piggyjax.tasks import paintings as styles

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
VOC = SHARED / "voc_samples" / "VOCdevkit"
COCO = SHARED / "coco_samples"
needs_shared = pytest.mark.usefixtures("shared_data")


def config(**fields):
  return ml_collections.ConfigDict({"data": dict(fields)})


@needs_shared
@pytest.mark.parametrize("split, rid, yx, cls", [
    ("train", "dl3p_000000", (256, 256), "aeroplane"),
    ("train", "2011_000003", (240, 280), "person"),
    ("train", "2011_000025", (160, 200), "bus"),
    ("train", "2011_000025", (200, 440), "car"),
])
def test_voc_known_pixel(split, rid, yx, cls):
  src = data.VocSegmentation(VOC, split)
  example = src[src.ids.index(rid)]
  assert example["image"].dtype == np.uint8 and example["image"].shape[2] == 3
  assert example["label"].shape == example["image"].shape[:2]
  assert data.VOC_CLASSES[example["label"][yx]] == cls
  assert set(np.unique(example["label"])) <= set(range(21)) | {255}


@needs_shared
def test_voc_splits_from_lists():
  lists = VOC / "VOC2012" / "ImageSets" / "Segmentation"
  for split in ("train", "val"):
    assert data.VocSegmentation(VOC, split).ids == lists.joinpath(f"{split}.txt").read_text().split()


@needs_shared
def test_coco_panoptic_segment_maps_to_its_category():
  meta = json.loads((COCO / "annotations" / "panoptic_val2017.json").read_text())
  order = [c["id"] for c in sorted(meta["categories"], key=lambda c: c["id"])]
  ann = next(a for a in meta["annotations"] if a["image_id"] == 39769)
  png = np.asarray(Image.open(COCO / "annotations" / "panoptic_val2017" / ann["file_name"]), np.int64)
  ids = png[..., 0] + 256 * png[..., 1] + 65536 * png[..., 2]

  src = data.CocoPanopticDir(COCO, "val2017")
  label = src[[r[0] for r in src._records].index("000000039769")]["label"]
  for seg in ann["segments_info"]:  # every pixel of every segment carries its category's index
    assert np.all(label[ids == seg["id"]] == order.index(seg["category_id"]))
  assert np.all(label[ids == 0] == 255)
  # known pixels, read off the picture: a cat's body and the couch
  assert src.class_names[label[197, 494]] == "cat" and label[197, 494] == 15
  assert src.class_names[label[237, 320]] == "couch"

  things = data.CocoPanopticDir(COCO, "val2017", things_only=True)
  tlabel = things[[r[0] for r in things._records].index("000000039769")]["label"]
  assert things.num_classes == 81 and things.class_names[tlabel[197, 494]] == "cat"
  assert tlabel[197, 494] == 16
  blanket = next(s for s in ann["segments_info"] if s["category_id"] == 93)  # stuff -> background
  assert np.all(tlabel[ids == blanket["id"]] == 0)


@needs_shared
def test_builtin_coco_names_match_the_official_categories():
  cats = json.loads((COCO / "annotations" / "panoptic_coco_categories.json").read_text())
  cats = sorted(cats, key=lambda c: c["id"])
  assert coco.COCO_PANOPTIC_NAMES == tuple(c["name"] for c in cats)
  assert [bool(c["isthing"]) for c in cats] == [k < coco.NUM_THINGS for k in range(133)]


@needs_shared
def test_make_source_samples_layout():
  cfg = config(source="samples", data_dir=str(SHARED))
  assert isinstance(data.make_source("seg_voc", "eval", cfg), data.VocSegmentation)
  seg = data.make_source("seg_coco", "train", cfg)
  assert isinstance(seg, data.CocoPanopticDir) and len(seg) == 3 and seg.num_classes == 133
  content = data.make_source("style_scream", "train", cfg)
  assert isinstance(content, data.ImageFolder) and len(content) == 3
  assert "label" not in content[0] and content[0]["image"].ndim == 3


@needs_shared
def test_style_images_from_data_dir_and_explicit_path():
  starry = data.find_style_image("starry_night", data_dir=SHARED, download=False)
  assert starry.shape == (640, 1024, 3) and starry.dtype == np.uint8
  scream = data.find_style_image("scream", path=SHARED / "styles" / "the_scream.jpg")
  assert scream.shape == (1528, 1200, 3)
  for name, digest in styles.STYLES.items():  # the pins are the shared files' checksums
    assert styles.sha256(SHARED / "styles" / f"{name}.jpg") == digest


@needs_shared
def test_style_download_is_checksum_pinned(tmp_path, monkeypatch):
  """No network: urlopen is replaced by a fake serving bytes from disk."""
  monkeypatch.setenv("PIGGYJAX_CACHE", str(tmp_path))
  good = (SHARED / "styles" / "the_scream.jpg").read_bytes()

  class Response:
    def __init__(self, payload): self.payload = payload
    def __enter__(self): return self
    def __exit__(self, *a): return False
    def read(self): return self.payload

  monkeypatch.setattr(styles.urllib.request, "urlopen", lambda url, timeout: Response(good[:-10]))
  with pytest.raises(FileNotFoundError, match="--config.style_image"):
    data.find_style_image("the_scream")
  assert not (tmp_path / "styles" / "the_scream.jpg").exists()  # a wrong checksum is never cached
  monkeypatch.setattr(styles.urllib.request, "urlopen", lambda url, timeout: Response(good))
  assert data.find_style_image("the_scream").shape == (1528, 1200, 3)
  assert (tmp_path / "styles" / "the_scream.jpg").read_bytes() == good  # and now it is cached


def test_quickstart_deterministic_and_two_label_sets():
  a, b = quickstart.Quickstart("seg_coco"), quickstart.Quickstart("seg_coco")
  for i in (0, 7, 133):
    assert a[i]["id"] == b[i]["id"]
    np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
    np.testing.assert_array_equal(a[i]["label"], b[i]["label"])
  voc = quickstart.Quickstart("seg_voc")
  assert a.class_names != voc.class_names and (a.num_classes, voc.num_classes) == (5, 6)
  assert any(not np.array_equal(a[i]["label"], voc[i]["label"]) for i in range(8))
  assert not np.array_equal(quickstart.Quickstart("seg_coco", "eval")[0]["label"], a[0]["label"])
  assert {tuple(np.unique(a[i]["label"])) for i in range(40)} != {(0,)}


def test_quickstart_shapes_are_drawn_into_the_image():
  plain = quickstart.Quickstart("images")
  for kind in ("seg_coco", "seg_voc"):
    src = quickstart.Quickstart(kind)
    for i in range(6):
      ex, photo = src[i], src.crop(i)[1]  # the same crop before the drawing: only that differs
      if kind == "seg_coco":  # and seg_coco shows the very crop colorization and style read
        np.testing.assert_array_equal(photo, plain[i]["image"])
      inside = ex["label"] > 0
      np.testing.assert_array_equal(ex["image"][~inside], photo[~inside])
      if inside.any():
        assert np.abs(ex["image"][inside].astype(int) - photo[inside]).mean() > 20


def test_quickstart_voc_photos_are_not_cocos_and_eval_photos_are_held_out():
  # As in the paper, VOC's photos are not the ones the COCO tasks (seg, colour, style) read.
  def names(kind, split):
    src = quickstart.Quickstart(kind, split)
    return {src[i]["id"].split("-", 2)[2] for i in range(30)}
  coco = {}
  for split in ("train", "eval"):
    voc, coco[split], content = names("seg_voc", split), names("seg_coco", split), names("images", split)
    assert voc == set(quickstart.VOC_PHOTOS) and coco[split] == content
    assert not voc & coco[split]
  # ... and the COCO tasks are scored on photos none of them trains on (seven in all).
  assert coco["eval"] == set(quickstart.EVAL_PHOTOS) and len(coco["train"]) == 5
  assert not coco["train"] & coco["eval"]


def test_quickstart_colour_classes_are_visible():
  src = quickstart.Quickstart("seg_coco")
  for i in range(10):
    ex = src[i]
    for cls in range(1, 5):
      m = ex["label"] == cls
      if m.sum() > 50:  # the class colour's dominant channel leads in the painted pixels
        mean = ex["image"][m].mean(0)
        target = quickstart.COLOURS[cls]
        assert np.argmax(mean) == np.argmax(target) or cls == 4 and mean[2] < min(mean[:2])


def test_make_source_quickstart_is_the_default():
  cfg = config(quickstart_train_examples=8, quickstart_image_size=64)
  for task, k in (("seg_coco", 5), ("seg_voc", 6)):
    src = data.make_source(task, "train", cfg)
    assert isinstance(src, data.Quickstart) and len(src) == 8 and src.num_classes == k
    b = next(data.batches(src, batch_size=4, image_size=32, train=True, seed=0, shard_index=0,
                          shard_count=1))
    assert b["label"].shape == (4, 32, 32) and 0 <= b["label"].min() and b["label"].max() < k
  content = data.make_source("colorize_coco", "eval", cfg)
  assert not content.has_labels and "label" not in content[0] and len(content) == 64
  with pytest.raises(ValueError, match="one of"):
    data.make_source("seg_voc", "train", config(source="nowhere"))


def test_quickstart_without_voc_photos_says_what_to_install(monkeypatch):
  coco_only = [(n, p) for n, p in quickstart.load_photos() if n not in quickstart.VOC_PHOTOS]
  monkeypatch.setattr(quickstart, "load_photos", lambda: coco_only)
  assert len(quickstart.Quickstart("images")) == 512
  with pytest.raises(FileNotFoundError, match="china, flower, grace_hopper.*reinstall"):
    quickstart.Quickstart("seg_voc")
