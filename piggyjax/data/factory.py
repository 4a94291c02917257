"""``make_source(task_id, split, config)``: which reader serves which task, from ``config.data``.

Fields read (default): ``source`` ('quickstart'), ``data_dir`` (None), ``voc_dir``, ``coco_dir``,
``image_dir``, ``tfds_data_dir`` (None each), ``coco_things_only`` (False),
``coco_train_split``/``coco_eval_split`` ('train2017'/'val2017'; 'val2017' for both under
'samples', which ships val images only), ``voc_train_split``/``voc_eval_split`` ('train'/'val'),
``on_label_size_mismatch`` ('skip'; TFDS only), ``quickstart_image_size`` (96),
``quickstart_train_examples`` (512), ``quickstart_eval_examples`` (64), ``seed`` (0),
``strict`` (False: bad records are counted skips).

``data_dir`` mirrors shared/data: ``VOCdevkit/`` or ``voc_samples/VOCdevkit/``, ``coco/`` or
``coco_samples/``, ``styles/``. Content images (colorize_coco, style_*) come from ``image_dir``
when set (its ``train/`` and ``val/`` or ``eval/`` subfolders if present, else the whole folder
for both splits), otherwise from the COCO image folder of the split (or TFDS under 'tfds').
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from piggyjax.data import coco, folder, paired, quickstart, records, tfds_coco, voc
from piggyjax.tasks.classes import CAMVID_CLASSES, CAMVID_VOID

# task id -> what it reads: labelled COCO, labelled VOC, or unlabelled content images
TASK_DATA = {"seg_coco": "seg_coco", "seg_voc": "seg_voc", "seg_camvid": "seg_camvid",
             "colorize_coco": "images",
             "style_starry": "images", "style_scream": "images"}
SOURCES = ("quickstart", "samples", "tfds", "dirs")


def _get(data: Any, key: str, default: Any = None) -> Any:
  if data is None:
    return default
  value = data.get(key, default) if hasattr(data, "get") else getattr(data, key, default)
  return default if value is None or value == "" else value  # "" = unset in a config file


def _first_dir(candidates: list[Path], what: str, hint: str) -> Path:
  for c in candidates:
    if c.is_dir():
      return c
  raise FileNotFoundError(f"{what}: none of {[str(c) for c in candidates]} exists. {hint}")


def _data_dir(data: Any, what: str, field: str) -> Path:
  root = _get(data, "data_dir")
  if not root:
    raise FileNotFoundError(f"{what} needs a directory: pass --data_dir=DIR (config.data.data_dir) "
                            f"or --config.data.{field}=DIR.")
  return Path(root).expanduser()


def voc_root(data: Any) -> Path:
  if _get(data, "voc_dir"):
    return Path(_get(data, "voc_dir")).expanduser()
  root = _data_dir(data, "VOC 2012", "voc_dir")
  return _first_dir([root / "VOCdevkit", root / "voc_samples" / "VOCdevkit", root / "VOC2012"],
                    "VOC 2012", "Pass --config.data.voc_dir=PATH/VOCdevkit.")


def coco_root(data: Any) -> Path:
  if _get(data, "coco_dir"):
    return Path(_get(data, "coco_dir")).expanduser()
  root = _data_dir(data, "COCO", "coco_dir")
  return _first_dir([root / "coco", root / "coco_samples"], "COCO",
                    "Pass --config.data.coco_dir=DIR holding annotations/ and val2017/.")


def camvid_root(data: Any) -> Path:
  """``camvid_dir``, else ``data_dir/camvid`` (train/ and val/, each with images/ and labels/)."""
  if _get(data, "camvid_dir"):
    return Path(_get(data, "camvid_dir")).expanduser()
  return _data_dir(data, "CamVid", "camvid_dir") / "camvid"


def _content_folder(data: Any, split: str) -> Path:
  """``image_dir`` (with train/ and val/ subfolders if it has them, and their images/ if those
  are paired folders), else the COCO image folder."""
  image_dir = _get(data, "image_dir")
  if image_dir:
    root = Path(image_dir).expanduser()
    sub = [root / name for name in ((("train",) if split == "train" else ("val", "eval")))]
    chosen = next((s for s in sub if s.is_dir()), root)
    return chosen / "images" if (chosen / "images").is_dir() else chosen
  return coco_root(data) / _coco_split(data, split)


def _coco_split(data: Any, split: str) -> str:
  samples = _get(data, "source") == "samples"
  default = "val2017" if samples or split == "eval" else "train2017"
  return _get(data, f"coco_{split}_split", default)


def _data_kind(task_id: str) -> str:
  """Built-in tasks by id; a registered task of an unlabelled kind reads content images."""
  if task_id in TASK_DATA:
    return TASK_DATA[task_id]
  from piggyjax import tasks
  if task_id in tasks.names() and tasks.get(task_id).kind != "segmentation":
    return "images"
  raise ValueError(f"no data rule for task {task_id!r}; known: {sorted(TASK_DATA)}. For a "
                   "segmentation task of your own, build a source (see piggyjax.data) directly.")


def make_source(task_id: str, split: str, config: Any) -> records.Source:
  """A random-access source for ``task_id`` ('train' or 'eval' split); see the module docstring.

  ``config.data.strict``: a record that would be skipped is an error instead (``BadRecord``),
  at indexing time here or when it is read.
  """
  source = _make(task_id, split, config)
  if _get(_get(config, "data"), "strict", False):
    source.strict = True
    if source.skipped:
      raise records.BadRecord(
          f"{type(source).__name__} ({split}): {len(source.skipped)} records cannot be used and "
          f"config.data.strict is set; e.g. {list(source.skipped.items())[:3]}")
  prepared_dir = _get(_get(config, "data"), "prepared_dir")
  if prepared_dir:  # read the examples prepared from this source (experiments/prepare.py)
    from piggyjax.data import prepared
    return prepared.open_prepared(prepared.set_dir(prepared_dir, task_id, split), source,
                                  task_id=task_id, split=split, image_size=config.image_size)
  return source


def _make(task_id: str, split: str, config: Any) -> records.Source:
  if split not in ("train", "eval"):
    raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
  data = _get(config, "data")
  kind, name = _data_kind(task_id), _get(data, "source", "quickstart")
  if name not in SOURCES:
    raise ValueError(f"config.data.source must be one of {SOURCES}, got {name!r}")
  things_only = bool(_get(data, "coco_things_only", False))

  if kind == "seg_camvid":  # real photos only: no quickstart stand-in, any source reads the folder
    return paired.PairedFolder(
        camvid_root(data), _get(data, f"camvid_{split}_split", "train" if split == "train" else "val"),
        num_classes=len(CAMVID_CLASSES), ignore=(CAMVID_VOID,), class_names=CAMVID_CLASSES,
        hint="Pass --data_dir=DIR with DIR/camvid/{train,val}/{images,labels}, or "
             "--config.data.camvid_dir=DIR.")
  if name == "quickstart":
    length = _get(data, f"quickstart_{split}_examples", 512 if split == "train" else 64)
    return quickstart.Quickstart(kind, split, size=_get(data, "quickstart_image_size", 96),
                                 length=length, seed=_get(data, "seed", 0))
  if kind == "images" and (_get(data, "image_dir") or name != "tfds"):
    return folder.ImageFolder(_content_folder(data, split))
  if kind == "seg_voc":  # TFDS's voc has boxes only, so VOC always comes from a VOCdevkit
    return voc.VocSegmentation(voc_root(data), _get(data, f"voc_{split}_split",
                                                    "train" if split == "train" else "val"))
  if name == "tfds":
    return tfds_coco.TfdsCocoPanoptic(split, data_dir=_get(data, "tfds_data_dir"),
                                      things_only=things_only, labels=kind == "seg_coco",
                                      on_size_mismatch=_get(data, "on_label_size_mismatch", "skip"))
  return coco.CocoPanopticDir(coco_root(data), _coco_split(data, split), things_only=things_only)
