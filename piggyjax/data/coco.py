"""COCO 2017 panoptic as semantic segmentation, from a directory in the official layout.

Label convention (also used by the TFDS source):
- default, 133 classes: the panoptic categories sorted by category id get training ids 0..132
  (0 person ... 79 toothbrush are the 80 things, 80 banner ... 132 rug-merged the 53 stuff); this
  is also the order of TFDS's ``panoptic_objects/label``.
- ``things_only``, 81 classes: 0 = background (every stuff segment), things 1..80 in the same order.
- 255 = void: panoptic id 0 (unlabeled) and any id absent from the image's ``segments_info``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from piggyjax.data import records

log = logging.getLogger("piggyjax.data")
VOID = 255
NUM_THINGS = 80
COCO_PANOPTIC_NAMES: tuple[str, ...] = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
    'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
    'teddy bear', 'hair drier', 'toothbrush', 'banner', 'blanket', 'bridge', 'cardboard',
    'counter', 'curtain', 'door-stuff', 'floor-wood', 'flower', 'fruit', 'gravel', 'house',
    'light', 'mirror-stuff', 'net', 'pillow', 'platform', 'playingfield', 'railroad', 'river',
    'road', 'roof', 'sand', 'sea', 'shelf', 'snow', 'stairs', 'tent', 'towel', 'wall-brick',
    'wall-stone', 'wall-tile', 'wall-wood', 'water-other', 'window-blind', 'window-other',
    'tree-merged', 'fence-merged', 'ceiling-merged', 'sky-other-merged', 'cabinet-merged',
    'table-merged', 'floor-other-merged', 'pavement-merged', 'mountain-merged', 'grass-merged',
    'dirt-merged', 'paper-merged', 'food-other-merged', 'building-other-merged', 'rock-merged',
    'wall-other-merged', 'rug-merged',)


def train_id_table(is_thing: Sequence[bool], things_only: bool) -> np.ndarray:
  """Contiguous category index (0..K-1, sorted by category id) -> training id."""
  is_thing = np.asarray(is_thing, bool)
  if not things_only:
    return np.arange(len(is_thing), dtype=np.uint8)
  table = np.zeros(len(is_thing), np.uint8)
  table[is_thing] = np.arange(1, is_thing.sum() + 1)
  return table


def category_names(is_thing: Iterable[bool], names: Sequence[str], things_only: bool) -> tuple[str, ...]:
  if not things_only:
    return tuple(names)
  return ("background",) + tuple(n for n, t in zip(names, is_thing) if t)


def ids_from_rgb(png_HW3: np.ndarray) -> np.ndarray:
  """The panoptic PNG encoding: id = R + 256 G + 256^2 B."""
  rgb = png_HW3.astype(np.int64)
  return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def semantic_from_ids(ids_HW: np.ndarray, segment_ids: np.ndarray,
                      segment_labels: np.ndarray) -> tuple[np.ndarray, int]:
  """Per-pixel training id, VOID where the id is 0 or unknown; also the count of unknown pixels."""
  label = np.full(ids_HW.shape, VOID, np.uint8)
  if len(segment_ids):
    order = np.argsort(segment_ids)
    sorted_ids, sorted_labels = np.asarray(segment_ids)[order], np.asarray(segment_labels)[order]
    pos = np.clip(np.searchsorted(sorted_ids, ids_HW), 0, len(sorted_ids) - 1)
    hit = (sorted_ids[pos] == ids_HW) & (ids_HW != 0)
    label[hit] = sorted_labels[pos[hit]]
  else:
    hit = np.zeros(ids_HW.shape, bool)
  unknown = int(np.count_nonzero(~hit & (ids_HW != 0)))
  return label, unknown


def panoptic_label(png: Image.Image, segment_ids: np.ndarray, segment_labels: np.ndarray,
                   source: records.Source, record_id: str) -> np.ndarray:
  """uint8 HxW training ids from a decoded panoptic PNG; a PNG that is not RGB is a skip."""
  if png.mode == "RGBA":
    png = png.convert("RGB")
  if png.mode != "RGB":
    source.skip(record_id, f"panoptic PNG has mode {png.mode}, expected RGB segment ids")
  # RGBX viewed as little-endian uint32 is R + 256 G + 256^2 B once the X byte is masked:
  # the same ids as ids_from_rgb, about 4x faster on a 640x480 PNG.
  w, h = png.size
  ids = np.frombuffer(png.convert("RGBX").tobytes(), "<u4").reshape(h, w) & 0xFFFFFF
  label, unknown = semantic_from_ids(ids, segment_ids, segment_labels)
  if unknown:  # void, so never a wrong class; but the annotation is suspicious: say so
    log.warning("%s: %d pixels carry segment ids missing from segments_info; labelled void (255)",
                record_id, unknown)
  return label


def _is_int(v: Any) -> bool:
  return type(v) is int  # not bool, not a float, not a string of digits


def read_annotations(path: Path) -> dict[str, Any]:
  """The panoptic JSON, with what every record relies on checked: a clear error naming the file
  and the field for a file that is not one (or is damaged); per-record problems are left to
  ``_index``, which skips and counts them."""
  try:
    with open(path, "rb") as f:
      meta = json.load(f)
  except ValueError as e:  # bad JSON or bad UTF-8
    raise ValueError(f"COCO panoptic annotations {str(path)!r} are not valid JSON ({e}); "
                     "the file is damaged or not an annotation file") from None
  def bad(what: str) -> ValueError:
    return ValueError(f"COCO panoptic annotations {str(path)!r}: {what}; is this the official "
                      "panoptic_<split>.json?")
  if not isinstance(meta, dict):
    raise bad(f"the top level is a JSON {type(meta).__name__}, not an object")
  for key in ("categories", "images", "annotations"):
    if not isinstance(meta.get(key), list):
      raise bad(f"{key!r} is {'missing' if key not in meta else type(meta[key]).__name__}, "
                "expected a list")
  ids = set()
  for k, c in enumerate(meta["categories"]):  # class ids depend on all of them: no skipping here
    if not (isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), str)
            and isinstance(c.get("isthing", 0), (int, bool))):
      raise bad(f"categories[{k}] = {str(c)[:120]} lacks an integer 'id' or a 'name'")
    if c["id"] in ids:
      raise bad(f"category id {c['id']} appears twice")
    ids.add(c["id"])
  if not ids:
    raise bad("'categories' is empty")
  return meta


def _bad_annotation(a: Any) -> str | None:
  """Why one annotation entry cannot be used, or None."""
  if not (isinstance(a, dict) and _is_int(a.get("image_id")) and isinstance(a.get("file_name"), str)
          and a["file_name"]):
    return f"annotation without an integer 'image_id' and a 'file_name': {str(a)[:120]}"
  segments = a.get("segments_info", [])
  if not isinstance(segments, list):
    return f"annotation of image {a['image_id']}: 'segments_info' is not a list"
  for s in segments:
    if not (isinstance(s, dict) and _is_int(s.get("id")) and _is_int(s.get("category_id"))):
      return f"annotation of image {a['image_id']}: segment {str(s)[:80]} lacks integer 'id'/'category_id'"
    if not 0 < s["id"] < 256 ** 3:  # the PNG holds 24-bit ids; 0 is 'unlabeled'
      return f"annotation of image {a['image_id']}: segment id {s['id']} cannot occur in a panoptic PNG"
  return None


class CocoPanopticDir(records.Source):
  """``<root>/<split>/*.jpg``, ``<root>/annotations/panoptic_<split>.json`` and ``.../panoptic_<split>/*.png``."""
  has_labels = True

  def __init__(self, root: str | Path, split: str = "val2017", things_only: bool = False):
    super().__init__()
    hint = "Pass --config.data.coco_dir=DIR (or --data_dir) holding the official COCO panoptic layout."
    root = records.require_dir(root, "COCO directory", hint)
    self.image_dir = records.require_dir(root / split, f"COCO {split} images", hint)
    json_path = records.require_file(root / "annotations" / f"panoptic_{split}.json",
                                     "COCO panoptic annotations", hint)
    self.png_dir = records.require_dir(root / "annotations" / f"panoptic_{split}",
                                       "COCO panoptic PNGs", hint)
    meta = read_annotations(json_path)
    categories = sorted(meta["categories"], key=lambda c: c["id"])
    table = train_id_table([bool(c.get("isthing", 0)) for c in categories], things_only)
    self.train_id = {c["id"]: int(table[k]) for k, c in enumerate(categories)}
    self.class_names = category_names([bool(c.get("isthing", 0)) for c in categories],
                                      [c["name"] for c in categories], things_only)
    self.num_classes = len(self.class_names)
    self._records = self._index(meta)
    if not self._records:
      raise ValueError(f"no usable COCO panoptic record in {str(root)!r} ({len(self.skipped)} "
                       f"skipped: {list(self.skipped.items())[:3]})")

  def _index(self, meta: dict[str, Any]) -> list[tuple[str, Path, Path, np.ndarray, np.ndarray]]:
    by_image = {}
    for k, a in enumerate(meta["annotations"]):
      why = _bad_annotation(a)
      if why:
        self.note_skip(f"annotations[{k}]", why)
      else:
        by_image[a["image_id"]] = a
    images = []
    for k, image in enumerate(meta["images"]):
      if not (isinstance(image, dict) and _is_int(image.get("id"))
              and isinstance(image.get("file_name"), str) and image["file_name"]):
        self.note_skip(f"images[{k}]", f"image entry without an integer 'id' and a 'file_name': "
                                       f"{str(image)[:120]}")
      else:
        images.append(image)
    out = []
    for image in sorted(images, key=lambda im: im["id"]):
      rid = Path(image["file_name"]).stem
      ann = by_image.get(image["id"])
      if ann is None:
        self.note_skip(rid, "image has no panoptic annotation")
        continue
      image_path = records.safe_join(self.image_dir, image["file_name"])
      png_path = records.safe_join(self.png_dir, ann["file_name"])
      if not image_path.is_file() or not png_path.is_file():
        missing = image_path if not image_path.is_file() else png_path
        self.note_skip(rid, f"file missing: {missing}")
        continue
      segments = ann.get("segments_info", [])
      unknown = sorted({s["category_id"] for s in segments} - set(self.train_id))
      if unknown:
        self.note_skip(rid, f"unknown category ids {unknown}")
        continue
      ids = np.array([s["id"] for s in segments], np.int64)
      labels = np.array([self.train_id[s["category_id"]] for s in segments], np.uint8)
      out.append((rid, image_path, png_path, ids, labels))
    return out

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> dict[str, Any]:
    rid, image_path, png_path, ids, labels = self._records[index]
    image = records.read_rgb(image_path, self, rid)
    png = records.open_image(png_path, self, rid)
    if png.size != (image.shape[1], image.shape[0]):
      self.skip(rid, f"panoptic PNG is {png.size[0]}x{png.size[1]}, image is "
                     f"{image.shape[1]}x{image.shape[0]}")
    return {"image": image, "label": panoptic_label(png, ids, labels, self, rid), "id": rid}
