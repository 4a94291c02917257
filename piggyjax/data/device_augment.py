"""The training views (random scale, crop, flip, resize) drawn and made on the accelerator.

Opt-in with ``config.data.device_augment``. The host then only reads a record and copies a
square of it into a fixed-size canvas (no resampling for a prepared record); the jitted
``augment`` does the rest on the device, seeded by a key derived from the training step, so a
run stays deterministic and a resumed run sees the same views as an unbroken one.

Host (``host_row``): the square spans the image's shorter side; where it sits along the longer
side is drawn on the host (a slice, from grain's per-position rng). It is stored at
``min(shorter side, canvas_size(crop))`` pixels (``side``), top-left in a ``canvas_size`` square;
the rest of the canvas is zeros (image) and 255 (label), and no view ever reads it.

Device (``augment``): per row, as ``transforms.train_view`` does in the square: the square is
resized to ``round(crop * U(TRAIN_SCALE))`` (at least ``crop``) pixels, a ``crop`` window is taken
at a random integer offset, flipped with probability 1/2. The image is resampled with PIL's
antialiased bilinear filter (triangle, widened by the shrink factor, weights renormalised over
the valid square: PIL's edge rule), the label with PIL's nearest rule (a class is never blended;
a sample outside the square would read 255).

What differs from the host views (``transforms``): the window's position along the image's
longer side is the sum of the host's square offset and the device's crop offset, so windows at
the far ends of a long side are drawn less often than by ``train_view`` (the same where the
image is square or the view is at scale 1); values differ from PIL by float rounding (<= 1,
labels only at exact ties); a raw original larger than the canvas is resampled twice (to the
canvas on the host, to the view here), as a prepared record is.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from piggyjax.data import transforms

VOID = 255


def canvas_size(image_size: int) -> int:
  """The canvas side: the largest square a training view reads (the stored size of a prepared
  set, ``prepared.stored_shorter``)."""
  return transforms.largest_view(image_size)


def enabled(config: Any) -> bool:
  """``config.data.device_augment`` (False when absent); anything but a bool is an error."""
  data = config.get("data") if hasattr(config, "get") else None
  value = data.get("device_augment", False) if data is not None else False
  if not isinstance(value, bool):
    raise ValueError(f"config.data.device_augment={value!r} must be True or False (views made "
                     "on the accelerator, or on the host); set --config.data.device_augment=True")
  return value


# ---- host ------------------------------------------------------------------------------------

def host_row(example: dict[str, Any], image_size: int, rng: np.random.Generator,
             labels: bool) -> dict[str, np.ndarray]:
  """One training row for ``augment``: ``image`` uint8 SxSx3, ``label`` uint8 SxS (if
  ``labels``), ``side`` int32 (the valid square's side), ``valid``; S = canvas_size."""
  s = canvas_size(image_size)
  image = example["image"]
  h, w = image.shape[:2]
  m = min(h, w)
  # A fraction, not an integer offset: a prepared record (stored smaller) and its raw source
  # then cut about the same square of the original for the same draw.
  off = int(round(float(rng.random()) * (max(h, w) - m)))
  top, left = (off, 0) if h > w else (0, off)
  side = min(m, s)
  out = {"side": np.int32(side), "valid": np.bool_(True)}
  canvas = np.zeros((s, s, 3), np.uint8)
  canvas[:side, :side] = _square(image, top, left, m, side, Image.BILINEAR)
  out["image"] = canvas
  if labels:
    lab = np.full((s, s), VOID, np.uint8)
    lab[:side, :side] = _square(example["label"], top, left, m, side, Image.NEAREST)
    out["label"] = lab
  return out


def _square(a: np.ndarray, top: int, left: int, m: int, side: int, resample: int) -> np.ndarray:
  if side == m:  # a prepared record, or an original no larger than the canvas: a plain slice
    return a[top:top + m, left:left + m]
  # A raw original larger than the canvas: only the square is resized (PIL's box).
  return np.asarray(Image.fromarray(a).resize((side, side), resample,
                                              box=(left, top, left + m, top + m)))


def stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """grain's batch_fn for ``host_row`` rows. Labels stay uint8 until the device (4x fewer
  bytes to move); ``augment`` returns them as int32 like every other batch."""
  batch = {"image": np.stack([r["image"] for r in rows]),
           "side": np.array([r["side"] for r in rows], np.int32),
           "valid": np.array([r["valid"] for r in rows], bool)}
  if "label" in rows[0]:
    batch["label"] = np.stack([r["label"] for r in rows])
  return batch


# ---- device ----------------------------------------------------------------------------------

def step_key(seed: int, step):
  """The key for the batch of training step ``step`` (a traced int inside the train step)."""
  import jax
  return jax.random.fold_in(jax.random.key(int(seed)), step)


def _taps(start, c, side, size: int, canvas: int):
  """PIL's antialiased bilinear along one axis: for each of ``size`` outputs, the canvas
  indices [size, K] and weights [size, K] (rows sum to 1) of the window starting at ``start``,
  ``c`` canvas pixels per output pixel; pixels at or beyond ``side`` get no weight."""
  import jax.numpy as jnp
  # Taps: pixels whose centre lies within the support, an open interval of 2 max(c, 1) <=
  # 2 canvas/size pixels, so at most ceil of that; one more for float rounding.
  k = math.ceil(2 * max(canvas / size, 1.0)) + 1
  center = start + (jnp.arange(size, dtype=jnp.float32) + 0.5) * c
  support = jnp.maximum(c, 1.0)
  first = jnp.floor(center - support + 0.5)
  idx = first[:, None] + jnp.arange(k, dtype=jnp.float32)[None, :]
  w = jnp.maximum(0.0, 1.0 - jnp.abs(idx + 0.5 - center[:, None]) / support)
  w = jnp.where((idx >= 0) & (idx < side), w, 0.0)
  w = w / jnp.sum(w, axis=1, keepdims=True)
  return jnp.clip(idx, 0, canvas - 1).astype(jnp.int32), w


def _nearest(start, c, side, size: int):
  """PIL's nearest rule: output pixel i reads floor(start + (i + 0.5) c); -1 beyond ``side``."""
  import jax.numpy as jnp
  idx = jnp.floor(start + (jnp.arange(size, dtype=jnp.float32) + 0.5) * c).astype(jnp.int32)
  return jnp.where((idx >= 0) & (idx < side), idx, -1)


def draw(key, size: int, scale: tuple[float, float] = transforms.TRAIN_SCALE):
  """One row's view, as ``transforms.train_view`` draws it in the square: the square's side
  after resizing (``shorter``), the window's integer offset in it (``top``, ``left``), the flip."""
  import jax
  import jax.numpy as jnp
  k_scale, k_top, k_left, k_flip = jax.random.split(key, 4)
  u = jax.random.uniform(k_scale, (), jnp.float32, *scale)
  shorter = jnp.maximum(size, jnp.round(size * u)).astype(jnp.int32)
  top = jax.random.randint(k_top, (), 0, shorter - size + 1)
  left = jax.random.randint(k_left, (), 0, shorter - size + 1)
  return shorter, top, left, jax.random.uniform(k_flip, ()) < 0.5


def render(image_SS3, label_SS, side, shorter, top, left, flip, size: int):
  """The view (``shorter``, ``top``, ``left``, ``flip``; ``transforms.View``'s fields) of the
  ``side``-pixel square at the canvas' top left, ``size`` pixels: (image uint8, label int32)."""
  import jax.numpy as jnp
  canvas = image_SS3.shape[0]
  c = side.astype(jnp.float32) / shorter.astype(jnp.float32)  # canvas px per output px
  y0, x0 = top.astype(jnp.float32) * c, left.astype(jnp.float32) * c
  iy, wy = _taps(y0, c, side, size, canvas)
  ix, wx = _taps(x0, c, side, size, canvas)
  ix, wx = jnp.where(flip, ix[::-1], ix), jnp.where(flip, wx[::-1], wx)  # a flip is free here
  # One row gather per tap, weighted and summed. XLA:CPU, batch 8, 384 -> 256 px: 15 ms a
  # batch, against 42 for one gather of all taps contracted by an einsum, 34 for dense
  # [size, S] weight matmuls (jax.image.scale_and_translate's way).
  taps = range(iy.shape[1])
  rows = sum(wy[:, t, None, None] * jnp.take(image_SS3, iy[:, t], axis=0).astype(jnp.float32)
             for t in taps)                                # [size, S, 3]
  cols = jnp.swapaxes(rows, 0, 1)                          # columns as rows: a row gather again
  out = sum(wx[:, t, None, None] * jnp.take(cols, ix[:, t], axis=0) for t in taps)
  image = jnp.clip(jnp.round(jnp.swapaxes(out, 0, 1)), 0, 255).astype(jnp.uint8)
  if label_SS is None:
    return image, None
  ny, nx = _nearest(y0, c, side, size), _nearest(x0, c, side, size)
  nx = jnp.where(flip, nx[::-1], nx)
  picked = label_SS[jnp.maximum(ny, 0)[:, None], jnp.maximum(nx, 0)[None, :]].astype(jnp.int32)
  outside = (ny < 0)[:, None] | (nx < 0)[None, :]
  return image, jnp.where(outside, VOID, picked)


def _one(key, image_SS3, label_SS, side, size: int):
  return render(image_SS3, label_SS, side, *draw(key, size), size)


def augment(batch: dict, key, image_size: int) -> dict:
  """A ``host_row`` batch -> a training batch (``image`` uint8 BxCxCx3, ``label`` int32 BxCxC,
  ``valid``), C = ``image_size``. Pure; call it under jit (the train step does)."""
  import jax
  size = int(image_size)
  image = batch["image"]
  if image.ndim != 4 or image.shape[1] != image.shape[2] or image.shape[3] != 3:
    raise ValueError(f"device_augment: batch['image'] must be B x S x S x 3 canvases, got "
                     f"{image.shape}; make the batches with data.batches(..., device_augment=True)")
  if image.shape[1] < size or "side" not in batch:
    raise ValueError(f"device_augment: canvases of {image.shape[1]} px (side given: "
                     f"{'side' in batch}) cannot give {size} px crops; make the batches with "
                     f"data.batches(..., image_size={size}, device_augment=True)")
  keys = jax.random.split(key, image.shape[0])
  label = batch.get("label")
  fn = lambda k, im, lab, s: _one(k, im, lab, s, size)  # noqa: E731
  if label is None:
    images, _ = jax.vmap(lambda k, im, s: fn(k, im, None, s))(keys, image, batch["side"])
    return {"image": images, "valid": batch["valid"]}
  images, labels = jax.vmap(fn)(keys, image, label, batch["side"])
  return {"image": images, "label": labels, "valid": batch["valid"]}
