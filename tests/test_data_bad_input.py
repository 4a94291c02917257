"""Bad input: each case gives a clear error or a counted, logged skip; never a wrong label.

Everything here is built in tmp_path from small synthetic images.
"""
import io
import json
import logging

import ml_collections
import numpy as np
import pytest
from PIL import Image

from piggyjax import data
from piggyjax.data import records, voc

RNG = np.random.default_rng(0)


def photo(h=32, w=40):
  return RNG.integers(0, 255, (h, w, 3), dtype=np.uint8)


def truncated(array, fmt):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, fmt)
  return buf.getvalue()[: len(buf.getvalue()) // 2]


def palette_png(label, path):
  img = Image.fromarray(label.astype(np.uint8), mode="P")
  img.putpalette(voc.voc_colormap().reshape(-1).tolist())
  img.save(path)


def make_voc(root, cases):
  """cases: id -> (image array or raw bytes or None, mask array or PIL image or None)."""
  base = root / "VOCdevkit" / "VOC2012"
  for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    (base / sub).mkdir(parents=True, exist_ok=True)
  for rid, (image, mask) in cases.items():
    if isinstance(image, bytes):
      (base / "JPEGImages" / f"{rid}.jpg").write_bytes(image)
    elif image is not None:
      Image.fromarray(image).save(base / "JPEGImages" / f"{rid}.jpg", quality=95)
    if isinstance(mask, Image.Image):
      mask.save(base / "SegmentationClass" / f"{rid}.png")
    elif mask is not None:
      palette_png(mask, base / "SegmentationClass" / f"{rid}.png")
  (base / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(cases) + "\n")
  return root / "VOCdevkit"


def label(h=32, w=40):
  out = np.zeros((h, w), np.uint8)
  out[h // 4:h * 5 // 8, w // 4:w * 3 // 4] = 12
  out[h * 5 // 8, :] = 255
  return out


def test_missing_directories_name_the_path_and_the_flag(tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(FileNotFoundError, match=r"nope.*voc_dir"):
    data.VocSegmentation(missing)
  with pytest.raises(FileNotFoundError, match=r"nope.*coco_dir"):
    data.CocoPanopticDir(missing)
  with pytest.raises(FileNotFoundError, match=r"nope.*image_dir"):
    data.ImageFolder(missing)
  cfg = ml_collections.ConfigDict({"data": {"source": "dirs", "data_dir": str(missing)}})
  with pytest.raises(FileNotFoundError, match=r"nope.*voc_dir"):
    data.make_source("seg_voc", "train", cfg)
  with pytest.raises(FileNotFoundError, match="--data_dir"):
    data.make_source("seg_coco", "train", ml_collections.ConfigDict({"data": {"source": "dirs"}}))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="empty"):
    data.ImageFolder(tmp_path / "empty")


def test_voc_bad_records_are_counted_skips(tmp_path, caplog):
  img = photo()
  wrong_values = label()
  wrong_values[0, 0] = 30
  rgb_mask = Image.fromarray(voc.voc_colormap()[label()])  # RGB in the VOC colours: readable
  rgb_bad = np.array(rgb_mask)
  rgb_bad[0, 0] = (1, 2, 3)
  root = make_voc(tmp_path, {
      "good": (img, label()),
      "no_mask": (img, None),
      "no_image": (None, label()),
      "other_size": (img, label(16, 20)),
      "truncated_jpeg": (truncated(img, "JPEG"), label()),
      "truncated_png": (img, None),
      "bad_values": (img, wrong_values),
      "rgb_mask": (img, rgb_mask),
      "rgb_bad": (img, Image.fromarray(rgb_bad)),
  })
  (root / "VOC2012" / "SegmentationClass" / "truncated_png.png").write_bytes(
      truncated(label(), "PNG"))
  with caplog.at_level(logging.WARNING, logger="piggyjax.data"):
    src = data.VocSegmentation(root, "train")
    assert src.ids == ["good", "other_size", "truncated_jpeg", "truncated_png", "bad_values",
                       "rgb_mask", "rgb_bad"]
    assert set(src.skipped) == {"no_mask", "no_image"}
    assert "without its mask" in src.skipped["no_mask"]
    results = {}
    for i, rid in enumerate(src.ids):
      try:
        results[rid] = src[i]
      except data.SkipRecord:
        pass
  assert set(results) == {"good", "rgb_mask"}
  np.testing.assert_array_equal(results["good"]["label"], label())
  np.testing.assert_array_equal(results["rgb_mask"]["label"], label())
  assert "mask is 20x16" in src.skipped["other_size"]
  assert "cannot decode" in src.skipped["truncated_jpeg"]
  assert "cannot decode" in src.skipped["truncated_png"]
  assert "[30]" in src.skipped["bad_values"]
  assert "outside the VOC colormap" in src.skipped["rgb_bad"]
  assert len(src.skipped) == 7
  assert sum("skipping" in r.message for r in caplog.records) == 7  # each logged once
  batch = list(data.batches(src, batch_size=4, image_size=16, train=False, seed=0, shard_index=0,
                            shard_count=1))
  assert sum(int(b["valid"].sum()) for b in batch) == 2


def test_voc_ids_cannot_leave_the_devkit(tmp_path):
  root = make_voc(tmp_path, {"good": (photo(), label())})
  (root / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt").write_text("good\n../../../etc/passwd\n")
  with pytest.raises(ValueError, match="leaves the data directory"):
    data.VocSegmentation(root, "train")


def make_coco(root, images, annotations, categories=None):
  (root / "val2017").mkdir(parents=True)
  (root / "annotations" / "panoptic_val2017").mkdir(parents=True)
  categories = categories or [{"id": 1, "name": "person", "isthing": 1},
                              {"id": 17, "name": "cat", "isthing": 1},
                              {"id": 184, "name": "tree-merged", "isthing": 0}]
  meta = {"images": images, "annotations": annotations, "categories": categories}
  (root / "annotations" / "panoptic_val2017.json").write_text(json.dumps(meta))
  return root


def id_png(ids):
  ids = np.asarray(ids, np.int64)
  return Image.fromarray(np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8))


def test_coco_bad_records(tmp_path):
  ids = np.zeros((24, 32), np.int64)
  ids[:12] = 70000  # a cat segment (id above 65535 exercises the blue channel)
  ids[12:, :16] = 300  # tree
  ids[12:, 16:] = 5  # an id that is in no segments_info: must become void
  segs = [{"id": 70000, "category_id": 17}, {"id": 300, "category_id": 184}]
  names = ["ok", "no_ann", "no_png", "other_size", "truncated", "unknown_cat", "gray"]
  images = [{"id": k, "file_name": f"{n}.jpg"} for k, n in enumerate(names)]
  anns = [{"image_id": k, "file_name": f"{n}.png", "segments_info": segs}
          for k, n in enumerate(names) if n != "no_ann"]
  anns[[a["file_name"] for a in anns].index("unknown_cat.png")]["segments_info"] = [
      {"id": 300, "category_id": 99}]
  root = make_coco(tmp_path, images, anns)
  for n in names:
    if n == "truncated":
      (root / "val2017" / "truncated.jpg").write_bytes(truncated(photo(24, 32), "JPEG"))
    elif n == "gray":
      Image.fromarray(photo(24, 32)[..., 0]).save(root / "val2017" / "gray.jpg")
    else:
      Image.fromarray(photo(24, 32)).save(root / "val2017" / f"{n}.jpg")
    if n != "no_png":
      id_png(ids if n != "other_size" else ids[:12]).save(
          root / "annotations" / "panoptic_val2017" / f"{n}.png")
  src = data.CocoPanopticDir(root, "val2017")
  assert set(src.skipped) == {"no_ann", "no_png", "unknown_cat"}
  assert [r[0] for r in src._records] == ["ok", "other_size", "truncated", "gray"]
  ok = src[0]
  assert np.all(ok["label"][:12] == 1) and np.all(ok["label"][12:, :16] == 2)  # cat, tree
  assert np.all(ok["label"][12:, 16:] == 255)
  for i in (1, 2):
    with pytest.raises(data.SkipRecord):
      src[i]
  assert "24" in src.skipped["other_size"] and "cannot decode" in src.skipped["truncated"]
  gray = src[3]["image"]
  assert gray.shape == (24, 32, 3) and np.array_equal(gray[..., 0], gray[..., 2])
  things = data.CocoPanopticDir(root, "val2017", things_only=True)
  assert things.class_names == ("background", "person", "cat")
  assert np.all(things[0]["label"][:12] == 2) and np.all(things[0]["label"][12:, :16] == 0)


@pytest.mark.parametrize("file_name", ["../escape.jpg", "/etc/passwd", "a/../../b.jpg"])
def test_coco_paths_cannot_escape(tmp_path, file_name):
  root = make_coco(tmp_path, [{"id": 1, "file_name": file_name}],
                   [{"image_id": 1, "file_name": "x.png", "segments_info": []}])
  with pytest.raises(ValueError, match="leaves the data directory"):
    data.CocoPanopticDir(root, "val2017")


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "1", "CMYK"])
def test_image_modes_become_rgb_uint8(tmp_path, mode):
  gray = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (32, 1))
  if mode == "I;16":
    img = Image.fromarray(gray.astype(np.uint16) * 257)
  elif mode in ("LA", "RGBA"):
    img = Image.fromarray(np.dstack([gray] * (1 if mode == "LA" else 3) + [np.full_like(gray, 255)]))
  elif mode == "P":
    img = Image.fromarray(np.dstack([gray] * 3)).convert("P", palette=Image.ADAPTIVE, colors=256)
  elif mode == "1":
    img = Image.fromarray(gray).convert("1", dither=Image.Dither.NONE)
  else:
    img = Image.fromarray(gray).convert(mode)
  assert img.mode == mode
  ext = "jpg" if mode == "CMYK" else "png"
  img.save(tmp_path / f"x.{ext}")
  src = data.ImageFolder(tmp_path)
  out = src[0]["image"]
  assert out.dtype == np.uint8 and out.shape == (32, 40, 3)
  expected = np.dstack([gray] * 3)
  if mode == "1":
    expected = np.where(expected >= 128, 255, 0)
  tolerance = {"P": 8, "CMYK": 6, "1": 0}.get(mode, 0)
  assert np.abs(out.astype(int) - expected).max() <= tolerance


def test_alpha_composites_over_white():
  rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
  assert np.all(records.to_rgb(Image.fromarray(rgba)) == 255)


def test_image_folder_recursive_and_truncated(tmp_path):
  (tmp_path / "a" / "b").mkdir(parents=True)
  Image.fromarray(photo()).save(tmp_path / "a" / "one.jpg")
  Image.fromarray(photo()).save(tmp_path / "a" / "b" / "two.PNG")
  (tmp_path / "a" / "b" / "bad.jpg").write_bytes(truncated(photo(), "JPEG"))
  (tmp_path / "notes.txt").write_text("not an image")
  src = data.ImageFolder(tmp_path)
  assert [str(p.relative_to(tmp_path)) for p in src.paths] == ["a/one.jpg", "a/b/bad.jpg", "a/b/two.PNG"]
  with pytest.raises(data.SkipRecord):
    src[1]
  assert list(src.skipped) == ["a/b/bad.jpg"]
  rows = next(data.batches(src, batch_size=4, image_size=16, train=True, seed=0, shard_index=0,
                           shard_count=1, num_epochs=2))
  assert rows["image"].shape == (4, 16, 16, 3)


def test_style_image_missing_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv("PIGGYJAX_CACHE", str(tmp_path / "cache"))
  with pytest.raises(FileNotFoundError, match=r"--config.style_image=.*--data_dir"):
    data.find_style_image("starry_night", data_dir=tmp_path, download=False)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    data.find_style_image("starry_night", path=tmp_path / "missing.jpg")
  (tmp_path / "styles").mkdir()
  (tmp_path / "styles" / "starry_night.jpg").write_bytes(truncated(photo(), "JPEG"))
  with pytest.raises(ValueError, match="cannot be read"):
    data.find_style_image("starry_night", data_dir=tmp_path, download=False)
