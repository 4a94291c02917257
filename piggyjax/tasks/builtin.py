"""The built-in tasks as config definitions (see definitions.py): the paper's five, CamVid and
MSRC (real photos for CPU runs: CamVid in COCO's role, MSRC in VOC's).

The one source for them: tasks/__init__ registers these, experiments/configs/common.py copies
them into ``config.task_defs``, and ``piggyjax.data.make_source`` falls back to their data specs
for a config that has no ``task_defs``. ``quickstart``: the offline stand-in that
``data.source=quickstart`` reads instead (seg_coco / seg_voc label sets, or images).
"""
from __future__ import annotations

from piggyjax.tasks.classes import CAMVID_CLASSES, CAMVID_VOID, MSRC_CLASSES, VOC_CLASSES

_CONTENT = {"layout": "content", "quickstart": "images"}  # image_dir, else COCO's (or TFDS's) images

BUILTIN_DEFS: dict[str, dict] = {
    # COCO panoptic's 133 categories (80 things + 53 stuff) mapped to contiguous ids 0..132.
    "seg_coco": {"kind": "segmentation", "classes": 133,
                 "data": {"layout": "coco_panoptic", "quickstart": "seg_coco"}},
    # VOC: background + 20 classes; 255 = void.
    "seg_voc": {"kind": "segmentation", "classes": 21, "class_names": ",".join(VOC_CLASSES),
                "ignore": "255", "data": {"layout": "voc", "quickstart": "seg_voc"}},
    # CamVid (SegNet's 11 classes); the files mark void as 11.
    "seg_camvid": {"kind": "segmentation", "classes": 11, "class_names": ",".join(CAMVID_CLASSES),
                   "ignore": str(CAMVID_VOID),
                   "data": {"layout": "paired", "dir": "camvid", "train_split": "train",
                            "eval_split": "val"}},
    # MSRC-v2 objects (cows, sheep, faces, cars, ...): 23 classes, 255 = void as in VOC.
    "seg_msrc": {"kind": "segmentation", "classes": 23, "class_names": ",".join(MSRC_CLASSES),
                 "ignore": "255",
                 "data": {"layout": "paired", "dir": "msrc", "train_split": "train",
                          "eval_split": "val"}},
    "colorize_coco": {"kind": "colorization", "data": dict(_CONTENT)},
    "style_starry": {"kind": "style", "style_image": "starry_night", "data": dict(_CONTENT)},
    "style_scream": {"kind": "style", "style_image": "the_scream", "data": dict(_CONTENT)},
}
