"""Any folder of images (recursive) as unlabelled content for colorization and style transfer."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from piggyjax.data import records

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


class ImageFolder(records.Source):
  has_labels = False

  def __init__(self, root: str | Path, extensions: frozenset[str] = IMAGE_EXTENSIONS,
               hint: str = "Pass --config.data.image_dir=DIR (a folder of .jpg/.png files)."):
    super().__init__()
    self.root = records.require_dir(root, "image folder", hint)
    self.paths = records.image_files(self.root, extensions)
    if not self.paths:
      raise ValueError(f"image folder {str(self.root)!r} holds no {sorted(extensions)} file. {hint}")

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    path = self.paths[index]
    rid = str(path.relative_to(self.root))
    # No labels here, so the camera's EXIF orientation can be honoured.
    return {"image": records.read_rgb(path, self, rid, exif=True), "id": rid}
