"""PASCAL VOC 2012 ``SegmentationClass`` from a VOCdevkit directory.

Masks are palette PNGs whose indices are the classes (0 background, 1..20 as in VOC_CLASSES,
255 = void). A mask saved as RGB in the VOC colormap is mapped back through the colormap; any
other value or colour makes the record a counted skip, never a guessed class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from piggyjax.colormap import voc_colormap
from piggyjax.data import records
from piggyjax.tasks.classes import VOC_CLASSES

VOID = 255



def find_voc2012(root: Path) -> Path:
  """Accept the VOCdevkit folder, VOC2012 itself, or a folder holding VOCdevkit/."""
  for cand in (root / "VOC2012", root, root / "VOCdevkit" / "VOC2012"):
    if (cand / "ImageSets" / "Segmentation").is_dir():
      return cand
  raise FileNotFoundError(
      f"VOC 2012: no ImageSets/Segmentation under {str(root)!r} (looked in VOC2012/, ./, "
      "VOCdevkit/VOC2012/). Pass --config.data.voc_dir=PATH/VOCdevkit or --data_dir holding VOCdevkit/.")


class VocSegmentation(records.Source):
  has_labels = True
  num_classes = len(VOC_CLASSES)
  class_names = VOC_CLASSES

  def __init__(self, root: str | Path, split: str = "train"):
    super().__init__()
    hint = "Pass --config.data.voc_dir=PATH/VOCdevkit or --data_dir holding VOCdevkit/."
    self.root = find_voc2012(records.require_dir(root, "VOC 2012", hint))
    lists = self.root / "ImageSets" / "Segmentation"
    split_file = lists / f"{split}.txt"
    if not split_file.is_file():
      have = sorted(p.stem for p in lists.glob("*.txt"))
      raise FileNotFoundError(f"VOC split list {str(split_file)!r} does not exist; splits here: {have}")
    self.ids: list[str] = []
    for line in split_file.read_text().split():
      # ids come from a text file: keep them plain names so they cannot point outside the devkit
      records.safe_join(self.root, line)
      if "/" in line or "\\" in line:
        raise ValueError(f"{split_file}: id {line!r} is not a plain file name")
      image, mask = self._paths(line)
      if not image.is_file():
        self.note_skip(line, f"image missing: {image}")
      elif not mask.is_file():
        self.note_skip(line, f"image without its mask: {mask} missing")
      else:
        self.ids.append(line)
    if not self.ids:
      raise ValueError(f"VOC split {split!r} in {str(self.root)!r} has no image with a mask "
                       f"({len(self.skipped)} skipped)")
    self._colour_to_class = {tuple(c): k for k, c in enumerate(voc_colormap()[:21])}
    self._colour_to_class[tuple(voc_colormap()[VOID])] = VOID

  def _paths(self, rid: str) -> tuple[Path, Path]:
    return (self.root / "JPEGImages" / f"{rid}.jpg", self.root / "SegmentationClass" / f"{rid}.png")

  def __len__(self) -> int:
    return len(self.ids)

  def _mask(self, mask: Image.Image, rid: str) -> np.ndarray:
    if mask.mode in ("RGB", "RGBA"):
      rgb = np.asarray(mask.convert("RGB"))
      colours, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
      classes = [self._colour_to_class.get(tuple(c)) for c in colours]
      if any(k is None for k in classes):
        bad = [tuple(int(v) for v in c) for c, k in zip(colours, classes) if k is None][:4]
        self.skip(rid, f"RGB mask has colours outside the VOC colormap, e.g. {bad}")
      return np.asarray(classes, np.uint8)[inverse.reshape(-1)].reshape(rgb.shape[:2])
    if mask.mode not in ("P", "L") and not mask.mode.startswith("I"):
      self.skip(rid, f"mask mode {mask.mode} is not a class-index image")
    label = np.asarray(mask)
    bad = np.unique(label[((label < 0) | (label >= len(VOC_CLASSES))) & (label != VOID)])
    if bad.size:
      self.skip(rid, f"mask values {bad[:5].tolist()} are neither classes 0..20 nor void 255")
    return label.astype(np.uint8)

  def __getitem__(self, index: int) -> dict[str, Any]:
    rid = self.ids[index]
    image_path, mask_path = self._paths(rid)
    image = records.read_rgb(image_path, self, rid)
    mask = records.open_image(mask_path, self, rid)
    if mask.size != (image.shape[1], image.shape[0]):
      self.skip(rid, f"mask is {mask.size[0]}x{mask.size[1]}, image is "
                     f"{image.shape[1]}x{image.shape[0]}")
    return {"image": image, "label": self._mask(mask, rid), "id": rid}
