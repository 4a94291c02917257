"""Every data layout behind make_source, on small datasets written here, chosen by the task's
data spec in the config alone; TFDS by name under tfds.testing.mock_data; bad specs."""
import json

import ml_collections
import numpy as np
import pytest
from PIL import Image

from piggyjax import data, tasks
from piggyjax.colormap import voc_colormap

RNG = np.random.default_rng(1)


def photo(h=24, w=32):
  return RNG.integers(0, 255, (h, w, 3), dtype=np.uint8)


def stripes(values, h=24, w=32):
  out = np.zeros((h, w), np.uint8)
  for k, v in enumerate(values):
    out[:, k * w // len(values):(k + 1) * w // len(values)] = v
  return out


def config(defs, source="dirs", **data_fields):
  c = ml_collections.ConfigDict({"data": {"source": source, **data_fields}, "task_defs": defs,
                                 "tasks": ",".join(defs)})
  tasks.from_config(c)
  return c


def write_voc(root):
  base = root / "VOCdevkit" / "VOC2012"
  for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    (base / sub).mkdir(parents=True)
  for rid in ("a", "b"):
    Image.fromarray(photo()).save(base / "JPEGImages" / f"{rid}.jpg")
    mask = Image.fromarray(stripes((0, 15, 255)), mode="P")
    mask.putpalette(voc_colormap().reshape(-1).tolist())
    mask.save(base / "SegmentationClass" / f"{rid}.png")
  (base / "ImageSets/Segmentation/mine.txt").write_text("a\nb\n")


def write_coco(root):
  (root / "val2017").mkdir(parents=True)
  (root / "annotations" / "panoptic_val2017").mkdir(parents=True)
  ids = np.full((24, 32), 7, np.int64)
  ids[12:] = 9
  Image.fromarray(photo()).save(root / "val2017" / "x.jpg")
  Image.fromarray(np.stack([ids, ids * 0, ids * 0], -1).astype(np.uint8)).save(
      root / "annotations" / "panoptic_val2017" / "x.png")
  meta = {"images": [{"id": 1, "file_name": "x.jpg"}],
          "annotations": [{"image_id": 1, "file_name": "x.png", "segments_info": [
              {"id": 7, "category_id": 1}, {"id": 9, "category_id": 184}]}],
          "categories": [{"id": 1, "name": "person", "isthing": 1},
                         {"id": 184, "name": "tree", "isthing": 0}]}
  (root / "annotations" / "panoptic_val2017.json").write_text(json.dumps(meta))


def write_paired(root, values=(0, 1, 4)):
  for split in ("train", "val"):
    for d in ("images", "labels"):
      (root / split / d).mkdir(parents=True)
    for rid in ("p", "q"):
      Image.fromarray(photo()).save(root / split / "images" / f"{rid}.jpg")
      Image.fromarray(stripes(values)).save(root / split / "labels" / f"{rid}.png")


def test_each_layout_from_the_data_spec(tmp_path):
  write_voc(tmp_path / "voc")
  write_coco(tmp_path / "mycoco")
  write_paired(tmp_path / "streets")
  (tmp_path / "pics" / "train").mkdir(parents=True)
  Image.fromarray(photo()).save(tmp_path / "pics" / "train" / "one.png")
  c = config({
      "seg_a": {"kind": "segmentation", "classes": 21, "data": {
          "layout": "voc", "dir": str(tmp_path / "voc" / "VOCdevkit"), "train_split": "mine"}},
      "seg_b": {"kind": "segmentation", "classes": 2, "class_names": "person,tree",
                "data": {"layout": "coco_panoptic", "dir": "mycoco", "train_split": "val2017"}},
      "seg_c": {"kind": "segmentation", "classes": 3, "ignore": "4", "remap": "1:2",
                "data": {"layout": "paired", "dir": "streets"}},
      "paint_d": {"kind": "style", "style_image": "starry_night",
                  "data": {"layout": "folder", "dir": "pics"}},
  }, data_dir=str(tmp_path))
  voc = data.make_source("seg_a", "train", c)
  assert isinstance(voc, data.VocSegmentation) and len(voc) == 2
  assert set(np.unique(voc[0]["label"])) == {0, 15, 255}
  coco = data.make_source("seg_b", "train", c)
  assert isinstance(coco, data.CocoPanopticDir) and coco.num_classes == 2
  assert np.all(coco[0]["label"][:12] == 0) and np.all(coco[0]["label"][12:] == 1)
  pair_train, pair_eval = data.make_source("seg_c", "train", c), data.make_source("seg_c", "eval", c)
  assert len(pair_train) == len(pair_eval) == 2 and pair_eval.root.name == "streets"
  assert set(np.unique(pair_train[0]["label"])) == {0, 2, 255}  # 1 remapped to 2, 4 ignored
  pics = data.make_source("paint_d", "train", c)
  assert isinstance(pics, data.ImageFolder) and len(pics) == 1
  # the quickstart source serves stand-ins only to tasks that name one; seg_c reads its folder
  c.data.source = "quickstart"
  assert isinstance(data.make_source("seg_c", "train", c), data.PairedFolder)
  assert isinstance(data.make_source("seg_voc", "train", c), data.Quickstart)


def pet_records(n=3):
  out = []
  for i in range(n):
    mask = stripes((1, 2, 3), 20, 30)[..., None]  # oxford_iiit_pet: 1 pet, 2 background, 3 border
    out.append({"image": photo(20, 30), "segmentation_mask": mask, "file_name": f"pet{i}.jpg",
                "label": 0, "species": 0})
  return out


def test_tfds_segmentation_by_name_under_mock_data(tmp_path):
  import tensorflow_datasets as tfds
  spec = {"kind": "segmentation", "classes": 3, "class_names": "pet,background,border",
          "remap": "1:0,2:1,3:2", "data": {"layout": "tfds", "name": "oxford_iiit_pet",
                                           "label_key": "segmentation_mask"}}
  c = config({"seg_pets": spec, "gray_pets": {"kind": "colorization", "data": {
      "layout": "tfds", "name": "oxford_iiit_pet"}}})
  with tfds.testing.mock_data(as_data_source_fn=lambda self, split, *a, **k: pet_records()):
    src = data.make_source("seg_pets", "eval", c)
    assert len(src) == 3 and src.class_names == ("pet", "background", "border")
    ex = src[0]
    assert ex["label"].shape == (20, 30) and set(np.unique(ex["label"])) == {0, 1, 2}
    batch = next(data.batches(src, batch_size=2, image_size=16, train=False, seed=0,
                              shard_index=0, shard_count=1))
    assert batch["label"].shape == (2, 16, 16)
    assert not data.make_source("gray_pets", "train", c).has_labels
    c.task_defs.seg_pets.data.label_key = "trimap"
    with pytest.raises(KeyError, match=r"seg_pets.*no feature 'trimap' \(label_key\).*segmentation_mask"):
      data.make_source("seg_pets", "train", c)
    # too few classes: most labels hold values beyond them -> an error before training
    c.task_defs.seg_pets.data.label_key = "segmentation_mask"
    c.task_defs.seg_pets.remap = ""
    with pytest.raises(ValueError, match=r"task_defs.seg_pets.classes is 3.*\[3\]"):
      data.make_source("seg_pets", "train", c)
  with tfds.testing.mock_data(num_examples=2):
    c.task_defs.seg_pets.data.name = "no_such_dataset"
    with pytest.raises(FileNotFoundError, match="seg_pets.*'no_such_dataset'"):
      data.make_source("seg_pets", "train", c)


def test_bad_definitions_name_the_task_and_the_field(tmp_path):
  write_paired(tmp_path / "streets")
  bad = {
      "layout": ({"kind": "segmentation", "classes": 3, "data": {"layout": "zip"}}, "data.layout is 'zip'"),
      "labels": ({"kind": "colorization", "data": {"layout": "paired", "dir": "streets"}}, "use 'folder'"),
      "nodata": ({"kind": "segmentation", "classes": 3}, "data is missing"),
  }
  for tid, (spec, message) in bad.items():
    c = config({tid: spec}, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=rf"task '{tid}': config.task_defs.{tid}.*{message}"):
      data.make_source(tid, "train", c)
  for spec, message in (
      ({"kind": "denoise"}, r"kind is 'denoise'; known kinds: classification, colorization, segmentation, style"),
      ({"kind": "segmentation", "classes": 3, "remap": "1:7"}, r"remap maps 1 to 7, outside"),
      ({"kind": "segmentation"}, r"classes is required"),
      ({"kind": "segmentation", "classes": 3, "class_names": "a,b"}, r"class_names has 2 names"),
      ({"kind": "segmentation", "classes": 3, "ignore": "1"}, r"ignore lists \[1\]"),
      ({"kind": "colorization", "style_image": "x.jpg"}, r"style_image is only for style"),
      ({"kind": "style", "clases": 3}, r"clases is not a task field")):
    with pytest.raises(tasks.TaskDefinitionError, match=rf"task 'bad_x': config.task_defs.bad_x.{message}"):
      config({"bad_x": spec})
  # labels with more classes than defined, in most records: an error naming classes
  c = config({"seg_few": {"kind": "segmentation", "classes": 2,
                          "data": {"layout": "paired", "dir": "streets"}}}, data_dir=str(tmp_path))
  with pytest.raises(ValueError, match=r"seg_few.classes is 2.*\[4\]"):
    data.make_source("seg_few", "train", c)
  # an id registered in code and defined differently in the config
  tasks.register(tasks.Segmentation("seg_in_code", head_channels=4))
  with pytest.raises(tasks.TaskDefinitionError, match="'seg_in_code' is defined twice"):
    config({"seg_in_code": {"kind": "segmentation", "classes": 5}})
  with pytest.raises(tasks.TaskDefinitionError, match="'nowhere'.*neither defined"):
    tasks.from_config(ml_collections.ConfigDict({"tasks": "seg_voc,nowhere"}))


def test_config_file_adds_a_task_once():
  from experiments.configs import common
  c = common.base_config()
  common.add_task(c, "seg_mine", kind="segmentation", classes=4, data=dict(layout="paired", dir="mine"))
  with pytest.raises(ValueError, match="'seg_mine' is defined twice"):
    common.add_task(c, "seg_mine", kind="segmentation", classes=5)
  with pytest.raises(ValueError, match="'seg_voc' is defined twice"):
    common.add_task(c, "seg_voc", kind="segmentation", classes=5)
  c.tasks = "seg_mine,seg_voc"
  assert tasks.from_config(c) == ["seg_mine", "seg_voc"] and tasks.get("seg_mine").head_channels == 4
  # the built-in definitions in the config give exactly the built-in tasks
  for tid in ("seg_coco", "seg_voc", "seg_camvid", "seg_msrc", "colorize_coco", "style_starry",
              "style_scream"):
    assert tasks.definitions.build(tid, c.task_defs[tid]) == tasks.get(tid)


def test_cli_checks_every_data_spec_before_any_work():
  from experiments.configs import common
  from piggyjax import cli
  c = common.base_config()
  c.tasks = "seg_camvid,colorize_coco"
  assert cli.define_tasks(c) == ["seg_camvid", "colorize_coco"]
  c.task_defs.colorize_coco.data.layout = "paired"
  with pytest.raises(cli.UsageError, match=r"'colorize_coco': config.task_defs.colorize_coco.data.layout"):
    cli.define_tasks(c)
  c.task_defs.colorize_coco.data.layout = "tarball"
  with pytest.raises(cli.UsageError, match=r"data.layout is 'tarball'; layouts: voc, coco_panoptic"):
    cli.define_tasks(c)
