"""Paired folders: ``images/`` beside ``labels/``, a photo and its label share a file stem.

    ROOT/train/images/0001.jpg   ROOT/train/labels/0001.png     (splits as subfolders), or
    ROOT/images/0001.jpg         ROOT/labels/0001.png  ROOT/train.txt  (splits as list files:
                                                                         one stem per line)

Labels are single-channel PNGs (grayscale or palette) whose pixel values are class indices.
``ignore`` values (CamVid's void 11; 255 always) become the pipeline's ignore value 255; ``remap``
maps a file value to a class first. Any other value outside ``[0, num_classes)`` makes the record
a counted skip: a label is never guessed. An image without its label is a counted skip at
construction; a label of another size than its image, an RGB label or an unreadable file, at read
time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from piggyjax.data import records
from piggyjax.data.folder import IMAGE_EXTENSIONS

IGNORE = 255  # what the pipeline pads with and the segmentation tasks leave out
LABEL_EXTENSIONS = frozenset({".png", ".bmp", ".tif", ".tiff", ".gif"})


def _stem_map(folder: Path, extensions: frozenset[str]) -> dict[str, Path]:
  """relative path without extension -> file (recursive, so nested folders pair too)."""
  return {p.relative_to(folder).with_suffix("").as_posix(): p
          for p in records.image_files(folder, extensions)}


class LabelMap:
  """File label values -> uint8 classes (IGNORE for ``ignore``; ``remap`` first). A value that
  is neither makes the record a counted skip, and is remembered in ``bad_values`` (record id ->
  values) so a reader can tell a config with too few classes from one bad record."""

  def __init__(self, num_classes: int, ignore: Iterable[int] = (),
               remap: Mapping[int, int] | None = None, size: int = 1 << 16):
    if not 1 <= num_classes <= IGNORE:
      raise ValueError(f"num_classes must be in 1..{IGNORE} (255 is the ignore value), got {num_classes}")
    self.num_classes, self.ignore = int(num_classes), tuple(int(v) for v in ignore)
    self.bad_values: dict[str, list[int]] = {}
    table = np.full((size,), -1, np.int32)
    table[:num_classes] = np.arange(num_classes)
    table[IGNORE] = IGNORE  # 255 is void everywhere in piggyjax (VOC's border, the padding)
    for value, cls in (remap or {}).items():
      if not (0 <= int(cls) < num_classes or int(cls) == IGNORE) or not 0 <= int(value) < size:
        raise ValueError(f"remap {int(value)} -> {int(cls)}: the target must be a class in "
                         f"0..{num_classes - 1} (or {IGNORE} to ignore it)")
      table[int(value)] = int(cls)
    for value in self.ignore:
      if not 0 <= value < size:
        raise ValueError(f"ignore value {value} is not a label value (0..{size - 1})")
      table[value] = IGNORE
    self.table = table

  def __call__(self, source: records.Source, label: np.ndarray, rid: str) -> np.ndarray:
    values = np.asarray(label).astype(np.int64)
    if values.ndim == 3 and values.shape[-1] == 1:  # TFDS masks are HxWx1
      values = values[..., 0]
    if values.ndim != 2:
      source.skip(rid, f"label has shape {values.shape}; expected one class index per pixel")
    if values.size and (values.min() < 0 or values.max() >= self.table.size):
      self.bad_values[rid] = [int(values.min()), int(values.max())]
      source.skip(rid, f"label values {int(values.min())}..{int(values.max())} are outside "
                       f"0..{self.table.size - 1}")
    out = self.table[values]
    if (out < 0).any():
      bad = np.unique(values[out < 0])[:5].tolist()
      self.bad_values[rid] = bad
      source.skip(rid, f"label values {bad} are neither classes 0..{self.num_classes - 1} nor "
                       f"ignored {list(self.ignore)} (more classes than the task's "
                       f"{self.num_classes}?)")
    return out.astype(np.uint8)


class PairedFolder(records.Source):
  """``split``: a subfolder of ``root`` holding images/ and labels/, or a list file
  (``root/<split>.txt`` or a path), or '' for ``root`` itself."""
  has_labels = True

  def __init__(self, root: str | Path, split: str = "", *, num_classes: int,
               ignore: Iterable[int] = (), remap: Mapping[int, int] | None = None,
               class_names: Iterable[str] = (), images: str = "images", labels: str = "labels",
               hint: str = "Pass the folder holding images/ and labels/ (e.g. --data_dir)."):
    super().__init__()
    self.root = records.require_dir(root, "paired folder", hint)
    self.num_classes = int(num_classes)
    self.class_names = tuple(class_names)
    if self.class_names and len(self.class_names) != self.num_classes:
      raise ValueError(f"paired folder {str(self.root)!r}: {len(self.class_names)} class names for "
                       f"{self.num_classes} classes")
    self.labels = LabelMap(self.num_classes, ignore, remap)
    base, stems = self._split(split, hint)
    image_dir = records.require_dir(base / images, "paired folder images", hint)
    label_dir = records.require_dir(base / labels, "paired folder labels", hint)
    found_images = _stem_map(image_dir, IMAGE_EXTENSIONS)
    found_labels = _stem_map(label_dir, LABEL_EXTENSIONS)
    self.pairs: list[tuple[str, Path, Path]] = []
    for stem in (stems if stems is not None else sorted(found_images)):
      if stem not in found_images:
        self.note_skip(stem, f"listed, but no image {stem}.* in {image_dir}")
      elif stem not in found_labels:
        self.note_skip(stem, f"image without its label: no {stem}.png in {label_dir}")
      else:
        self.pairs.append((stem, found_images[stem], found_labels[stem]))
    if not self.pairs:
      raise ValueError(f"paired folder {str(base)!r} has no image with a label in {labels}/ "
                       f"({len(self.skipped)} skipped, e.g. {list(self.skipped.values())[:2]}). {hint}")

  def _split(self, split: str, hint: str) -> tuple[Path, list[str] | None]:
    if not split:
      return self.root, None
    if (self.root / split).is_dir():
      return self.root / split, None
    for list_file in (self.root / f"{split}.txt", self.root / split):
      if list_file.is_file():
        stems = [s.strip() for s in list_file.read_text().splitlines() if s.strip()]
        for s in stems:  # names from a text file stay inside the data directory
          records.safe_join(self.root, s)
        return self.root, [str(Path(s).with_suffix("")) if Path(s).suffix.lower() in
                           IMAGE_EXTENSIONS | LABEL_EXTENSIONS else s for s in stems]
    have = sorted(p.name for p in self.root.iterdir() if p.is_dir() or p.suffix == ".txt")
    raise FileNotFoundError(f"paired folder {str(self.root)!r}: split {split!r} is neither a "
                            f"subfolder nor a list file {split}.txt; here: {have}. {hint}")

  def __len__(self) -> int:
    return len(self.pairs)

  def __getitem__(self, index: int) -> dict[str, Any]:
    rid, image_path, label_path = self.pairs[index]
    image = records.read_rgb(image_path, self, rid)
    label = records.open_image(label_path, self, rid)
    if label.mode not in ("L", "P") and not label.mode.startswith("I"):
      self.skip(rid, f"label {label_path} has mode {label.mode}; save class indices as a "
                     "grayscale or palette PNG")
    if label.size != (image.shape[1], image.shape[0]):
      self.skip(rid, f"label is {label.size[0]}x{label.size[1]}, image is "
                     f"{image.shape[1]}x{image.shape[0]}")
    return {"image": image, "label": self.labels(self, np.asarray(label), rid), "id": rid}
