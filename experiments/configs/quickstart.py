"""Offline quickstart: five tasks, four strategies, a tiny U-Net, on a laptop CPU in minutes.

  python experiments/main.py --config=experiments/configs/quickstart.py --mode=sequence \
      --workdir=runs/quickstart

The images come from pip packages (scikit-image, scikit-learn); segmentation labels are
generated shapes drawn over them, so nothing is downloaded.
"""
from experiments.configs import common


def get_config():
  c = common.base_config()
  c.model.preset = "tiny"
  c.image_size = 32
  c.batch_size = 8
  c.steps = 100
  c.style.style_size = 128
  return c
