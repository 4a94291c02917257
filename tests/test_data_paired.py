"""Paired folders (images/ + labels/): CamVid from ../shared/data and tiny layouts written here."""
import ml_collections
import numpy as np
import pytest
from PIL import Image

from piggyjax import data, tasks
from piggyjax.data import paired, records

RNG = np.random.default_rng(0)


def write_pair(base, stem, label, image_size=None, mode="L"):
  (base / "images").mkdir(parents=True, exist_ok=True)
  (base / "labels").mkdir(parents=True, exist_ok=True)
  h, w = image_size or label.shape
  Image.fromarray(RNG.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(base / "images" / f"{stem}.jpg")
  if label is not None:
    img = Image.fromarray(label.astype(np.uint8), mode="L")
    if mode == "P":
      img = img.convert("P")
      img.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    img.save(base / "labels" / f"{stem}.png")


def label(h=24, w=32, values=(0, 1, 2)):
  out = np.zeros((h, w), np.uint8)
  for k, v in enumerate(values):
    out[:, k * w // len(values):(k + 1) * w // len(values)] = v
  return out


def camvid_config(root, **data):
  return ml_collections.ConfigDict({"data": {"source": "dirs", "data_dir": str(root), **data}})


def test_camvid_from_shared_data(shared_data):
  cfg = camvid_config(shared_data)
  train, val = data.make_source("seg_camvid", "train", cfg), data.make_source("seg_camvid", "eval", cfg)
  assert (len(train), len(val)) == (367, 101) and not train.skipped
  assert train.num_classes == 11 and train.class_names[0] == "Sky" and val.class_names[10] == "Bicyclist"
  assert tasks.get("seg_camvid").head_channels == 11
  example = train[0]
  raw = np.asarray(Image.open(shared_data / "camvid/train/labels" / f"{example['id']}.png"))
  assert example["image"].shape == (360, 480, 3) and example["label"].shape == (360, 480)
  # void 11 became the pipeline's ignore value; every class pixel kept its value
  assert (raw == 11).any() and np.array_equal(example["label"][raw == 11], np.full((raw == 11).sum(), 255))
  assert np.array_equal(example["label"][raw != 11], raw[raw != 11])
  batch = next(data.batches(val, batch_size=2, image_size=32, train=False, seed=0,
                            shard_index=0, shard_count=1))
  assert batch["label"].shape == (2, 32, 32) and set(np.unique(batch["label"])) <= set(range(11)) | {255}


def test_msrc_from_shared_data(shared_data):
  """seg_msrc is built in and reads ../shared/data/msrc (MSRC-v2: 23 classes, void 255)."""
  from piggyjax.tasks.builtin import BUILTIN_DEFS
  assert "seg_msrc" in tasks.names() and BUILTIN_DEFS["seg_msrc"]["ignore"] == "255"
  task = tasks.get("seg_msrc")
  assert task.kind == "segmentation" and task.head_channels == 23
  assert (task.class_names[3], task.class_names[10], task.class_names[22]) == ("cow", "face", "boat")
  cfg = camvid_config(shared_data)
  train, val = data.make_source("seg_msrc", "train", cfg), data.make_source("seg_msrc", "eval", cfg)
  assert (len(train), len(val)) == (295, 57) and not train.skipped and not val.skipped
  assert train.num_classes == 23 and val.class_names == task.class_names
  seen = set()
  for i in range(0, len(val), 7):
    example = val[i]
    raw = np.asarray(Image.open(shared_data / "msrc/val/labels" / f"{example['id']}.png"))
    assert np.array_equal(example["label"], raw)  # values already 0..22 and 255: read as is
    assert example["image"].shape[:2] == raw.shape
    seen |= set(np.unique(raw).tolist())
  assert 255 in seen and seen <= set(range(23)) | {255} and len(seen) > 5


def test_unlabelled_tasks_read_camvid_photos_not_labels(shared_data):
  cfg = ml_collections.ConfigDict({"data": {"source": "dirs",
                                            "image_dir": str(shared_data / "camvid")}})
  train, val = data.make_source("colorize_coco", "train", cfg), data.make_source("style_starry", "eval", cfg)
  assert (len(train), len(val)) == (367, 101)
  assert all(p.suffix == ".jpg" and p.parent.name == "images" for p in train.paths + val.paths)
  # the whole tree as one folder: photos of both splits, never a label PNG
  everything = data.ImageFolder(shared_data / "camvid")
  assert len(everything) == 468 and not any(p.parent.name == "labels" for p in everything.paths)


def test_splits_as_subfolders_and_list_files(tmp_path):
  for split, stems in (("train", "abc"), ("val", "de")):
    for s in stems:
      write_pair(tmp_path / "sub" / split, s, label(), mode="P" if s == "b" else "L")
  src = paired.PairedFolder(tmp_path / "sub", "train", num_classes=3, class_names=("x", "y", "z"))
  assert [p[0] for p in src.pairs] == ["a", "b", "c"] and len(paired.PairedFolder(
      tmp_path / "sub", "val", num_classes=3)) == 2
  # a palette PNG is read as its indices, not its colours
  assert np.array_equal(src[1]["label"], label())
  flat = tmp_path / "flat"
  for s in "pqr":
    write_pair(flat, s, label())
  (flat / "train.txt").write_text("p\nr.jpg\n")
  (flat / "val.txt").write_text("q\n")
  assert [p[0] for p in paired.PairedFolder(flat, "train", num_classes=3).pairs] == ["p", "r"]
  assert [p[0] for p in paired.PairedFolder(flat, "val", num_classes=3).pairs] == ["q"]
  with pytest.raises(FileNotFoundError, match="split 'test'.*train.txt"):
    paired.PairedFolder(flat, "test", num_classes=3)
  (flat / "evil.txt").write_text("../outside\n")
  with pytest.raises(ValueError, match="leaves the data directory"):
    paired.PairedFolder(flat, "evil", num_classes=3)


def test_ignore_and_remap(tmp_path):
  write_pair(tmp_path, "a", label(values=(0, 7, 9)))
  src = paired.PairedFolder(tmp_path, num_classes=2, ignore=(9,), remap={7: 1})
  assert set(np.unique(src[0]["label"])) == {0, 1, 255}
  with pytest.raises(ValueError, match="remap 7 -> 5.*0..1"):
    paired.PairedFolder(tmp_path, num_classes=2, remap={7: 5})


def test_bad_records_are_counted_skips(tmp_path, caplog):
  base = tmp_path / "train"
  write_pair(base, "good", label())
  write_pair(base, "nolabel", None, image_size=(24, 32))
  write_pair(base, "small", label(12, 16), image_size=(24, 32))
  write_pair(base, "tooManyClasses", label(values=(0, 1, 5)))
  write_pair(base, "void", label(values=(0, 11, 2)))
  Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(base / "labels" / "rgb.png")
  Image.fromarray(RNG.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(base / "images" / "rgb.jpg")
  src = paired.PairedFolder(tmp_path, "train", num_classes=3, ignore=(11,))
  assert len(src) == 5 and "image without its label" in src.skipped["nolabel"]
  ok = {}
  for i, (rid, _, _) in enumerate(src.pairs):
    try:
      ok[rid] = src[i]
    except records.SkipRecord:
      pass
  assert sorted(ok) == ["good", "void"] and 255 in ok["void"]["label"]
  assert "16x12" in src.skipped["small"] and "[5]" in src.skipped["tooManyClasses"]
  assert "mode RGB" in src.skipped["rgb"]
  assert len(src.skipped) == 4 and "skipping" in caplog.text
  # strict: the same records stop the run, naming the record
  strict = paired.PairedFolder(tmp_path, "train", num_classes=3, ignore=(11,))
  strict.strict = True
  with pytest.raises(records.BadRecord, match="small"):
    strict[[p[0] for p in strict.pairs].index("small")]


def test_missing_folders_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="camvid.*--data_dir"):
    data.make_source("seg_camvid", "train", camvid_config(tmp_path))
  with pytest.raises(FileNotFoundError, match="--data_dir"):
    data.make_source("seg_camvid", "train", ml_collections.ConfigDict({"data": {}}))
  (tmp_path / "camvid" / "train" / "images").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match="labels"):
    data.make_source("seg_camvid", "train", camvid_config(tmp_path))
  with pytest.raises(ValueError, match="num_classes"):
    paired.PairedFolder(tmp_path / "camvid", "train", num_classes=300)


def test_255_is_void_without_being_listed(tmp_path):
  write_pair(tmp_path, "a", label(values=(0, 255, 1)))
  src = paired.PairedFolder(tmp_path, num_classes=2)
  assert set(np.unique(src[0]["label"])) == {0, 1, 255} and not src.skipped
