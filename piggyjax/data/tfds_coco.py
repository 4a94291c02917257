"""COCO 2017 panoptic from TFDS (``coco/2017_panoptic``) through ``tfds.data_source``.

Same label convention as ``coco.py``: TFDS's ``panoptic_objects/label`` is already the category's
position in id order (0..132, things first), so only ``things_only`` needs a table.

Bad records: ``panoptic_objects`` whose id and label lists differ in length are a counted skip. A
panoptic PNG whose size differs from the image is a counted skip by default
(``on_size_mismatch='skip'``); ``'resize'`` resizes the PNG's segment ids to the image with
nearest neighbour (ids are never blended). Real TFDS data never mismatches; under
``tfds.testing.mock_data`` image and PNG get independent random sizes, so tests use ``'resize'``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from piggyjax.data import coco, records

SPLITS = {"train": "train", "eval": "validation", "val": "validation", "validation": "validation"}


class TfdsCocoPanoptic(records.Source):

  def __init__(self, split: str = "train", data_dir: str | None = None, things_only: bool = False,
               labels: bool = True, on_size_mismatch: str = "skip",
               name: str = "coco/2017_panoptic"):
    super().__init__()
    if on_size_mismatch not in ("skip", "resize"):
      raise ValueError(f"on_size_mismatch must be 'skip' or 'resize', got {on_size_mismatch!r}")
    import tensorflow_datasets as tfds  # heavy, and the coco builder needs TensorFlow: import late
    self.has_labels = labels
    self.on_size_mismatch = on_size_mismatch
    self._table = coco.train_id_table(
        [k < coco.NUM_THINGS for k in range(len(coco.COCO_PANOPTIC_NAMES))], things_only)
    if labels:
      self.class_names = coco.category_names(
          [k < coco.NUM_THINGS for k in range(len(coco.COCO_PANOPTIC_NAMES))],
          coco.COCO_PANOPTIC_NAMES, things_only)
      self.num_classes = len(self.class_names)
    try:
      self._ds = tfds.data_source(name, split=SPLITS.get(split, split), data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError, a missing TF, a wrong split: all need the same hint
      raise FileNotFoundError(
          f"TFDS {name} split {split!r} is not available in data_dir={data_dir!r} "
          f"({type(e).__name__}: {e}). Build it with `tfds build {name} --data_dir=DIR` and pass "
          "--config.data.tfds_data_dir=DIR, or use --config.data.source=dirs with a COCO directory."
      ) from e

  def __len__(self) -> int:
    return len(self._ds)

  def __getitem__(self, index: int) -> dict[str, Any]:
    r = self._ds[index]
    rid = r.get("image/filename", f"tfds-{index}")
    rid = rid.decode() if isinstance(rid, bytes) else str(rid)
    image = np.asarray(r["image"])
    if image.ndim == 2 or image.shape[-1] == 1:
      image = np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=-1)
    out = {"image": image.astype(np.uint8), "id": rid}
    if not self.has_labels:
      return out
    objects = r["panoptic_objects"]
    ids, labels = np.asarray(objects["id"], np.int64), np.asarray(objects["label"], np.int64)
    if ids.shape != labels.shape:
      self.skip(rid, f"panoptic_objects has {ids.size} ids but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= len(self._table)):
      self.skip(rid, f"panoptic label outside 0..{len(self._table) - 1}")
    png = Image.fromarray(np.asarray(r["panoptic_image"], np.uint8))
    if png.size != (image.shape[1], image.shape[0]):
      if self.on_size_mismatch == "skip":
        self.skip(rid, f"panoptic PNG is {png.size[0]}x{png.size[1]}, image is "
                       f"{image.shape[1]}x{image.shape[0]}")
      png = png.resize((image.shape[1], image.shape[0]), Image.NEAREST)
    out["label"] = coco.panoptic_label(png, ids, self._table[labels], self, rid)
    return out
