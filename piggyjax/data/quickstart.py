"""An offline source from the photos that pip packages ship, with generated segmentation labels.

Sample ``i`` is a random square crop of photo ``i % n_photos``: deterministic by (seed, split,
kind, i), so many samples come from a few photos. As in the paper, where VOC's photos are not
COCO's, ``seg_voc`` crops its own three photos (``VOC_PHOTOS``) and the COCO stand-ins
(``seg_coco`` and ``images``, which colorization and style read) the other seven: when VOC
shared the colorization photos, fine-tune's VOC training was extra training on them, a head
start no mask over the task-1 network can have (docs/ABLATIONS.md, "Quickstart colorization").
The COCO stand-ins' eval split reads two photos no training split reads (``EVAL_PHOTOS``), as
COCO's val photos are not its train photos: scored on new crops of the photos it trained on,
colorization measured how well a network memorised seven photos' colours, not how it colours
a photo it has not seen. ``seg_voc``'s labels are drawn textures whatever the photo, and it
keeps crops of its three photos in both splits.
The segmentation kinds draw filled shapes INTO the crop, so the label is visible in the pixels
and learnable:
- ``seg_coco``: 5 classes keyed by COLOUR (0 photo, 1 red, 2 green, 3 blue, 4 yellow tint).
- ``seg_voc``: 6 classes keyed by TEXTURE (0 photo, 1 horizontal stripes, 2 vertical stripes,
  3 checkerboard, 4 dots, 5 diagonal stripes), black/white over the photo.
Two different label sets, so the two tasks stay distinct. ``images`` gives the crops alone.
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from piggyjax.data import records

# (package, folder inside it, file): photographs only, no synthetic or microscopy images.
PHOTOS = (
    ("skimage", "data", "astronaut.png"), ("skimage", "data", "chelsea.png"),
    ("skimage", "data", "coffee.png"), ("skimage", "data", "rocket.jpg"),
    ("skimage", "data", "motorcycle_left.png"), ("skimage", "data", "hubble_deep_field.jpg"),
    ("skimage", "data", "camera.png"), ("sklearn", "datasets/images", "china.jpg"),
    ("sklearn", "datasets/images", "flower.jpg"), ("matplotlib", "mpl-data/sample_data", "grace_hopper.jpg"),
)
VOC_PHOTOS = frozenset({"china", "flower", "grace_hopper"})  # seg_voc's own; the rest are COCO's
EVAL_PHOTOS = frozenset({"chelsea", "coffee"})  # the COCO stand-ins' eval split, and only it
LABEL_SETS: dict[str, tuple[str, ...]] = {
    "seg_coco": ("photo", "red", "green", "blue", "yellow"),
    "seg_voc": ("photo", "h-stripes", "v-stripes", "checker", "dots", "diagonal"),
}
COLOURS = np.array([(0, 0, 0), (230, 40, 40), (40, 200, 60), (40, 80, 230), (240, 220, 40)], np.float32)
KINDS = ("seg_coco", "seg_voc", "images")
SPLITS = {"train": 0, "eval": 1}
MAX_PHOTO_SIDE = 512  # photos are downscaled once: crops are small, decoding big ones each time is waste

_photos: list[tuple[str, np.ndarray]] | None = None
_photos_lock = threading.Lock()


def photo_paths() -> list[Path]:
  """The shipped photos that exist in this environment (located without importing the packages)."""
  found = []
  for package, folder, name in PHOTOS:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
      continue
    path = Path(list(spec.submodule_search_locations)[0]) / folder / name
    if path.is_file():
      found.append(path)
  return found


def photo_names(kind: str, split: str) -> frozenset[str]:
  """The photos a kind's split crops: VOC_PHOTOS for seg_voc in both splits; for the COCO
  stand-ins, EVAL_PHOTOS in the eval split and the rest of the non-VOC photos in training."""
  if kind == "seg_voc":
    return VOC_PHOTOS
  coco = frozenset(Path(f).stem for *_, f in PHOTOS) - VOC_PHOTOS
  return coco & EVAL_PHOTOS if split == "eval" else coco - EVAL_PHOTOS


def load_photos() -> list[tuple[str, np.ndarray]]:
  global _photos
  with _photos_lock:
    if _photos is None:
      photos = []
      for path in photo_paths():
        img = Image.fromarray(records.to_rgb(Image.open(path)))
        img.thumbnail((MAX_PHOTO_SIDE, MAX_PHOTO_SIDE), Image.BILINEAR)
        photos.append((path.stem, np.asarray(img)))
      if not photos:
        raise FileNotFoundError("quickstart: none of the photos shipped by scikit-image, scikit-learn "
                                "or matplotlib was found; reinstall them, or use --config.data.source=samples")
      _photos = photos
    return _photos


def textures(size: int) -> np.ndarray:
  """uint8 KxHxW of 0/1 patterns for the seg_voc classes; period scales with the crop size."""
  half = max(2, size // 16)
  yy, xx = np.mgrid[:size, :size]
  period = 2 * half
  dots = ((yy % period - half + 0.5) ** 2 + (xx % period - half + 0.5) ** 2) < (0.6 * half) ** 2
  return np.stack([np.zeros_like(yy), (yy // half) % 2, (xx // half) % 2,
                   (yy // half + xx // half) % 2, dots, ((xx + yy) // half) % 2]).astype(np.uint8)


def draw_shapes(rng: np.random.Generator, size: int, num_classes: int) -> np.ndarray:
  """uint8 HxW class map of 1-4 random filled shapes (later shapes cover earlier ones)."""
  canvas = Image.new("L", (size, size), 0)
  draw = ImageDraw.Draw(canvas)
  for _ in range(rng.integers(1, 5)):
    cls = int(rng.integers(1, num_classes))
    w, h = rng.uniform(0.2, 0.55, size=2) * size
    cx, cy = rng.uniform(0, size, size=2)
    box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    shape = rng.integers(3)
    if shape == 0:
      draw.ellipse(box, fill=cls)
    elif shape == 1:
      draw.rectangle(box, fill=cls)
    else:
      angles = np.sort(rng.uniform(0, 2 * np.pi, size=int(rng.integers(3, 7))))
      draw.polygon([(cx + w / 2 * np.cos(a), cy + h / 2 * np.sin(a)) for a in angles], fill=cls)
  return np.asarray(canvas)


def paint(image: np.ndarray, label: np.ndarray, kind: str) -> np.ndarray:
  """Blend each class's colour or texture into the photo where the label says so."""
  out = image.astype(np.float32)
  inside = label > 0
  if kind == "seg_coco":
    out[inside] = 0.7 * COLOURS[label[inside]] + 0.3 * out[inside]
  else:
    pattern = textures(label.shape[0])
    ink = np.take_along_axis(pattern, label[None].astype(np.intp), axis=0)[0] * 255.0
    out[inside] = 0.6 * ink[inside][:, None] + 0.4 * out[inside]
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class Quickstart(records.Source):

  def __init__(self, kind: str, split: str = "train", size: int = 96, length: int = 512,
               seed: int = 0):
    super().__init__()
    if kind not in KINDS or split not in SPLITS:
      raise ValueError(f"quickstart kind must be one of {KINDS} and split one of {tuple(SPLITS)}, "
                       f"got {kind!r}, {split!r}")
    self.kind, self.split, self.size, self.length, self.seed = kind, split, size, length, seed
    self.has_labels = kind in LABEL_SETS
    if self.has_labels:
      self.class_names = LABEL_SETS[kind]
      self.num_classes = len(self.class_names)
    wanted = photo_names(kind, split)
    self.photos = [(n, p) for n, p in load_photos() if n in wanted]
    if not self.photos:
      raise FileNotFoundError(f"quickstart: none of the photos for {kind!r} was found "
                              f"({', '.join(sorted(wanted))}); reinstall scikit-image, scikit-learn "
                              "and matplotlib, or use --config.data.source=samples")

  def __len__(self) -> int:
    return self.length

  def crop(self, index: int) -> tuple[str, np.ndarray]:
    """The photo name and the unpainted crop at ``index``. The crop ignores the kind, so
    seg_coco and images show the same crop at index i (seg_voc crops its own photos)."""
    rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
    name, photo = self.photos[index % len(self.photos)]
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.4, 1.0) * min(h, w))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[top:top + side, left:left + side])
    return name, np.asarray(crop.resize((self.size, self.size), Image.BILINEAR))

  def __getitem__(self, index: int) -> dict[str, Any]:
    if not 0 <= index < self.length:
      raise IndexError(index)
    name, image = self.crop(index)
    out = {"image": image, "id": f"{self.split}-{index:06d}-{name}"}
    if self.has_labels:  # the shapes depend on the kind: each label set has its own maps
      shapes_rng = np.random.default_rng([self.seed, SPLITS[self.split], index, KINDS.index(self.kind)])
      label = draw_shapes(shapes_rng, self.size, self.num_classes)
      out["image"], out["label"] = paint(image, label, self.kind), label
    return out
