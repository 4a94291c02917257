"""Style paintings: an explicit path, then the data directory, then a cache, then a pinned download.

A style task's own asset, so it lives with the tasks (tasks/ reads no dataset code); the
painting is decoded here with PIL (EXIF orientation applied, alpha over white).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# jcjohnson/fast-neural-style at a fixed commit: the images Johnson et al. trained these styles on.
# Bytes and sha256 as recorded in shared/data/styles/PROVENANCE.md.
_COMMIT = "813c83441953ead2adb3f65f4cc2d5599d735fa7"
_URL = f"https://raw.githubusercontent.com/jcjohnson/fast-neural-style/{_COMMIT}/images/styles/{{}}.jpg"
STYLES: dict[str, str] = {
    "starry_night": "0592ab0f7b51b3ce72608a95e53880bd93971e5b48f93a0ce8dfd3cbccf3d098",
    "the_scream": "f3075cddeb974a9ee1d6418f7f33fd05185a7ac7dcb4288bd2805d499a9dcaee",
}
ALIASES = {"starry": "starry_night", "scream": "the_scream", "style_starry": "starry_night",
           "style_scream": "the_scream"}
EXTENSIONS = (".jpg", ".jpeg", ".png")


def cache_dir() -> Path:
  base = os.environ.get("PIGGYJAX_CACHE") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "piggyjax")
  return Path(base) / "styles"


def sha256(path: Path) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def download_style(name: str, dest_dir: Path | None = None, timeout: float = 30.0) -> Path:
  """Fetch a known painting into the cache; the file lands only if its sha256 is the pinned one."""
  if name not in STYLES:
    raise ValueError(f"no pinned download for style {name!r}; known: {sorted(STYLES)}")
  dest_dir = dest_dir or cache_dir()
  dest_dir.mkdir(parents=True, exist_ok=True)
  with urllib.request.urlopen(_URL.format(name), timeout=timeout) as response:
    data = response.read()
  digest = hashlib.sha256(data).hexdigest()
  if digest != STYLES[name]:
    raise ValueError(f"downloaded {name} has sha256 {digest}, expected {STYLES[name]}; not saved")
  # write-then-rename so a half-written file never sits in the cache
  fd, tmp = tempfile.mkstemp(dir=dest_dir, suffix=".part")
  with os.fdopen(fd, "wb") as f:
    f.write(data)
  final = dest_dir / f"{name}.jpg"
  os.replace(tmp, final)
  return final


def _decode(path: Path) -> np.ndarray:
  try:
    with Image.open(path) as img:
      img = ImageOps.exif_transpose(img)
      if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit gray: scale, don't clip
        img = Image.fromarray((np.asarray(img, np.float64) / 257.0).round().astype(np.uint8))
      if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
      return np.asarray(img.convert("RGB"), np.uint8)
  except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
    raise ValueError(f"style image {str(path)!r} cannot be read ({type(e).__name__}: {e})") from e


def find_style_image(name: str, path: str | os.PathLike | None = None,
                     data_dir: str | os.PathLike | None = None, download: bool = True) -> np.ndarray:
  """uint8 HxWx3 painting ``name`` (``starry_night`` or ``the_scream``, or any name given a path)."""
  name = ALIASES.get(name, name)
  if path:
    p = Path(path).expanduser()
    if not p.is_file():
      raise FileNotFoundError(f"style image {str(p)!r} (from --config.style_image) does not exist")
    return _decode(p)
  tried: list[str] = []
  folders = ([Path(data_dir).expanduser() / "styles", Path(data_dir).expanduser()] if data_dir else [])
  for folder in folders + [cache_dir()]:
    for ext in EXTENSIONS:
      p = folder / f"{name}{ext}"
      tried.append(str(p))
      if p.is_file():
        if name in STYLES and folder == cache_dir() and sha256(p) != STYLES[name]:
          continue  # a corrupted cache entry is not the pinned painting; fall through to download
        return _decode(p)
  if download and name in STYLES:
    try:
      return _decode(download_style(name))
    except Exception as e:  # offline, proxy, checksum: fall through to the error that says what to pass
      tried.append(f"download {_URL.format(name)} ({type(e).__name__}: {e})")
  raise FileNotFoundError(
      f"style image {name!r} not found. Tried: {'; '.join(tried)}. Pass "
      f"--config.style_image=PATH/{name}.jpg, or --data_dir=DIR with DIR/styles/{name}.jpg.")


# Offline quickstart only: textured pictures that scikit-image ships stand in for the paintings,
# so the two style tasks still differ and the run needs no download. Never used for real data.
STANDINS = {"starry_night": "immunohistochemistry", "the_scream": "colorwheel"}


def standin_style(name: str) -> np.ndarray:
  import skimage.data
  name = ALIASES.get(name, name)
  image = getattr(skimage.data, STANDINS.get(name, "immunohistochemistry"))()
  return np.ascontiguousarray(image[..., :3]).astype(np.uint8)
