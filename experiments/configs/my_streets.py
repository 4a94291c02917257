"""Your own data from a config file: street scenes segmented, then coloured (README example)."""
from experiments.configs import common, quickstart


def get_config():
  c = quickstart.get_config()
  c.data.source = "dirs"  # paired folders DATA_DIR/camvid/{train,val}/{images,labels}/, 11 = void
  common.add_task(c, "seg_streets", kind="segmentation", classes=11, ignore="11",
                  class_names="sky,building,pole,road,pavement,tree,sign,fence,car,"
                              "pedestrian,bicyclist",
                  data=dict(layout="paired", dir="camvid", train_split="train", eval_split="val"))
  common.add_task(c, "colorize_streets", kind="colorization",  # the same photos, labels unread
                  data=dict(layout="folder", dir="camvid", train_split="train", eval_split="val"))
  c.tasks = "seg_streets,colorize_streets"
  c.steps_for = {}
  return c
