"""Speed on Piggyback's own ground: the VGG-16 train step of a Piggyback task on the ImageNet
base (13 masked convolutions -> global average pool -> a linear head), piggyjax against the
PyTorch peer built as arunmallya/piggyback builds it (``piggyjax/bench/peer_vgg.py``), same
size, same weights, timed round-robin in one process.

Piggyback's own setting is 224 px crops in batches of 32 (``vgg_image_size`` /
``vgg_batch_size``); the defaults are smaller so the section fits a 2-core CPU (a VGG-16 step at
224 px, batch 32 is ~1.5 TFLOP). Nothing here imports torch: the peer is asked for only with
``peer=True``, and the checks that both sides compute the same function live here, in numpy.
"""
from __future__ import annotations

import copy
import time

import jax
import numpy as np

from piggyjax import masks, models, tasks, train
from piggyjax.bench import flops
from piggyjax.bench.common import ratio, round_robin, summary
from piggyjax.models import vgg as vgg_model

TASK = "bench_vgg"
# Mallya et al.'s recipe: Adam at 1e-4 for the masks and for the classifier (fine-tune: all).
LR = 1e-4
LOGIT_RTOL = 1e-4


def bench_config(config, s: dict):
  """``config`` with the VGG-16 base, the section's size and Piggyback's optimiser settings."""
  c = copy.deepcopy(config)
  c.model.preset, c.model.norm, c.model.dtype = "vgg16", "none", "float32"
  c.model.weights = ""
  c.image_size, c.batch_size = int(s["vgg_image_size"]), int(s["vgg_batch_size"])
  c.optim.lr_scores = c.optim.lr_head = c.optim.lr = LR
  c.optim.schedule = "constant"
  c.mask.threshold, c.mask.init, c.mask.norm = 5e-3, 1e-2, "frozen"
  c.data.device_augment = False
  return c


def register_task(classes: int) -> tasks.Task:
  return tasks.register(tasks.Classification(TASK, head_channels=int(classes)), overwrite=True)


def base_variables(cfg, classes: int, seed: int) -> dict:
  """The ImageNet base with a random (not zero) head: a zero head would make every logit 0 and
  the peer's logit check pass whatever the convolutions computed."""
  v = jax.tree.map(np.asarray, models.init(cfg, ((TASK, classes),), seed, 32))
  base = models.pretrained(cfg)["params"]["backbone"]
  return {"params": {**v["params"], "backbone": base}}


def synthetic_batch(batch_size: int, image_size: int, classes: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 256, (batch_size, image_size, image_size, 3), np.uint8),
          "label": rng.integers(0, classes, (batch_size,)).astype(np.int32),
          "valid": np.ones((batch_size,), bool)}


def torch_layout(params: dict) -> dict:
  """The base and head as the peer holds them: per conv an OIHW kernel (from HWIO) and a bias,
  in torchvision's order; the head (a 1x1 conv over pooled features) as a Linear's (K, C)."""
  bb = params["backbone"]
  head = params[f"head_{TASK}"]
  convs = [(np.ascontiguousarray(bb[f"Conv_{i}"]["kernel"].transpose(3, 2, 0, 1)),
            np.asarray(bb[f"Conv_{i}"]["bias"])) for i in range(vgg_model.NUM_CONVS)]
  return {"convs": convs, "linear": (np.ascontiguousarray(head["kernel"][0, 0].T),
                                     np.asarray(head["bias"]))}


def compare(peer_logits: np.ndarray, jax_logits: np.ndarray, peer_masked: int,
            jax_masked: int) -> dict:
  """Raises unless both nets mask as many weights and give the same logits (rtol 1e-4 of the
  largest logit: float32 convolutions by two libraries, 13 layers deep, differ in the last bits)."""
  if peer_masked != jax_masked:
    raise RuntimeError(f"the peer masks {peer_masked:,} weights, piggyjax {jax_masked:,}: "
                       "not the same network")
  p, j = np.asarray(peer_logits, np.float64), np.asarray(jax_logits, np.float64)
  if p.shape != j.shape:
    raise RuntimeError(f"the peer's logits have shape {p.shape}, piggyjax's {j.shape}")
  scale = float(np.abs(j).max())
  diff = float(np.abs(p - j).max())
  if not np.all(np.isfinite(p)) or diff > LOGIT_RTOL * max(scale, 1e-6):
    raise RuntimeError(f"the peer's logits differ from piggyjax's by up to {diff:.3g} "
                       f"(largest logit {scale:.3g}, tolerance {LOGIT_RTOL} of it)")
  return {"masked_weights": jax_masked, "max_abs_logit_diff": diff, "max_abs_logit": scale,
          "logits": "match"}


def _jax_logits(runner, variables: dict, batch: dict) -> np.ndarray:
  """Logits of the plain base and of the Piggyback net at initialisation (every mask 1): the
  masked one must be the base exactly, or piggyjax itself is not running the frozen network."""
  plain = np.asarray(runner.evaluator.predict(variables, batch))
  masked_v = runner.variables(runner.frozen, runner.init_state.trainable, {})
  masked = np.asarray(runner.evaluator.predict(masked_v, batch))
  if not np.array_equal(plain, masked):
    raise RuntimeError("piggyjax's Piggyback net at initialisation differs from its base")
  return plain.reshape(plain.shape[0], -1)


def vgg_step(config, s: dict, peer: bool = False) -> dict:
  from piggyjax.bench.steps import _jax_step   # the U-Net section's step, on any model
  names = [n.strip() for n in s["vgg_strategies"].split(",") if n.strip()]
  if "piggyback" not in names:
    raise ValueError(f"config.bench.vgg_strategies={s['vgg_strategies']!r} must hold piggyback")
  c = bench_config(config, s)
  classes, b, size = int(s["vgg_classes"]), c.batch_size, c.image_size
  register_task(classes)
  cfg = train.model_config(c)
  variables = base_variables(cfg, classes, int(c.seed))
  batch = synthetic_batch(b, size, classes)
  timers, first, extra = {}, {}, {}
  for name in names:
    step, runner, box = _jax_step(c, TASK, name, variables, batch)
    if name == "piggyback":
      logits = _jax_logits(runner, variables, batch)
      masked = masks.count(runner.init_state.trainable["scores"])
    t = time.perf_counter()
    step()
    first[name] = time.perf_counter() - t
    for _ in range(max(s["warmup"] - 1, 0)):
      step()
    timers[name], extra[name] = step, (runner, box)
  gflop = {n: flops.step_gflop(r, box["state"], *box["args"]) for n, (r, box) in extra.items()}
  out = {"image_size": size, "batch_size": b, "classes": classes, "masked_weights": masked,
         "strategies": {}, "ratios": {}}
  if peer:
    from piggyjax.bench import peer as torch_peer
    from piggyjax.bench import peer_vgg
    torch_peer.self_check()
    for name in names:
      fn = peer_vgg.make_step(variables["params"], classes, name, batch,
                              threads=s["peer_threads"] or None)
      if name == "piggyback":   # before any step changes the masks
        out["self_check"] = compare(peer_vgg.logits(fn.model, batch), logits,
                                    torch_peer.masked_weights(fn.model), masked)
      t = time.perf_counter()
      for _ in range(max(s["warmup"], 1)):
        fn()
      first[f"peer_{name}"] = (time.perf_counter() - t) / max(s["warmup"], 1)
      timers[f"peer_{name}"], gflop[f"peer_{name}"] = fn, gflop[name]  # the same work
    out["peer"] = torch_peer.info()
  times = round_robin(timers, s["vgg_steps"])
  for name, t in times.items():
    row = {**summary(t), "first_call_s": first[name], "images_per_s": b / float(np.median(t)),
           "gflop_per_step": gflop[name], "achieved_gflops": gflop[name] / float(np.median(t))}
    if name in extra:
      runner, box = extra[name]
      row["compiled_programs"] = int(runner.train_step._cache_size())
      losses = [float(x) for x in box["losses"]]
    else:   # the same function from the same start: the first losses agree (the JSON shows it)
      losses = timers[name].losses
    row["loss_first"], row["loss_last"] = losses[0], losses[-1]
    out["strategies"][name] = row
  for a, bb in [("piggyback", "peer_piggyback"), ("finetune", "peer_finetune"),
                ("piggyback", "finetune"), ("peer_piggyback", "peer_finetune")]:
    if a in times and bb in times:
      out["ratios"][f"{a}/{bb}"] = ratio(times[a], times[bb])
  return out
