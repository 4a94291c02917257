"""The paper's setting: real datasets, the 56.4 MB U-Net, 256x256, on GPUs or a TPU pod.

  python experiments/main.py --config=experiments/configs/paper.py --mode=sequence \
      --data_dir=/data --workdir=gs://bucket/piggyjax/paper   # add --multihost on a pod

Choices and why:
- U-Net preset `paper` (14.06 M backbone parameters, 56.25 MB float32) with BatchNorm frozen at
  the base statistics for Piggyback, as in Mallya et al.
- 256x256 crops, global batch 32 (Johnson et al. train at 256x256 with batch 4 for 40k
  iterations; a larger batch with proportionally fewer steps keeps the wall time of a GPU run
  near a day for all five tasks and four strategies).
- Piggyback as in arunmallya/piggyback: Adam, lr 1e-4 on the real-valued scores and on the
  heads, x0.1 halfway (`optim.schedule=step`; it applies to the baselines too), scores
  initialised to 1e-2, threshold 5e-3, BatchNorm frozen at the base's statistics. The CPU
  configs depart from it (per-task norms, scores at 2e-3-5e-3) because they train for a few
  hundred steps, not epochs; docs/ABLATIONS.md measures both.
- Baselines (scratch, fine-tune, decoder): Adam 1e-3, as in Johnson et al.
- Style loss weights: content 1, style 1e5, TV 2 on VGG-16 relu2_2 / relu1_2..relu4_3 (the
  style/content ratio of the PyTorch fast_neural_style example with the same VGG and
  normalisation; TV converted from Johnson et al.'s 1e-6 on 0-255 pixels).
- bfloat16 compute on accelerators, float32 parameters and optimizer state.
"""
from experiments.configs import common


def get_config():
  c = common.base_config()
  c.data.source = "dirs"
  c.model.preset = "paper"
  c.model.dtype = "bfloat16"
  c.image_size = 256
  c.batch_size = 32
  c.steps = 20_000
  c.checkpoint_every = 1000
  c.eval_every = 2000
  c.eval_batches = 50
  c.optim.lr_head = 1e-4
  c.optim.schedule = "step"       # x0.1 at half of each task's steps
  c.mask.norm = "frozen"
  return c
