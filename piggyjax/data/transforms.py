"""Geometry that keeps image and label aligned: one set of parameters, applied to both.

Images resize bilinearly (PIL antialiases when shrinking); labels resize with nearest neighbour
so a pixel's class is always one of the classes that was there.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

TRAIN_SCALE = (1.0, 1.5)  # shorter side = image_size * U(TRAIN_SCALE) before the random crop


def largest_view(image_size: int) -> int:
  """The largest shorter side a training view resizes to: all of an image it can ever read."""
  return math.ceil(int(image_size) * TRAIN_SCALE[1])


class View(NamedTuple):
  shorter: int  # shorter side after resizing
  top: int
  left: int
  flip: bool


def resized_shape(h: int, w: int, shorter: int) -> tuple[int, int]:
  scale = shorter / min(h, w)
  return max(shorter, round(h * scale)), max(shorter, round(w * scale))


def eval_view(h: int, w: int, size: int) -> View:
  rh, rw = resized_shape(h, w, size)
  return View(size, (rh - size) // 2, (rw - size) // 2, False)


def train_view(h: int, w: int, size: int, rng: np.random.Generator,
               scale: tuple[float, float] = TRAIN_SCALE) -> View:
  shorter = max(size, int(round(size * rng.uniform(*scale))))
  rh, rw = resized_shape(h, w, shorter)
  return View(shorter, int(rng.integers(0, rh - size + 1)), int(rng.integers(0, rw - size + 1)),
              bool(rng.random() < 0.5))


def frame_hw(example: dict[str, Any]) -> tuple[int, int]:
  """The (h, w) a view is drawn in: the image's own, or for a prepared record (stored smaller
  than its original) the original's, so both give the same crop for the same random draws."""
  hw = example.get("frame_hw")
  return (int(hw[0]), int(hw[1])) if hw is not None else example["image"].shape[:2]


def _apply(array: np.ndarray, view: View, size: int, resample: int,
           frame: tuple[int, int] | None = None) -> np.ndarray:
  h, w = array.shape[:2]
  rh, rw = resized_shape(*(frame or (h, w)), view.shorter)
  if (rh, rw) == (h, w):
    out = array[view.top:view.top + size, view.left:view.left + size]
  else:
    # Resize only the crop window (PIL's box, in source pixels): resize-then-crop up to
    # rounding, without ever building the whole resized image, which for a legal 1 x 10^6
    # PNG would be 32 x 3.2*10^7 pixels.
    sy, sx = h / rh, w / rw
    box = (view.left * sx, view.top * sy, (view.left + size) * sx, (view.top + size) * sy)
    img = Image.fromarray(array).resize((size, size), resample, box=box)
    # PIL flips 4x faster than numpy's copy of a negative-stride view (0.06 vs 0.26 ms at 256).
    return np.asarray(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if view.flip else img)
  return out[:, ::-1] if view.flip else out


def apply_view(example: dict[str, Any], view: View, size: int) -> dict[str, np.ndarray]:
  frame = frame_hw(example)
  out = {"image": np.ascontiguousarray(_apply(example["image"], view, size, Image.BILINEAR, frame))}
  if "label" in example and np.ndim(example["label"]) == 0:  # a class per image: unchanged
    out["label"] = example["label"]
  elif "label" in example:
    out["label"] = np.ascontiguousarray(_apply(example["label"], view, size, Image.NEAREST, frame))
  return out
