"""Data for piggyjax: random-access sources and one grain pipeline.

``make_source(task_id, split, config)`` picks a source from the task's data spec
(``config.task_defs.<id>.data.layout``: voc, coco_panoptic, paired, tfds, folder, content; see
factory.py and layouts.py); ``batches(source, ...)`` turns it into numpy batches (see
docs/CONTRACTS.md); ``find_style_image(name, ...)`` finds a painting (piggyjax.tasks.paintings).

Paired folders and TFDS masks map label values through ``LabelMap``: the task's ``ignore``
values become 255, ``remap`` applies, any other value outside the classes is a counted skip
(and, in most of the first records, an error naming ``classes``). An image without its label
is a counted skip; a label of another size, an RGB label: a skip at read time.

Bad input, per case (a skip is recorded in ``source.skipped`` as id -> reason and logged once;
``src[i]`` raises ``SkipRecord`` for it; ``batches`` drops it in training and pads its row with
``valid=False`` in evaluation):
- missing data directory, split list, annotation JSON or image folder: FileNotFoundError at
  construction naming the path and the flag/config field to pass. Empty folder: ValueError.
- image listed without its mask (VOC), without a panoptic annotation or PNG (COCO dir), or
  with its file missing: skip, counted at construction (the record never enters ``len``).
- mask of another size than its image: skip at read time (TFDS: optional nearest resize).
- mask values that are not classes (VOC 21..254; an RGB mask with colours outside the VOC
  colormap; a COCO segment with an unknown category): skip. Panoptic pixels whose id is not in
  ``segments_info``: void (255) and a warning, never a guessed class.
- gray, gray+alpha, RGBA, palette, CMYK and 16-bit images: converted to RGB uint8 (alpha over
  white, 16-bit scaled by 1/257).
- truncated or undecodable JPEG/PNG (any error the decoder raises): skip at read time. No
  pixels, or more than PIL's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb): skip, decided
  from the header before decoding. Extreme aspect ratios are fine: only the crop is resized.
- VOC mask values outside 0..20 and 255, negative ones included: skip.
- COCO JSON that is not JSON, or lacks the ``categories``/``images``/``annotations`` lists, or a
  category without an integer ``id`` and a ``name``: ValueError at construction naming the file
  and the field. An image or annotation entry with a missing or wrongly typed field (``id``,
  ``file_name``, ``image_id``, ``segments_info`` and its ``id``/``category_id``): skip.
- annotation paths with '..' or absolute (COCO JSON file names, VOC ids): ValueError at
  construction; nothing outside the data directory is opened.
- anything else a source raises for one record: skip (reason: "unexpected <Error>").
- ``config.data.strict``: every skip above is a ``BadRecord`` error instead (at construction
  for the ones counted there), so the run stops on the first bad record.
"""
from piggyjax.data.coco import COCO_PANOPTIC_NAMES, CocoPanopticDir
from piggyjax.data.factory import make_source, prepare_set
from piggyjax.data.folder import ImageFolder
from piggyjax.data.paired import LabelMap, PairedFolder
from piggyjax.data.pipeline import batches
from piggyjax.data.quickstart import Quickstart
from piggyjax.data.records import BadRecord, SkipRecord, Source
from piggyjax.tasks.paintings import find_style_image
from piggyjax.data.tfds_coco import TfdsCocoPanoptic
from piggyjax.data.tfds_seg import TfdsSegmentation
from piggyjax.data.voc import VOC_CLASSES, VocSegmentation

__all__ = ["BadRecord", "COCO_PANOPTIC_NAMES", "CocoPanopticDir", "ImageFolder", "LabelMap", "PairedFolder", "Quickstart", "SkipRecord",
           "Source", "TfdsCocoPanoptic", "TfdsSegmentation", "VOC_CLASSES", "VocSegmentation", "batches",
           "find_style_image", "make_source", "prepare_set"]
