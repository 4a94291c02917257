"""Prepared sets: a source's examples decoded and resized once for a crop size, in ArrayRecord
shards that the same grain pipeline reads through a grain data source.

A record keeps the example at ``stored_shorter(image_size)`` pixels on its shorter side (the
largest a training view draws, so views only ever shrink it; smaller originals stay as they
are) plus the original's (h, w): views are drawn in the original's frame, so a prepared set gives
the same crops as its raw source for the same seed (values differ by one extra resampling).

Layout of a prepared directory::

  manifest.json                 format, task, split, image size, source fingerprint, shards
  shard-00000.arrayrecord ...   ``shard_size`` records each; a skipped record is a marker

``prepare`` is resumable: each shard is written to a temporary name, renamed, then added to the
manifest with its SHA-256, so a killed run redoes at most the shard it was writing; run again,
it also rewrites shards that went missing or no longer match their SHA-256. A reader
checks a shard's SHA-256 the first time it touches that shard and names the shard if it differs;
a set whose task, split, crop size or source fingerprint differs from the run's is refused.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from piggyjax import diskfull
from piggyjax.data import records, transforms

FORMAT = 1
MAGIC = b"PJX1"
MANIFEST = "manifest.json"
ENCODINGS = ("raw", "jpeg")  # raw: fastest to read; jpeg (quality 95, labels PNG): ~6x smaller


class PreparedError(ValueError):
  """A prepared set that cannot be used for this run (missing, stale, incomplete, damaged); the
  message says what to run. experiments/main.py prints it as a usage error (exit 2)."""


def set_dir(prepared_dir: str | os.PathLike, task_id: str, split: str) -> Path:
  """Where ``config.data.prepared_dir`` keeps one task's split."""
  return Path(prepared_dir).expanduser() / f"{task_id}_{split}"


def stored_shorter(image_size: int) -> int:
  return transforms.largest_view(image_size)


def fingerprint(source: Any, probes: int = 4) -> dict:
  """What identifies a source cheaply: its type, length, classes, and the bytes of a few records
  spread over it (a photo edited elsewhere in a large set goes unnoticed: prepare again)."""
  n = len(source)
  h = hashlib.sha256()
  for i in sorted({int(k * (n - 1) / max(probes - 1, 1)) for k in range(probes)} if n else ()):
    try:
      ex = source[i]
      for key in ("image", "label"):
        if key in ex:
          a = np.ascontiguousarray(ex[key])
          h.update(f"{i}:{key}:{a.shape}:{a.dtype}".encode())
          h.update(a.tobytes())
    except records.SkipRecord as e:
      h.update(f"{i}:skip:{e}".encode())
  return {"type": type(source).__name__, "length": n,
          "has_labels": bool(getattr(source, "has_labels", False)),
          "num_classes": getattr(source, "num_classes", None),
          "class_names": list(getattr(source, "class_names", ()) or ()),
          "probe_sha256": h.hexdigest()}


# ---- one record ------------------------------------------------------------------------------

def _resize(a: np.ndarray, shorter: int, resample: int) -> np.ndarray:
  h, w = a.shape[:2]
  if min(h, w) <= shorter:
    return a
  rh, rw = transforms.resized_shape(h, w, shorter)
  return np.asarray(Image.fromarray(a).resize((rw, rh), resample))


def _png(a: np.ndarray, fmt: str, **kw) -> bytes:
  import io
  buf = io.BytesIO()
  Image.fromarray(a).save(buf, fmt, **kw)
  return buf.getvalue()


def encode(example: dict | None, shorter: int, encoding: str, skip: str = "") -> bytes:
  if example is None:
    head, blobs = {"skip": skip}, []
  else:
    image = _resize(np.asarray(example["image"], np.uint8), shorter, Image.BILINEAR)
    blobs = [image.tobytes() if encoding == "raw" else _png(image, "JPEG", quality=95)]
    head = {"frame_hw": list(np.shape(example["image"])[:2]), "image_shape": list(image.shape),
            "encoding": encoding}
    if "label" in example:
      label = _resize(np.asarray(example["label"], np.uint8), shorter, Image.NEAREST)
      blobs.append(label.tobytes() if encoding == "raw" else _png(label, "PNG", compress_level=1))
    head["sizes"] = [len(b) for b in blobs]
  j = json.dumps(head).encode()
  return MAGIC + struct.pack("<I", len(j)) + j + b"".join(blobs)


def decode(buf: bytes) -> dict:
  """The stored example (``image``, ``label``, ``frame_hw``) or ``{"skip": reason}``."""
  if buf[:4] != MAGIC:
    raise PreparedError("not a prepared record (bad magic)")
  (n,) = struct.unpack("<I", buf[4:8])
  head = json.loads(buf[8:8 + n])
  if "skip" in head:
    return head
  shape, at, out = head["image_shape"], 8 + n, {"frame_hw": tuple(head["frame_hw"])}
  for key, size in zip(("image", "label"), head["sizes"]):
    blob = memoryview(buf)[at:at + size]
    at += size
    if head["encoding"] == "raw":
      out[key] = np.frombuffer(blob, np.uint8).reshape(shape if key == "image" else shape[:2])
    else:
      import io
      out[key] = np.asarray(Image.open(io.BytesIO(blob)))
  return out


# ---- writing ---------------------------------------------------------------------------------

def _write_json(path: Path, obj: dict) -> None:
  # A kill or a full disk leaves the old manifest or the new one, never half of one.
  diskfull.write_atomic(path, json.dumps(obj, indent=1), fsync=False)


def file_sha256(path: Path) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def _identity(source, task_id: str, split: str, image_size: int, shard_size: int,
              encoding: str) -> dict:
  return {"format": FORMAT, "task": task_id, "split": split, "image_size": int(image_size),
          "stored_shorter": stored_shorter(image_size), "shard_size": int(shard_size),
          "encoding": encoding, "source": fingerprint(source)}


def prepare(source, directory: str | os.PathLike, *, task_id: str, split: str, image_size: int,
            shard_size: int = 256, encoding: str = "raw",
            on_shard: Callable[[int, int], None] | None = None) -> dict:
  """Write (or finish writing) ``directory``; returns the manifest. ``on_shard(done, total)``
  is called after each shard is committed."""
  from array_record.python import array_record_module as ar
  if encoding not in ENCODINGS:
    raise ValueError(f"prepared encoding must be one of {ENCODINGS}, got {encoding!r}")
  if getattr(source, "label_kind", "pixel") == "class":
    raise ValueError(f"task {task_id!r}: prepared sets store per-pixel labels; a classification "
                     "task reads its images directly (leave config.data.prepared_dir empty)")
  root = Path(directory).expanduser()
  root.mkdir(parents=True, exist_ok=True)
  want = _identity(source, task_id, split, image_size, shard_size, encoding)
  path = root / MANIFEST
  manifest = {**want, "shards": [], "complete": False}
  if path.exists():
    old = json.loads(path.read_text())
    diff = [k for k in want if old.get(k) != want[k]]
    if diff:
      raise PreparedError(f"{root} holds a prepared set with other {diff} (e.g. crop size "
                          f"{old.get('image_size')} vs {image_size}); delete it or prepare into "
                          "another directory")
    manifest = old
    for k, entry in enumerate(manifest["shards"]):  # a damaged or missing shard: redo from it on
      f = root / entry["file"]
      if not f.is_file() or f.stat().st_size != entry["bytes"] or file_sha256(f) != entry["sha256"]:
        records.log.warning("prepared shard %s is missing or damaged: writing it again", f)
        manifest["shards"], manifest["complete"] = manifest["shards"][:k], False
        break
  n, total = len(source), math.ceil(len(source) / shard_size)
  shorter = stored_shorter(image_size)
  for k in range(len(manifest["shards"]), total):
    name = f"shard-{k:05d}.arrayrecord"
    tmp = root / (name + ".tmp")
    # A full disk names this shard and about how much it needed (the last one's size); the
    # shards committed before it, and the manifest listing them, stay as they were.
    with diskfull.guard(tmp, manifest["shards"][-1]["bytes"] if manifest["shards"] else None):
      writer = ar.ArrayRecordWriter(str(tmp), "group_size:1,uncompressed")  # random access
      count, skipped = 0, {}
      for i in range(k * shard_size, min((k + 1) * shard_size, n)):
        try:
          writer.write(encode(source[i], shorter, encoding))
        except records.SkipRecord as e:  # kept as a marker, so indices match the raw source
          writer.write(encode(None, shorter, encoding, skip=str(e)))
          skipped[str(i)] = str(e)
        count += 1
      writer.close()
    os.replace(tmp, root / name)
    manifest["shards"].append({"file": name, "records": count, "sha256": file_sha256(root / name),
                               "bytes": (root / name).stat().st_size, "skipped": skipped})
    _write_json(path, manifest)
    if on_shard is not None:
      on_shard(k + 1, total)
  manifest["complete"] = True
  _write_json(path, manifest)
  return manifest


# ---- reading ---------------------------------------------------------------------------------

class PreparedSource(records.Source):
  """A prepared directory as a random-access source: ``src[i]`` is the stored example with its
  original ``frame_hw``; a record its raw source skipped is skipped again (same reason)."""

  def __init__(self, directory: str | os.PathLike, manifest: dict, like: Any = None) -> None:
    super().__init__()
    self.root = Path(directory)
    self.manifest = manifest
    self.shard_size = int(manifest["shard_size"])
    fp = manifest["source"]
    self.has_labels = bool(fp["has_labels"])
    self.num_classes = fp["num_classes"]
    self.class_names = tuple(fp["class_names"])
    self.strict = bool(getattr(like, "strict", False))
    self._shards: dict[int, Any] = {}  # shard -> grain's ArrayRecordDataSource, once verified
    self._verify_lock = threading.Lock()

  def __getstate__(self) -> dict[str, Any]:
    # A copy (a grain worker process) opens and verifies the shards it reads itself.
    return {**super().__getstate__(), "_shards": {}}

  def __len__(self) -> int:
    return int(self.manifest["source"]["length"])

  def _shard(self, k: int) -> Any:
    """Shard ``k``'s grain data source, opened after its SHA-256 matched the manifest (once per
    shard and process), so a damaged file is named rather than failing inside the reader."""
    data = self._shards.get(k)
    if data is not None:
      return data
    import grain
    with self._verify_lock:
      if k in self._shards:
        return self._shards[k]
      entry = self.manifest["shards"][k]
      got = file_sha256(self.root / entry["file"])
      if got != entry["sha256"]:
        raise PreparedError(f"prepared shard {self.root / entry['file']} is damaged (SHA-256 "
                            f"{got[:12]}..., manifest {entry['sha256'][:12]}...); run experiments/"
                            "prepare.py again with the run's flags: it rewrites damaged shards")
      self._shards[k] = grain.sources.ArrayRecordDataSource([str(self.root / entry["file"])])
      return self._shards[k]

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(index)
    k, j = divmod(index, self.shard_size)
    rec = decode(self._shard(k)[j])
    if "skip" in rec:
      self.skip(f"#{index}", f"skipped when prepared: {rec['skip']}")
    return rec


def open_prepared(directory: str | os.PathLike, source: Any, *, task_id: str, split: str,
                  image_size: int) -> PreparedSource:
  """``directory``'s prepared set for this run, refused with a message when it does not match
  ``source`` (the raw source it was made from), the task, the split or the crop size."""
  root = Path(directory).expanduser()
  hint = ("prepare it with the run's flags and: python experiments/prepare.py --config=CONFIG "
          f"--config.data.prepared_dir={root.parent}, or unset config.data.prepared_dir")
  path = root / MANIFEST
  if not path.is_file():
    raise PreparedError(f"no prepared set at {root} (no {MANIFEST}); {hint}")
  try:
    manifest = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise PreparedError(f"{path} is not a readable manifest ({e}); prepare again") from None
  if manifest.get("format") != FORMAT:
    raise PreparedError(f"{root}: prepared format {manifest.get('format')}, this code reads "
                        f"{FORMAT}; prepare again")
  if not manifest.get("complete"):
    raise PreparedError(f"{root}: preparation did not finish ({len(manifest['shards'])} shards "
                        f"written); run it again to resume")
  have = {k: manifest.get(k) for k in ("task", "split", "image_size")}
  want = {"task": task_id, "split": split, "image_size": int(image_size)}
  if have != want:
    raise PreparedError(f"{root} was prepared for {have}, this run needs {want}; {hint}")
  fp = fingerprint(source)
  if fp != manifest["source"]:
    changed = sorted(k for k in fp if fp[k] != manifest["source"].get(k))
    raise PreparedError(f"{root} is stale: its source changed since it was prepared ({changed} "
                        f"differ); {hint}")
  return PreparedSource(root, manifest, like=source)
