"""Paired folders: ``images/`` beside ``labels/``, a photo and its label share a file stem.

    ROOT/train/images/0001.jpg   ROOT/train/labels/0001.png     (splits as subfolders), or
    ROOT/images/0001.jpg         ROOT/labels/0001.png  ROOT/train.txt  (splits as list files:
                                                                         one stem per line)

Labels are single-channel PNGs (grayscale or palette) whose pixel values are class indices.
``ignore`` values (CamVid's void 11, VOC's 255) become the pipeline's ignore value 255; ``remap``
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


def label_table(num_classes: int, ignore: Iterable[int] = (), remap: Mapping[int, int] | None = None,
                size: int = 1 << 16) -> np.ndarray:
  """int32 lookup file value -> class (IGNORE for ignored, -1 for a value that is not a class)."""
  if not 1 <= num_classes <= IGNORE:
    raise ValueError(f"num_classes must be in 1..{IGNORE} (255 is the ignore value), got {num_classes}")
  table = np.full((size,), -1, np.int32)
  table[:num_classes] = np.arange(num_classes)
  for value, cls in (remap or {}).items():
    if not (0 <= int(cls) < num_classes or int(cls) == IGNORE) or not 0 <= int(value) < size:
      raise ValueError(f"remap {int(value)} -> {int(cls)}: the target must be a class in "
                       f"0..{num_classes - 1} (or {IGNORE} to ignore it)")
    table[int(value)] = int(cls)
  for value in ignore:
    if not 0 <= int(value) < size:
      raise ValueError(f"ignore value {value} is not a label value (0..{size - 1})")
    table[int(value)] = IGNORE
  return table


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
    self.ignore = tuple(int(v) for v in ignore)
    self._table = label_table(self.num_classes, self.ignore, remap)
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

  def classes(self, label: np.ndarray, rid: str) -> np.ndarray:
    """File values -> uint8 classes (255 = ignore); a value that is not a class: skip."""
    values = label.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() >= self._table.size):
      self.skip(rid, f"label values {int(values.min())}..{int(values.max())} are outside "
                     f"0..{self._table.size - 1}")
    out = self._table[values]
    if (out < 0).any():
      bad = np.unique(values[out < 0])[:5].tolist()
      self.skip(rid, f"label values {bad} are neither classes 0..{self.num_classes - 1} nor "
                     f"ignored {list(self.ignore)} (more classes than the task's "
                     f"{self.num_classes}?)")
    return out.astype(np.uint8)

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
    return {"image": image, "label": self.classes(np.asarray(label), rid), "id": rid}
