"""What every source shares: the skip-and-count rule, safe paths, decoding to RGB uint8."""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger("piggyjax.data")

# PIL raises these for truncated, corrupt or non-image files (UnidentifiedImageError is an OSError).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class SkipRecord(Exception):
  """``src[i]`` raises this for a record that cannot give a correct example.

  The pipeline drops the record (train) or pads its row with ``valid=False`` (eval); the source
  has already counted and logged it in ``src.skipped``.
  """


class BadRecord(ValueError):
  """What a skip becomes under ``strict`` (``config.data.strict``): the run stops on it."""


_LOCKS = {type(threading.Lock()): "Lock", type(threading.RLock()): "RLock"}  # by threading name


class Source:
  """Random-access base: ``len``, ``src[i] -> dict``, and an inspectable record of skips."""
  has_labels: bool = False
  num_classes: int | None = None
  class_names: tuple[str, ...] = ()
  strict: bool = False  # raise BadRecord instead of skipping (set by make_source from config)

  def __init__(self) -> None:
    # record id -> reason. A dict, not a counter, so re-reading a bad record every epoch counts once.
    self.skipped: dict[str, str] = {}
    self._lock = threading.Lock()

  def __len__(self) -> int:
    raise NotImplementedError

  def __getitem__(self, index: int) -> dict[str, Any]:
    raise NotImplementedError

  # Pickling (grain's worker processes get a copy of the source): locks do not pickle, so the
  # copy gets fresh ones, and the skips known so far (a worker then logs only new ones; what a
  # worker skips stays in its own copy). Subclasses with other unpicklable state extend these.
  def __getstate__(self) -> dict[str, Any]:
    state = {k: v for k, v in self.__dict__.items() if type(v) not in _LOCKS}
    state["_locks"] = {k: _LOCKS[type(v)] for k, v in self.__dict__.items() if type(v) in _LOCKS}
    state["skipped"] = dict(self.skipped)
    return state

  def __setstate__(self, state: dict[str, Any]) -> None:
    state = dict(state)
    for name, kind in state.pop("_locks", {"_lock": "Lock"}).items():
      state[name] = getattr(threading, kind)()
    self.__dict__.update(state)

  def note_skip(self, record_id: str, reason: str) -> None:
    with self._lock:
      first = record_id not in self.skipped
      self.skipped[record_id] = reason
      count = len(self.skipped)
    if first:
      log.warning("%s: skipping %s: %s (%d skipped so far)", type(self).__name__, record_id,
                  reason, count)

  def skip(self, record_id: str, reason: str) -> NoReturn:
    if self.strict:
      raise BadRecord(f"{type(self).__name__}: record {record_id}: {reason} (config.data.strict "
                      "is set; unset it to skip such records and count them)")
    self.note_skip(record_id, reason)
    raise SkipRecord(f"{record_id}: {reason}")


def require_dir(path: str | os.PathLike, what: str, hint: str) -> Path:
  """A directory that must exist; the error says which path and what to pass instead."""
  p = Path(path).expanduser()
  if not p.is_dir():
    raise FileNotFoundError(f"{what}: directory {str(p)!r} does not exist. {hint}")
  return p


def require_file(path: str | os.PathLike, what: str, hint: str) -> Path:
  p = Path(path).expanduser()
  if not p.is_file():
    raise FileNotFoundError(f"{what}: file {str(p)!r} does not exist. {hint}")
  return p


def safe_join(root: Path, relative: str) -> Path:
  """``root / relative`` for a name read from an annotation file, which must stay inside ``root``.

  Checked lexically (no '..', not absolute) rather than with resolve(), so a data directory made
  of symlinks to another disk still works.
  """
  rel = str(relative)
  norm = os.path.normpath(rel)
  if (not rel or os.path.isabs(rel) or Path(rel).drive or norm == ".."
      or norm.startswith(".." + os.sep) or ".." in Path(norm).parts or "\x00" in rel):
    raise ValueError(f"annotation path {rel!r} leaves the data directory {str(root)!r}; "
                     "refusing to read it (is the annotation file the right one?)")
  return root / norm


def to_rgb(img: Image.Image) -> np.ndarray:
  """Any PIL mode as uint8 HxWx3 RGB.

  16-bit gray is scaled by 1/257 (PIL's own convert would clip at 255, turning most of the image
  white); alpha is composited over white (a transparent background reads as paper, not as black).
  """
  mode = img.mode
  if mode.startswith("I;16") or mode == "I":
    a = np.asarray(img).astype(np.float64)
    # 'I' is int32: 16-bit PNGs in some Pillow versions, or plain 8-bit data widened.
    scale = 257.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 1.0
    gray = np.clip(np.rint(a / scale), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if mode == "F":
    a = np.asarray(img, np.float64)
    a = a * 255.0 if a.size and a.max() <= 1.0 else a  # float images are usually in [0, 1]
    gray = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), np.uint8)
  if mode != "RGB":
    img = img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV
  return np.asarray(img, np.uint8)


# Per thread: the shorter side (pixels) its caller will still need, or None for full size.
_decode_hint = threading.local()


@contextlib.contextmanager
def decode_at_least(shorter: int | None):
  """Inside, ``open_image`` may decode a JPEG at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling,
  PIL's ``draft``) while its shorter side stays >= ``shorter``. Only for images without a label:
  a label is drawn on the full image's grid. Per thread, so grain's threads set their own."""
  before = getattr(_decode_hint, "shorter", None)
  _decode_hint.shorter = shorter
  try:
    yield
  finally:
    _decode_hint.shorter = before


def _draft(img: Image.Image, w: int, h: int) -> None:
  want = getattr(_decode_hint, "shorter", None)
  if want and img.format == "JPEG" and min(w, h) >= 2 * want:
    img.draft(None, (want, want))  # the largest of 1/2, 1/4, 1/8 keeping both sides >= want


def open_image(path: Path, source: Source, record_id: str) -> Image.Image:
  """Open and fully decode, so a truncated file fails here (as a counted skip), not later.

  The size is checked from the header before any pixel is decoded: no pixels, or more than
  PIL's ``Image.MAX_IMAGE_PIXELS`` (where PIL itself only warns, up to twice that), is a skip.
  """
  try:
    with Image.open(path) as img:
      w, h = img.size
      limit = Image.MAX_IMAGE_PIXELS
      if w < 1 or h < 1:
        source.skip(record_id, f"{path} is {w}x{h}: no pixels")
      if limit and w * h > limit:
        source.skip(record_id, f"{path} is {w}x{h}, over Image.MAX_IMAGE_PIXELS={limit} "
                               "(a decompression bomb?); raise that limit if it is a real image")
      _draft(img, w, h)
      img.load()  # the pixels stay usable after the file is closed
    return img
  except FileNotFoundError:
    source.skip(record_id, f"file missing: {path}")
  except (SkipRecord, BadRecord):
    raise
  except Exception as e:  # noqa: BLE001  a decoder fed hostile bytes can raise almost anything
    source.skip(record_id, f"cannot decode {path} ({type(e).__name__}: {e})")


def read_rgb(path: Path, source: Source, record_id: str, exif: bool = False) -> np.ndarray:
  """uint8 HxWx3. ``exif`` applies the camera orientation: only for unlabelled images, because
  COCO/VOC masks are drawn on the stored pixel grid."""
  img = open_image(path, source, record_id)
  try:
    if exif:
      img = ImageOps.exif_transpose(img)
    return to_rgb(img)
  except Exception as e:  # noqa: BLE001  an odd mode or a corrupt EXIF block: the file is bad
    source.skip(record_id, f"cannot convert {path} (mode {img.mode}) to RGB ({type(e).__name__}: {e})")


def image_files(root: Path, extensions: frozenset[str],
                skip_dir: Any = None) -> list[Path]:
  """Every image under ``root`` (recursive, following symlinked folders once), sorted.

  ``skip_dir(path) -> bool``: folders not to enter (e.g. the labels beside a photo folder)."""
  found: list[Path] = []
  seen: set[str] = set()
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    real = os.path.realpath(dirpath)
    if real in seen:  # a symlink loop
      dirnames[:] = []
      continue
    seen.add(real)
    dirnames.sort()
    if skip_dir is not None:
      dirnames[:] = [d for d in dirnames if not skip_dir(Path(dirpath) / d)]
    found += [Path(dirpath) / f for f in sorted(filenames)
              if os.path.splitext(f)[1].lower() in extensions and not f.startswith(".")]
  return found
