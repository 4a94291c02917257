"""Any TFDS dataset with an image feature and a segmentation-mask feature, by name.

    TfdsSegmentation("oxford_iiit_pet", "train", label_key="segmentation_mask", num_classes=3,
                     remap={1: 0, 2: 1, 3: 2})

Read through ``tfds.data_source`` (random access, no TensorFlow pipeline). The mask's values go
through the same ``LabelMap`` as paired folders (``ignore`` -> 255, ``remap``, any other value
outside the classes: a counted skip). Without ``label_key`` it serves the images alone (content
for colorization and style). A name, split or feature key that does not exist is an error at
construction that lists what does exist.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
from PIL import Image

from piggyjax.data import records
from piggyjax.data.paired import LabelMap


class TfdsSegmentation(records.Source):

  def __init__(self, name: str, split: str, *, image_key: str = "image", label_key: str = "",
               num_classes: int | None = None, ignore: Iterable[int] = (),
               remap: Mapping[int, int] | None = None, class_names: Iterable[str] = (),
               data_dir: str | None = None, on_size_mismatch: str = "skip"):
    super().__init__()
    if on_size_mismatch not in ("skip", "resize"):
      raise ValueError(f"on_size_mismatch must be 'skip' or 'resize', got {on_size_mismatch!r}")
    import tensorflow_datasets as tfds  # heavy: only when a TFDS layout is used
    self.name, self.image_key, self.label_key = name, image_key, label_key
    self.on_size_mismatch = on_size_mismatch
    self.has_labels = bool(label_key)
    if self.has_labels:
      if not num_classes:
        raise ValueError(f"TFDS {name}: a label_key needs the number of classes")
      self.num_classes, self.class_names = int(num_classes), tuple(class_names)
      self.labels = LabelMap(self.num_classes, ignore, remap)
    try:
      self._ds = tfds.data_source(name, split=split, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError, not built, a wrong split
      raise FileNotFoundError(
          f"TFDS dataset {name!r} split {split!r} is not available (data_dir={data_dir!r}): "
          f"{type(e).__name__}: {str(e).splitlines()[0]}. Check the name and split on "
          f"tensorflow.org/datasets/catalog, build it with `tfds build {name} --data_dir=DIR`, "
          "and pass the DIR as data.tfds_data_dir.") from e
    features = self._feature_keys()
    for field, key in (("image_key", image_key), ("label_key", label_key)):
      if key and features is not None and key not in features:
        raise KeyError(f"TFDS {name} has no feature {key!r} ({field}); its features: "
                       f"{', '.join(sorted(features))}")

  def _feature_keys(self) -> set[str] | None:
    info = getattr(self._ds, "dataset_info", None)
    try:
      return set(info.features.keys())
    except Exception:  # noqa: BLE001  a mocked or custom source without info: look at a record
      return set(self._ds[0].keys()) if len(self._ds) else None

  def __len__(self) -> int:
    return len(self._ds)

  def __getitem__(self, index: int) -> dict[str, Any]:
    r = self._ds[index]
    rid = r.get("file_name", r.get("image/filename", f"tfds-{index}"))
    rid = rid.decode() if isinstance(rid, bytes) else str(rid)
    image = np.asarray(r[self.image_key])
    if image.ndim == 2 or image.shape[-1] == 1:
      image = np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
      self.skip(rid, f"{self.image_key} has shape {image.shape}; expected HxWx3")
    out = {"image": image.astype(np.uint8), "id": rid}
    if not self.has_labels:
      return out
    mask = np.asarray(r[self.label_key])
    mask = mask[..., 0] if mask.ndim == 3 and mask.shape[-1] == 1 else mask
    if mask.shape[:2] != image.shape[:2]:
      if self.on_size_mismatch == "skip" or mask.ndim != 2:
        self.skip(rid, f"{self.label_key} is {mask.shape[1]}x{mask.shape[0]}, image is "
                       f"{image.shape[1]}x{image.shape[0]}")
      mode = "I;16" if mask.max(initial=0) > 255 else "L"
      resized = Image.fromarray(mask.astype(np.uint16 if mode == "I;16" else np.uint8), mode)
      mask = np.asarray(resized.resize((image.shape[1], image.shape[0]), Image.NEAREST))
    out["label"] = self.labels(self, mask, rid)
    return out
