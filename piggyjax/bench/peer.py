"""The PyTorch peer: the same U-Net with Piggyback layers as the original implementation
(arunmallya/piggyback) builds them, for timing piggyjax against on the same machine.

Each masked layer keeps its weight as a frozen buffer and learns a real-valued ``mask_real``
(initialised to 1e-2) that a straight-through autograd Function binarises at 5e-3; BatchNorm
stays frozen at the base statistics (the original's ``train_nobn``); Adam lr 1e-4 on the masks.
Needs the ``peer`` extra (``pip install -e .[peer]``); nothing in piggyjax imports this module
unless asked for ``--peer``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

THRESHOLD = 5e-3
MASK_INIT = 1e-2


class Binarizer(torch.autograd.Function):
  """Forward: mask_real > threshold; backward: the gradient straight through."""

  @staticmethod
  def forward(ctx, mask_real, threshold):
    return (mask_real > threshold).to(mask_real.dtype)

  @staticmethod
  def backward(ctx, grad):
    return grad, None


class ElementWiseConv2d(nn.Module):
  """A conv whose weight is a frozen buffer times a binarised, learned mask."""

  def __init__(self, cin, cout, k, padding=0, bias=False, masked=True, transpose=False):
    super().__init__()
    shape = (cin, cout, k, k) if transpose else (cout, cin, k, k)
    self.transpose, self.padding, self.masked = transpose, padding, masked
    self.register_buffer("weight", nn.init.kaiming_uniform_(torch.empty(shape), a=5 ** 0.5))
    self.register_buffer("bias", torch.zeros(cout) if bias else None)
    if masked:
      self.mask_real = nn.Parameter(torch.full(shape, MASK_INIT))

  def forward(self, x):
    w = self.weight * Binarizer.apply(self.mask_real, THRESHOLD) if self.masked else self.weight
    if self.transpose:
      return F.conv_transpose2d(x, w, self.bias, stride=2)
    return F.conv2d(x, w, self.bias, padding=self.padding)


def _conv(cin, cout, k, piggyback, padding=0, bias=False, transpose=False):
  if piggyback:
    return ElementWiseConv2d(cin, cout, k, padding, bias, transpose=transpose)
  if transpose:
    return nn.ConvTranspose2d(cin, cout, k, stride=2)
  return nn.Conv2d(cin, cout, k, padding=padding, bias=bias)


class DoubleConv(nn.Sequential):

  def __init__(self, cin, cout, piggyback):
    super().__init__(_conv(cin, cout, 3, piggyback, padding=1), nn.BatchNorm2d(cout),
                     nn.ReLU(inplace=True), _conv(cout, cout, 3, piggyback, padding=1),
                     nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
  """piggyjax's U-Net (widths per level, 2x2 up-convs, concat skips) plus one 1x1 head."""

  def __init__(self, widths: Sequence[int], classes: int, piggyback: bool):
    super().__init__()
    self.piggyback, depth = piggyback, len(widths) - 1
    chans = [3, *widths[:-1]]
    self.enc = nn.ModuleList(DoubleConv(chans[i], widths[i], piggyback) for i in range(depth))
    self.mid = DoubleConv(widths[depth - 1], widths[depth], piggyback)
    self.up = nn.ModuleList(_conv(widths[i + 1], widths[i], 2, piggyback, bias=True,
                                  transpose=True) for i in range(depth))
    self.dec = nn.ModuleList(DoubleConv(2 * widths[i], widths[i], piggyback)
                             for i in range(depth))
    self.head = nn.Conv2d(widths[0], classes, 1)   # per task, never masked

  def forward(self, x):
    skips = []
    for enc in self.enc:
      x = enc(x)
      skips.append(x)
      x = F.max_pool2d(x, 2)
    x = self.mid(x)
    for i in reversed(range(len(self.up))):
      x = self.dec[i](torch.cat([self.up[i](x), skips[i]], 1))
    return self.head(x)

  def train(self, mode: bool = True):
    # Piggyback's train_nobn: BatchNorm keeps the base statistics while the masks learn.
    super().train(mode)
    if self.piggyback:
      for m in self.modules():
        if isinstance(m, nn.BatchNorm2d):
          m.eval()
    return self


def make(widths, classes, strategy: str, lr_masks=1e-4, lr_head=1e-3, lr=1e-3):
  """(model, optimizer) for ``piggyback`` (masks + head learn) or ``finetune`` (all learns)."""
  model = UNet(widths, classes, piggyback=strategy == "piggyback").train()
  if strategy == "piggyback":
    for layer in model.modules():   # frozen BatchNorm: no gradients computed for it either
      if isinstance(layer, nn.BatchNorm2d):
        layer.requires_grad_(False)
    masks = [p for n, p in model.named_parameters() if n.endswith("mask_real")]
    groups = [{"params": masks, "lr": lr_masks}, {"params": model.head.parameters(), "lr": lr_head}]
  elif strategy == "finetune":
    groups = [{"params": model.parameters(), "lr": lr}]
  else:
    raise ValueError(f"the peer times piggyback and finetune, not {strategy!r}")
  return model, torch.optim.Adam(groups)


def make_step(widths, classes, strategy: str, batch: dict, threads: int | None = None):
  """A callable running one Adam step on a fixed batch (uint8 BHW3 images, int BHW labels)."""
  if threads:
    torch.set_num_threads(threads)
  torch.manual_seed(0)
  model, opt = make(widths, classes, strategy)
  x = torch.from_numpy(np.asarray(batch["image"], np.float32) / 255.0).permute(0, 3, 1, 2)
  x = x.contiguous()
  y = torch.from_numpy(np.asarray(batch["label"], np.int64))

  def step() -> float:
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y, ignore_index=255)
    loss.backward()
    opt.step()
    return loss.item()

  step.model = model
  return step


def make_convolutions(layers, batch_size: int):
  """The step's 3x3 convolutions alone, as ``piggyjax.bench.flops.convolutions`` times them in
  JAX: per (side, HWIO kernel shape, first?) layer a forward convolution, the input gradient
  (not for the first layer) and the weight gradient, on random inputs."""
  gen = torch.Generator().manual_seed(0)
  args = []
  for side, (_, _, cin, cout), first in layers:
    x = torch.randn(batch_size, cin, side, side, generator=gen).requires_grad_(not first)
    w = torch.randn(cout, cin, 3, 3, generator=gen).requires_grad_(True)
    args.append((x, w, torch.randn(batch_size, cout, side, side, generator=gen)))

  def run() -> None:
    for x, w, g in args:
      y = F.conv2d(x, w, padding=1)
      torch.autograd.grad(y, [t for t in (x, w) if t.requires_grad], g)

  run()
  return run


def info() -> dict:
  return {"torch": torch.__version__, "threads": torch.get_num_threads()}


def masked_weights(model: nn.Module) -> int:
  return int(sum(p.numel() for n, p in model.named_parameters() if n.endswith("mask_real")))


def self_check() -> None:
  """The Piggyback layers behave as the original's: binarise at 5e-3, pass gradients straight
  through, and at initialisation (every mask_real = 1e-2) run exactly the frozen network."""
  m = torch.tensor([1e-2, 5e-3, 0.0, -1.0], requires_grad=True)
  out = Binarizer.apply(m, THRESHOLD)
  out.backward(torch.tensor([1.0, 2.0, 3.0, 4.0]))
  if out.tolist() != [1.0, 0.0, 0.0, 0.0] or m.grad.tolist() != [1.0, 2.0, 3.0, 4.0]:
    raise AssertionError(f"Binarizer: forward {out.tolist()}, gradient {m.grad.tolist()}")
  torch.manual_seed(0)
  model, _ = make((4, 8, 16), 3, "piggyback")
  x = torch.rand(2, 3, 16, 16)
  with torch.no_grad():
    masked = model(x)
    for layer in model.modules():
      if isinstance(layer, ElementWiseConv2d):
        layer.masked = False
    plain = model(x)
  if not torch.equal(masked, plain):
    raise AssertionError("a fresh Piggyback peer differs from its frozen network")
  frozen = [n for n, p in model.named_parameters() if p.requires_grad and "mask_real" not in n
            and not n.startswith("head.")]
  if frozen:
    raise AssertionError(f"peer parameters that should be frozen buffers: {frozen}")
