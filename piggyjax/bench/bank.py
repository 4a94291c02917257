"""Benchmark sections that go through the task bank: task-switch latency and mask storage."""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import jax
import numpy as np

from piggyjax import masks, strategies, tasks, train
from piggyjax.bench.common import random_masks, summary
from piggyjax.bank import Bank
from piggyjax.models import unet


def entropy_bits(p: float) -> float:
  """H(p) in bits: what an ideal coder of i.i.d. Bernoulli(p) bits needs per bit."""
  if p <= 0.0 or p >= 1.0:
    return 0.0
  return float(-(p * math.log2(p) + (1 - p) * math.log2(1 - p)))


def mask_report(meta: dict) -> dict:
  """Per layer and in total: bits per masked weight as stored vs packed bits vs H(density)."""
  layers, n_all, bytes_all, h_all, packed_all = [], 0, 0, 0.0, 0
  for e in meta["mask"]:
    n = int(np.prod(e["shape"]))
    d = float(meta["density"][e["path"]])
    h = entropy_bits(d)
    layers.append({"path": e["path"], "weights": n, "density": d, "codec": e["codec"],
                   "bytes": int(e["nbytes"]), "bits_per_weight": 8 * e["nbytes"] / n,
                   "entropy_bound": h})
    n_all, bytes_all, h_all = n_all + n, bytes_all + int(e["nbytes"]), h_all + n * h
    packed_all += (n + 7) // 8
  return {"masked_weights": n_all, "mask_bytes": bytes_all,
          "bits_per_weight": 8 * bytes_all / n_all, "packed_bits_per_weight": 8 * packed_all / n_all,
          "entropy_bound": h_all / n_all, "density": float(meta["density"]["total"]),
          "layers": layers}


# ---- task switch ------------------------------------------------------------------------------

def _bank_with_tasks(config, s: dict, root: Path):
  """A bank of the switch preset: a random base, two piggyback tasks and one task per other
  strategy (for their bytes on disk). Returns (bank, base variables, per-task masks, heads)."""
  task = tasks.get(s["task"])
  cfg = unet.preset(s["switch_preset"], norm=config.model.norm)
  heads = ((s["task"], task.head_channels),)
  v = jax.tree.map(np.asarray, unet.init(cfg, heads, int(config.seed), 32))
  base = {"params": {"backbone": v["params"]["backbone"]}, "batch_stats": v["batch_stats"]}
  bank = Bank.create(root / "switch_bank", base, {"widths": list(cfg.widths), "norm": cfg.norm})
  head = {k: x for k, x in v["params"].items() if k != "backbone"}
  task_masks = {}
  for i, name in enumerate(("task_a", "task_b")):
    task_masks[name] = random_masks(base["params"], s["mask_density"], seed=i + 1)
    bank.add(name, "piggyback", {"params": head}, task_masks[name], {"metrics": {}})
  cfg_pb = copy.deepcopy(config)
  sizes = {}
  for name in ("scratch", "finetune", "decoder", "piggyback"):
    strat = strategies.get(name, cfg_pb)
    frozen, trainable = strat.split_params(v["params"], cfg_pb)
    if name == "piggyback":   # scores that binarize to the task's mask
      trainable["scores"] = jax.tree.map(lambda m: np.where(m, 1e-2, 0.0).astype(np.float32),
                                         task_masks["task_b"])
    arrays, mask = strategies.payload(strat, s["task"], frozen, trainable, v["batch_stats"], cfg_pb)
    meta = bank.add(f"size_{name}", name, arrays, mask, {"metrics": {}})
    sizes[name] = {"bytes": bank.sizes()["tasks"][f"size_{name}"],
                   **({"bits_per_weight": meta["bits_per_weight"]} if mask else {})}
  return bank, cfg, v, task_masks, head, sizes


def task_switch(config, s: dict, root: Path) -> dict:
  """Switch latency on the ``switch_preset`` U-Net: bank files → first output, and in memory
  (masks resident on the device) → masked weights ready. The OS page cache is warm: "disk"
  here means the bank's files, not a cold drive."""
  task = tasks.get(s["task"])
  bank, cfg, v, task_masks, head, sizes = _bank_with_tasks(config, s, root)
  model = unet.UNet(cfg, ((s["task"], task.head_channels),))
  size = s["switch_image_size"]
  x = jax.device_put(np.random.default_rng(0).random((1, size, size, 3), np.float32))
  predict = jax.jit(lambda variables, x: model.apply(variables, x, s["task"], False))

  t = time.perf_counter()
  reader = Bank.open(bank.root)
  reader.base()
  open_s = time.perf_counter() - t
  predict(reader.load("task_a"), x).block_until_ready()   # compile once for this architecture

  disk, parts = [], {"load_payload": [], "assemble": [], "first_output": []}
  for i in range(s["switch_repeats"]):
    name = ("task_a", "task_b")[i % 2]
    t0 = time.perf_counter()
    arrays, mask, meta = reader.load_payload(name)
    t1 = time.perf_counter()
    variables = strategies.assemble_stored(meta["strategy"], reader.base(), arrays, mask)
    jax.block_until_ready(variables)
    t2 = time.perf_counter()
    predict(variables, x).block_until_ready()
    t3 = time.perf_counter()
    disk.append(t3 - t0)
    for k, a, b in (("load_payload", t0, t1), ("assemble", t1, t2), ("first_output", t2, t3)):
      parts[k].append(b - a)

  # In memory: every task's mask already on the device; switching = masking the resident base
  # into the buffers of the previous task's weights (donated, so nothing is allocated).
  backbone = jax.device_put(v["params"]["backbone"])
  resident = {n: jax.device_put(m) for n, m in task_masks.items()}
  head_d = jax.device_put(head)

  def _materialise(backbone, mask, head, old):
    del old
    return {"backbone": masks.apply_binary_masks({"backbone": backbone}, mask)["backbone"], **head}

  materialise = jax.jit(_materialise, donate_argnums=(3,))
  current = materialise(backbone, resident["task_a"], head_d,
                        jax.tree.map(np.zeros_like, {"backbone": backbone, **head}))
  stats = jax.device_put(v["batch_stats"])
  mem, mem_out = [], []
  for i in range(max(s["switch_repeats"], 3) + 1):
    name = ("task_b", "task_a")[i % 2]
    t0 = time.perf_counter()
    current = materialise(backbone, resident[name], head_d, current)
    jax.block_until_ready(current)
    t1 = time.perf_counter()
    predict({"params": current, "batch_stats": stats}, x).block_until_ready()
    t2 = time.perf_counter()
    if i:   # the first call compiles
      mem.append(t1 - t0)
      mem_out.append(t2 - t0)
  return {"preset": s["switch_preset"], "widths": list(cfg.widths),
          "backbone_params": unet.parameter_count(v["params"]["backbone"]),
          "masked_weights": masks.count(task_masks["task_a"]), "image_size": size,
          "mask_density": s["mask_density"], "open_bank_and_base_s": open_s,
          "from_disk_to_first_output": summary(disk),
          "from_disk_parts": {k: summary(t) for k, t in parts.items()},
          "in_memory_to_weights_ready": summary(mem),
          "in_memory_to_first_output": summary(mem_out),
          "bytes_per_task": sizes, "base_bytes": bank.sizes()["base"],
          "masks": {k: {kk: vv for kk, vv in mask_report(bank.meta(k)).items() if kk != "layers"}
                    for k in ("task_a",)}}


# ---- storage on a quickstart-like mask --------------------------------------------------------

def storage(config, s: dict, root: Path, bank_path: str | None = None) -> dict:
  """Bytes per task and bits per masked weight vs H(density), per layer, on trained masks: the
  piggyback tasks of ``bank_path``, or a short quickstart-like run trained here."""
  if bank_path:
    bank, source = Bank.open(bank_path), f"bank {bank_path}"
  else:
    c = copy.deepcopy(config)
    c.model.preset = s["storage_preset"]
    c.image_size, c.steps = s["storage_image_size"], s["storage_steps"]
    c.optim.lr_scores, c.mask.norm = s["storage_lr_scores"], s["storage_norm"]
    c.checkpoint_every = max(c.steps, 1)
    c.eval_batches = 1
    c.data.source = "quickstart"
    train.train_task(c, "seg_coco", "base", root / "st_base", bank_path=root / "st_bank")
    bank = Bank.open(root / "st_bank")
    train.train_task(c, s["task"], "piggyback", root / "st_pb", bank=bank)
    source = (f"trained here: {s['storage_preset']} U-Net, seg_coco base then {s['task']} "
              f"piggyback, {c.steps} steps each, {c.image_size}x{c.image_size}, scores lr "
              f"{c.optim.lr_scores}, {c.mask.norm} norms")
  sizes = bank.sizes()
  out = {"source": source, "base_bytes": sizes["base"], "tasks": {}}
  for t in bank.tasks():
    meta = bank.meta(t)
    row = {"strategy": meta["strategy"], "bytes_on_disk": sizes["tasks"][t]}
    if meta.get("mask"):
      row.update(mask_report(meta))
    out["tasks"][t] = row
  if not any(r.get("mask") is not None or "bits_per_weight" in r for r in out["tasks"].values()):
    out["note"] = "no piggyback task in this bank: nothing to report on masks"
  return out
