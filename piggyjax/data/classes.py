"""Image classification sources: a folder per class, or a TFDS dataset by name.

    <dir>/<split>/<class>/<image>        class = folder name, classes sorted by name

Records are ``{'image': uint8 HxWx3, 'label': int32 class index, 'id'}`` (``label_kind`` =
"class": one label per image, so the pipeline crops the image alone). Grayscale, palette, CMYK
and 16-bit images become RGB (``records.to_rgb``). The training split decides the classes; an
eval split with a class the training split lacks, an empty class folder, or a split with no class
folder is an error before training. A file that is not an image is left out and counted; one that
cannot be decoded, or is smaller than ``MIN_SIDE`` pixels, is a counted skip when read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from piggyjax.data import records
from piggyjax.data.folder import IMAGE_EXTENSIONS

MIN_SIDE = 8  # a 1-pixel "photo" scaled to a crop is one colour: no example of its class


class ClassFolder(records.Source):
  has_labels = True
  label_kind = "class"

  def __init__(self, root: str | Path, split: str, *, classes_from: str | Path | None = None,
               num_classes: int | None = None, hint: str = ""):
    """``classes_from``: the split folder whose class folders define the classes (the training
    split's, so train and eval agree on every index); default this split's own."""
    super().__init__()
    self.root = records.require_dir(Path(root) / split, f"class folder split {split!r}", hint)
    train_root = Path(classes_from) if classes_from else self.root
    self.class_names = tuple(sorted(d.name for d in train_root.iterdir()
                                    if d.is_dir() and not d.name.startswith(".")))
    if not self.class_names:
      raise ValueError(f"{train_root} has no class folders; expected <split>/<class>/<image>. "
                       f"{hint}")
    own = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
    unknown = sorted(set(own) - set(self.class_names))
    if unknown:
      raise ValueError(f"{self.root} has classes the training split {train_root} lacks: "
                       f"{unknown[:5]}; a classifier cannot learn them. Add training images or "
                       "remove those folders")
    if num_classes is not None and num_classes != len(self.class_names):
      raise ValueError(f"{train_root} has {len(self.class_names)} class folders, but the task has "
                       f"classes={num_classes}; set classes={len(self.class_names)}. {hint}")
    self.num_classes = len(self.class_names)
    self.paths: list[Path] = []
    self.labels_: list[int] = []
    self.not_images = 0
    for index, name in enumerate(self.class_names):
      folder = self.root / name
      if not folder.is_dir():
        continue  # an eval split may lack a class
      files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")]
      images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
      self.not_images += len(files) - len(images)
      if not images:
        raise ValueError(f"class folder {folder} holds no image ({sorted(IMAGE_EXTENSIONS)}); "
                         "remove it or add images")
      self.paths += images
      self.labels_ += [index] * len(images)
    if self.not_images:
      records.log.warning("%s: left out %d files that are not images", self.root, self.not_images)

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    path = self.paths[index]
    rid = str(path.relative_to(self.root))
    image = records.read_rgb(path, self, rid, exif=True)
    if min(image.shape[:2]) < MIN_SIDE:
      self.skip(rid, f"{path} is {image.shape[1]}x{image.shape[0]}, under {MIN_SIDE} pixels a side")
    return {"image": image, "label": np.int32(self.labels_[index]), "id": rid}


class TfdsClasses(records.Source):
  """A TFDS classification dataset (``caltech_birds2011``, ``cars196``, ``oxford_flowers102``,
  ``dtd``, ...) through ``tfds.data_source``; ``image_key``/``label_key`` name its features."""
  has_labels = True
  label_kind = "class"

  def __init__(self, name: str, split: str, *, image_key: str = "image", label_key: str = "label",
               num_classes: int | None = None, data_dir: str | None = None):
    super().__init__()
    import tensorflow_datasets as tfds  # heavy: only when a TFDS layout is used
    self.name, self.image_key, self.label_key = name, image_key, label_key
    try:
      self._ds = tfds.data_source(name, split=split, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001  not built, a wrong name or split
      raise FileNotFoundError(
          f"TFDS dataset {name!r} split {split!r} is not available (data_dir={data_dir!r}): "
          f"{type(e).__name__}: {str(e).splitlines()[0]}. Build it with `tfds build {name} "
          "--data_dir=DIR` and pass the DIR as data.tfds_data_dir.") from e
    info = getattr(self._ds, "dataset_info", None)
    features = dict(info.features) if info is not None else {}
    for field, key in (("image_key", image_key), ("label_key", label_key)):
      if features and key not in features:
        raise KeyError(f"TFDS {name} has no feature {key!r} ({field}); its features: "
                       f"{', '.join(sorted(features))}")
    label = features.get(label_key)
    self.class_names = tuple(getattr(label, "names", ()) or ())
    self.num_classes = int(getattr(label, "num_classes", 0) or num_classes or 0)
    if num_classes is not None and self.num_classes and self.num_classes != num_classes:
      raise ValueError(f"TFDS {name}'s {label_key} has {self.num_classes} classes, the task "
                       f"has classes={num_classes}; set classes={self.num_classes}")

  def __len__(self) -> int:
    return len(self._ds)

  def __getitem__(self, index: int) -> dict[str, Any]:
    r = self._ds[index]
    rid = f"{self.name}-{index}"
    image = np.asarray(r[self.image_key])
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 1):
      image = np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
      self.skip(rid, f"{self.image_key} has shape {image.shape}; expected HxWx3")
    label = int(np.asarray(r[self.label_key]))
    if not 0 <= label < max(self.num_classes, label + 1):
      self.skip(rid, f"label {label} is outside 0..{self.num_classes - 1}")
    return {"image": image.astype(np.uint8), "label": np.int32(label), "id": rid}
