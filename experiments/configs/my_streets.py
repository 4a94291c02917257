"""Your own data from a config file: street scenes segmented, then coloured (README example)."""
from experiments.configs import common, quickstart


def get_config():
  c = quickstart.get_config()
  c.data.source = "dirs"
  # A segmentation dataset as paired folders: DATA_DIR/camvid/{train,val}/{images,labels}/,
  # labels are grayscale PNGs of class indices where 11 marks unlabelled pixels.
  common.add_task(c, "seg_streets", kind="segmentation", classes=11, ignore="11",
                  class_names="sky,building,pole,road,pavement,tree,sign,fence,car,"
                              "pedestrian,bicyclist",
                  data=dict(layout="paired", dir="camvid", train_split="train", eval_split="val"))
  # The same photos as content for a colorization task (their labels are never read).
  common.add_task(c, "colorize_streets", kind="colorization",
                  data=dict(layout="folder", dir="camvid", train_split="train", eval_split="val"))
  c.tasks = "seg_streets,colorize_streets"
  c.steps_for = {}
  return c
