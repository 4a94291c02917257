"""The seed's five-task sequence on real photos, on a CPU: CamVid street scenes train the
backbone (COCO's role), MSRC-v2 objects are the second segmentation (VOC's role), then
colorization and two style transfers of the CamVid photos, under all four strategies.

  python experiments/main.py --config=experiments/configs/real.py --mode=sequence \
      --data_dir=../shared/data --workdir=runs/real

--data_dir holds camvid/{train,val}/{images,labels} (367 train / 101 val street photos, 11
classes, void 11), msrc/{train,val}/{images,labels} (295 / 57 photos, 23 classes, void 255) and
styles/{starry_night,the_scream}.jpg. Colorization and the styles read the CamVid photos (train
split to learn, val to evaluate; labels unused): the photos the base knows, as the seed's COCO
tasks read COCO's.

Departures from paper.py, and why (measurements: docs/ABLATIONS.md):
- U-Net `medium` (32-64-128, 467 k parameters), 96x96 crops, batch 8, a few hundred steps per
  task: 62 minutes on 2 quiet CPU cores for all five tasks and four strategies (the base 6,
  then per strategy MSRC ~3, colorization ~6, each painting ~3; without scratch and with
  --config.steps=600, ~42). Figures at 128x128 (the U-Net is convolutional), four eval images
  spread over each split; CamVid's val split is 7 s of one drive, so the three label-free
  tasks draw theirs from MSRC's val scenes (figure_from). Width matters: on the 117 k `quick`
  net piggyback trailed fine-tune by ~40 % in colorization MSE over three seeds; on `medium`,
  same recipe, by 2 %.
- MSRC 400 steps (~11 epochs of 295 photos). Measured: MSRC mIoU scratch 18.3, fine-tune 19.8,
  decoder 21.8, piggyback 18.0 (-1.8 points); fine-tune's CamVid 40.2 -> 9.3 after it.
- Scores at lr 5e-4 and heads/baselines at 3e-3, cosine decay to zero over each task (paper:
  1e-4 and 1e-3, x0.1 halfway, over ~30 epochs): with a few hundred steps a score must be able
  to cross the 5e-3 threshold within tens of steps, and the decay lets the masks settle.
- Colorization 800 steps (~17 epochs): a mask keeps improving after fine-tune has levelled
  off (piggyback vs fine-tune MSE, seeds 0-4 on one base: +3.4 ± 8.4 %; ABLATIONS.md,
  "Training length").
- Per-task norms (paper: BatchNorm frozen at the base's statistics): with frozen norms and few
  steps the re-masked network's activations drift off the base statistics (ABLATIONS.md), and
  the trained norms' statistics are re-estimated over 50 batches after each task.
- Regression heads start at zero (every config): the random 1x1 head was the colorization gap.
"""
import ml_collections

from experiments.configs import common

CAMVID = dict(layout="folder", dir="camvid", train_split="train", eval_split="val")
TASKS = ("seg_camvid", "seg_msrc", "colorize_camvid", "style_starry_camvid",
         "style_scream_camvid")


def get_config():
  c = common.base_config()
  # The same photos for every task after the segmentations: their labels are never read there.
  common.add_task(c, "colorize_camvid", kind="colorization", data=dict(CAMVID))
  common.add_task(c, "style_starry_camvid", kind="style", style_image="starry_night",
                  data=dict(CAMVID))
  common.add_task(c, "style_scream_camvid", kind="style", style_image="the_scream",
                  data=dict(CAMVID))
  c.tasks = ",".join(TASKS)
  c.data.source = "dirs"
  c.data.data_dir = "../shared/data"
  c.model.preset = "medium"
  c.image_size = 96
  c.figure_size = 128
  c.figure_spread = True
  # CamVid's val split is 7 s of one drive: the later tasks' grids show MSRC's val scenes
  # (photos no task trained on; CamVid's own grid can only show that street).
  c.figure_from = ml_collections.ConfigDict({t: "seg_msrc" for t in TASKS[2:]})
  c.batch_size = 8
  c.steps = 800
  # VGG-16 makes a style step several times a colorization step on this CPU: fewer of them.
  c.steps_for = ml_collections.ConfigDict({"seg_camvid": 800, "seg_msrc": 400,
                                           "style_starry_camvid": 120,
                                           "style_scream_camvid": 120})
  c.checkpoint_every = 200
  c.optim.lr = c.optim.lr_head = 3e-3
  c.optim.lr_scores = 5e-4
  c.optim.schedule = "cosine"
  c.mask.norm = "per_task"
  c.bn_recalibrate = 50
  c.style.style_size = 256
  c.figure_images = 4
  return c
