"""One reader per data layout, all behind ``read(ctx) -> Source``; ``factory`` picks by the
task's data spec (``config.task_defs.<id>.data.layout``).

Spec fields (every one optional unless said): ``dir`` (relative to ``config.data.data_dir``
unless absolute; ``config.data.<dir>_dir`` overrides it, e.g. ``camvid_dir``), ``train_split``,
``eval_split``, and per layout:
- ``voc``: a VOCdevkit (dir default: ``data.voc_dir`` or ``data_dir``/VOCdevkit); splits are
  ImageSets/Segmentation list names (default ``data.voc_{train,eval}_split``).
- ``coco_panoptic``: a COCO directory with annotations/panoptic_<split>.json (dir default:
  ``data.coco_dir`` or ``data_dir``/coco); ``things_only``. Under ``data.source=tfds``: TFDS's
  coco/2017_panoptic.
- ``paired``: images/ + labels/ with matching stems (``images``/``labels`` rename them); splits
  are subfolders or list files (default train / val).
- ``tfds``: ``name`` (required), ``image_key`` (image), ``label_key`` (required for
  segmentation, empty for unlabelled tasks), ``tfds_data_dir``; splits default train / test.
- ``folder``: plain images (recursive), ``dir`` or ``data.image_dir``; split subfolders used if
  present (train; val or eval).
- ``classes``: classification, ``dir``/<split>/<class>/<image> (splits default train / val).
  Under layout ``tfds``, a classification task reads ``label_key`` (default label) per image.
- ``content``: the built-in content rule: ``data.image_dir``, else the COCO images of the split
  (TFDS's under ``data.source=tfds``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple

from piggyjax.data import classes, coco, folder, paired, records, tfds_coco, tfds_seg, voc


class Context(NamedTuple):
  task_id: str
  split: str         # 'train' | 'eval'
  task: Any          # the registered piggyjax.tasks.Task
  definition: Any    # config.task_defs.<id> (or the built-in one)
  spec: Any          # its data spec
  data: Any          # config.data
  ignore: tuple[int, ...]
  remap: dict[int, int]


def get(cfg: Any, key: str, default: Any = None) -> Any:
  if cfg is None:
    return default
  value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
  return default if value is None or value == "" else value  # "" = unset in a config file


def _first_dir(candidates: list[Path], what: str, hint: str) -> Path:
  for c in candidates:
    if c.is_dir():
      return c
  raise FileNotFoundError(f"{what}: none of {[str(c) for c in candidates]} exists. {hint}")


def data_root(data: Any, what: str, field: str) -> Path:
  root = get(data, "data_dir")
  if not root:
    raise FileNotFoundError(f"{what} needs a directory: pass --data_dir=DIR (config.data.data_dir) "
                            f"or --config.{field}=DIR.")
  return Path(root).expanduser()


def voc_root(data: Any) -> Path:
  if get(data, "voc_dir"):
    return Path(get(data, "voc_dir")).expanduser()
  root = data_root(data, "VOC 2012", "data.voc_dir")
  return _first_dir([root / "VOCdevkit", root / "voc_samples" / "VOCdevkit", root / "VOC2012"],
                    "VOC 2012", "Pass --config.data.voc_dir=PATH/VOCdevkit.")


def coco_root(data: Any) -> Path:
  if get(data, "coco_dir"):
    return Path(get(data, "coco_dir")).expanduser()
  root = data_root(data, "COCO", "data.coco_dir")
  return _first_dir([root / "coco", root / "coco_samples"], "COCO",
                    "Pass --config.data.coco_dir=DIR holding annotations/ and val2017/.")


def coco_split(data: Any, split: str) -> str:
  samples = get(data, "source") == "samples"
  default = "val2017" if samples or split == "eval" else "train2017"
  return get(data, f"coco_{split}_split", default)


def spec_dir(ctx: Context) -> Path | None:
  """The spec's ``dir``: ``data.<name>_dir`` if set, absolute as is, else under data_dir."""
  rel = get(ctx.spec, "dir")
  if not rel:
    return None
  override = get(ctx.data, f"{Path(str(rel)).name}_dir")
  if override:
    return Path(override).expanduser()
  p = Path(str(rel)).expanduser()
  if p.is_absolute():
    return p
  return data_root(ctx.data, f"task {ctx.task_id!r} (data.dir={rel!r})",
                   f"task_defs.{ctx.task_id}.data.dir") / p


def split_name(ctx: Context, default_train: str, default_eval: str) -> str:
  return get(ctx.spec, f"{ctx.split}_split", default_train if ctx.split == "train" else default_eval)


def _sub(root: Path, ctx: Context) -> Path:
  """A split subfolder if the folder has one (train; val or eval), else the folder itself."""
  names = [get(ctx.spec, f"{ctx.split}_split")] if get(ctx.spec, f"{ctx.split}_split") else (
      ["train"] if ctx.split == "train" else ["val", "eval"])
  chosen = next((root / n for n in names if (root / n).is_dir()), root)
  return chosen / "images" if (chosen / "images").is_dir() else chosen


def read_voc(ctx: Context) -> records.Source:
  default = get(ctx.data, f"voc_{ctx.split}_split", "train" if ctx.split == "train" else "val")
  return voc.VocSegmentation(spec_dir(ctx) or voc_root(ctx.data), split_name(ctx, default, default))


def read_coco_panoptic(ctx: Context) -> records.Source:
  things_only = bool(get(ctx.spec, "things_only", get(ctx.data, "coco_things_only", False)))
  if get(ctx.data, "source") == "tfds":
    return tfds_coco.TfdsCocoPanoptic(
        ctx.split, data_dir=get(ctx.data, "tfds_data_dir"), things_only=things_only, labels=True,
        on_size_mismatch=get(ctx.data, "on_label_size_mismatch", "skip"))
  default = coco_split(ctx.data, ctx.split)
  return coco.CocoPanopticDir(spec_dir(ctx) or coco_root(ctx.data), split_name(ctx, default, default),
                              things_only=things_only)


def read_paired(ctx: Context) -> records.Source:
  root = spec_dir(ctx)
  if root is None:
    raise ValueError(f"task {ctx.task_id!r}: config.task_defs.{ctx.task_id}.data.dir is required "
                     "for layout 'paired' (the folder holding images/ and labels/, or its splits)")
  return paired.PairedFolder(
      root, split_name(ctx, "train", "val"), num_classes=ctx.task.head_channels, ignore=ctx.ignore,
      remap=ctx.remap, class_names=getattr(ctx.task, "class_names", ()),
      images=get(ctx.spec, "images", "images"), labels=get(ctx.spec, "labels", "labels"),
      hint=f"Set config.task_defs.{ctx.task_id}.data.dir (now {get(ctx.spec, 'dir')!r}, under "
           "--data_dir unless absolute).")


def read_tfds(ctx: Context) -> records.Source:
  name = get(ctx.spec, "name")
  if not name:
    raise ValueError(f"task {ctx.task_id!r}: config.task_defs.{ctx.task_id}.data.name is required "
                     "for layout 'tfds' (a TFDS dataset name, e.g. oxford_iiit_pet)")
  if ctx.task.kind == "classification":
    return classes.TfdsClasses(
        name, split_name(ctx, "train", "test"), image_key=get(ctx.spec, "image_key", "image"),
        label_key=get(ctx.spec, "label_key", "label"), num_classes=ctx.task.head_channels,
        data_dir=get(ctx.spec, "tfds_data_dir", get(ctx.data, "tfds_data_dir")))
  labelled = ctx.task.kind == "segmentation"
  label_key = get(ctx.spec, "label_key", "")
  if labelled and not label_key:
    raise ValueError(f"task {ctx.task_id!r}: config.task_defs.{ctx.task_id}.data.label_key is "
                     f"required (the mask feature of {name}, e.g. segmentation_mask)")
  return tfds_seg.TfdsSegmentation(
      name, split_name(ctx, "train", "test"), image_key=get(ctx.spec, "image_key", "image"),
      label_key=label_key if labelled else "",
      num_classes=ctx.task.head_channels if labelled else None, ignore=ctx.ignore, remap=ctx.remap,
      class_names=getattr(ctx.task, "class_names", ()),
      data_dir=get(ctx.spec, "tfds_data_dir", get(ctx.data, "tfds_data_dir")),
      on_size_mismatch=get(ctx.spec, "on_label_size_mismatch",
                           get(ctx.data, "on_label_size_mismatch", "skip")))


def read_folder(ctx: Context) -> records.Source:
  root = spec_dir(ctx) or (Path(get(ctx.data, "image_dir")).expanduser()
                           if get(ctx.data, "image_dir") else None)
  if root is None:
    raise ValueError(f"task {ctx.task_id!r}: layout 'folder' needs config.task_defs.{ctx.task_id}"
                     ".data.dir or --config.data.image_dir (a folder of photos)")
  return folder.ImageFolder(_sub(root, ctx))


def read_classes(ctx: Context) -> records.Source:
  root = spec_dir(ctx)
  hint = (f"Set config.task_defs.{ctx.task_id}.data.dir (now {get(ctx.spec, 'dir')!r}, under "
          "--data_dir unless absolute) to a folder of <split>/<class>/<image>.")
  if root is None:
    raise ValueError(f"task {ctx.task_id!r}: layout 'classes' needs config.task_defs."
                     f"{ctx.task_id}.data.dir. {hint}")
  train_split = get(ctx.spec, "train_split", "train")
  return classes.ClassFolder(root, split_name(ctx, "train", "val"),
                             classes_from=records.require_dir(root / train_split,
                                                              "class folder training split", hint),
                             num_classes=ctx.task.head_channels, hint=hint)


def read_content(ctx: Context) -> records.Source:
  image_dir = get(ctx.data, "image_dir")
  if image_dir or get(ctx.data, "source") != "tfds":
    root = Path(image_dir).expanduser() if image_dir else None
    return folder.ImageFolder(_sub(root, ctx) if root else coco_root(ctx.data) / coco_split(ctx.data, ctx.split))
  return tfds_coco.TfdsCocoPanoptic(ctx.split, data_dir=get(ctx.data, "tfds_data_dir"), labels=False)


READERS: dict[str, Callable[[Context], records.Source]] = {
    "voc": read_voc, "coco_panoptic": read_coco_panoptic, "paired": read_paired,
    "tfds": read_tfds, "folder": read_folder, "content": read_content, "classes": read_classes}
LABELLED = frozenset({"voc", "coco_panoptic", "paired"})  # tfds: when it has a label_key
CLASS_LABELLED = frozenset({"classes", "tfds"})  # a class per image
