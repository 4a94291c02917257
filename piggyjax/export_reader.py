"""Run a task exported by ``--mode=export`` with jax and numpy alone: no piggyjax, no pickle.

The export directory carries a copy of this file as ``reader.py``, so a user of the export
needs nothing else:

    import sys; sys.path.insert(0, "export_dir")
    import reader
    art = reader.load("export_dir")               # checks every file's sha256 first
    out = art(image_BHW3_uint8, task="seg_voc")   # H, W multiples of art.multiple

    python export_dir/reader.py export_dir photo.png --task=seg_voc --output=out.npy

This module must not import piggyjax (the tests check it runs in a process without it).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zlib
from pathlib import Path

import numpy as np

FORMAT = 1
KIND = "piggyjax-export"
# dtypes a weights index may name: plain numbers only, never objects.
DTYPES = ("float32", "float16", "bfloat16", "int32", "int64", "uint8", "bool")


class ArtifactError(ValueError):
  """An export directory cannot be used as asked; the message says what is wrong and what to do."""


def _sha256(path: Path) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def read_manifest(directory) -> dict:
  root = Path(directory)
  fix = "export the task again (--mode=export) or copy the directory again"
  path = root / "manifest.json"
  if not path.is_file():
    raise ArtifactError(f"{root} is not a piggyjax export (no manifest.json); pass a directory "
                        "written by experiments/main.py --mode=export")
  try:
    manifest = json.loads(path.read_text())
  except (ValueError, UnicodeDecodeError) as err:
    raise ArtifactError(f"{path} is not valid JSON ({err}); the export is damaged: {fix}") from None
  if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
    raise ArtifactError(f"{path} is not a piggyjax export manifest (kind "
                        f"{manifest.get('kind') if isinstance(manifest, dict) else None!r})")
  if manifest.get("format") != FORMAT:
    raise ArtifactError(f"{root} is export format {manifest.get('format')}; this reader reads "
                        f"format {FORMAT}: use the reader.py inside that export directory")
  files = manifest.get("files")
  weights = manifest.get("weights")
  if (not isinstance(files, dict) or manifest.get("function") not in files
      or not isinstance(weights, dict) or weights.get("file") not in files):
    raise ArtifactError(f"{path} lacks its file list, or names files it does not check; the "
                        f"export is damaged: {fix}")
  for name, digest in files.items():
    target = root / name
    if "/" in name or name.startswith(".") or not target.is_file():
      raise ArtifactError(f"{root}: file {name!r} listed in manifest.json is missing; {fix}")
    if _sha256(target) != digest:
      raise ArtifactError(f"{target} fails its sha256 check (truncated or modified); {fix}")
  return manifest


def read_weights(root: Path, manifest: dict) -> dict:
  """The weights file: raw little-endian arrays at the offsets the manifest gives."""
  index = manifest["weights"]["arrays"]
  try:
    data = zlib.decompress((root / manifest["weights"]["file"]).read_bytes())
  except zlib.error as err:
    raise ArtifactError(f"{manifest['weights']['file']} is not zlib data ({err})") from None
  out = {}
  for name, spec in index.items():
    dtype, shape, offset = spec["dtype"], tuple(spec["shape"]), int(spec["offset"])
    if dtype not in DTYPES:
      raise ArtifactError(f"weights {name!r} have dtype {dtype!r}; not one this reader accepts")
    np_dtype = np.dtype("<f4") if dtype == "float32" else np.dtype(dtype)
    if dtype == "bfloat16":
      import ml_dtypes
      np_dtype = np.dtype(ml_dtypes.bfloat16)
    n = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    if offset < 0 or offset + n > len(data):
      raise ArtifactError(f"weights {name!r} point outside {manifest['weights']['file']}")
    out[name] = np.frombuffer(data, np_dtype, count=n // np_dtype.itemsize,
                              offset=offset).reshape(shape)
  return out


class Artifact:
  """An export loaded into memory: call it on uint8 RGB images."""

  def __init__(self, directory):
    from jax import export
    self.root = Path(directory)
    self.manifest = read_manifest(self.root)
    self.weights = read_weights(self.root, self.manifest)
    blob = (self.root / self.manifest["function"]).read_bytes()
    try:
      self.exported = export.deserialize(bytearray(zlib.decompress(blob)))
    except (zlib.error, ValueError) as err:
      raise ArtifactError(f"{self.root / self.manifest['function']} is not a serialized "
                          f"jax.export function ({err}); export the task again") from None
    self.tasks = [t["id"] for t in self.manifest["tasks"]]
    self.multiple = int(self.manifest["input"]["multiple"])

  def __call__(self, image_BHW3: np.ndarray, task: str | None = None) -> np.ndarray:
    image = np.asarray(image_BHW3)
    if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] != 3:
      raise ArtifactError(f"the input must be uint8 RGB images (B, H, W, 3), got "
                          f"{image.dtype} {image.shape}")
    if image.shape[1] % self.multiple or image.shape[2] % self.multiple:
      raise ArtifactError(f"image size {image.shape[1]}x{image.shape[2]} must be a multiple of "
                          f"{self.multiple} both ways; resize it first (see manifest.json)")
    if task is None and len(self.tasks) == 1:
      task = self.tasks[0]
    if task not in self.tasks:
      raise ArtifactError(f"task {task!r} is not in this export; it has {self.tasks}")
    if self.manifest["mode"] == "single":
      return np.asarray(self.exported.call(self.weights, image))
    outs = self.exported.call(self.weights, np.int32(self.tasks.index(task)), image)
    return np.asarray(outs[self.tasks.index(task)])


def load(directory) -> Artifact:
  return Artifact(directory)


def _read_input(path: str, multiple: int) -> np.ndarray:
  if path.endswith(".npy"):
    return np.load(path, allow_pickle=False)
  from PIL import Image  # resized as --mode=apply does: bilinear, sides rounded to the multiple
  with Image.open(path) as im:
    im = im.convert("RGB")
    h, w = im.height, im.width
    scale = min(1.0, 1024 / max(h, w))
    nh = max(multiple, round(h * scale / multiple) * multiple)
    nw = max(multiple, round(w * scale / multiple) * multiple)
    return np.asarray(im.resize((nw, nh), Image.BILINEAR))[None]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description="Run an exported piggyjax task on an image.")
  p.add_argument("directory")
  p.add_argument("input", help="an image file, or a .npy of uint8 (B, H, W, 3)")
  p.add_argument("--task", default=None)
  p.add_argument("--output", required=True, help="where to write the raw output (.npy)")
  args = p.parse_args(argv)
  try:
    art = load(args.directory)
    out = art(_read_input(args.input, art.multiple), args.task)
  except (ArtifactError, OSError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  np.save(args.output, out, allow_pickle=False)
  print(f"{args.output}: {out.dtype} {out.shape}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
