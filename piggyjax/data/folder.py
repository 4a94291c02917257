"""Any folder of images (recursive) as unlabelled content for colorization and style transfer.

Label folders of a labelled layout are not photos: a ``labels``/``masks``/``annotations``/
``SegmentationClass``/``SegmentationObject`` folder beside an ``images``/``JPEGImages`` folder is
never entered, so pointing this at a paired-folder or VOC tree reads its photos only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from piggyjax.data import records

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
LABEL_DIRS = frozenset({"labels", "masks", "annotations", "segmentationclass", "segmentationobject"})
PHOTO_DIRS = ("images", "JPEGImages")


def is_label_dir(path: Path) -> bool:
  """A label folder with a photo folder beside it (a paired or VOC layout)."""
  return path.name.lower() in LABEL_DIRS and any((path.parent / d).is_dir() for d in PHOTO_DIRS)


class ImageFolder(records.Source):
  has_labels = False

  def __init__(self, root: str | Path, extensions: frozenset[str] = IMAGE_EXTENSIONS,
               hint: str = "Pass --config.data.image_dir=DIR (a folder of .jpg/.png files)."):
    super().__init__()
    self.root = records.require_dir(root, "image folder", hint)
    self.paths = records.image_files(self.root, extensions, skip_dir=is_label_dir)
    if not self.paths:
      raise ValueError(f"image folder {str(self.root)!r} holds no {sorted(extensions)} file. {hint}")

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    path = self.paths[index]
    rid = str(path.relative_to(self.root))
    # No labels here, so the camera's EXIF orientation can be honoured.
    return {"image": records.read_rgb(path, self, rid, exif=True), "id": rid}
