"""The real sample data (VOC, COCO panoptic, the two paintings) at tiny sizes.

  python experiments/main.py --config=experiments/configs/samples.py --mode=sequence \
      --data_dir=../shared/data --workdir=runs/samples

--data_dir holds voc_samples/VOCdevkit (or VOCdevkit), coco_samples (or coco) and styles/.
"""
from experiments.configs import common


def get_config():
  c = common.base_config()
  c.data.source = "samples"
  c.data.data_dir = "../shared/data"
  c.model.preset = "tiny"
  c.image_size = 32
  c.batch_size = 4
  c.steps = 20
  c.checkpoint_every = 10
  return c
