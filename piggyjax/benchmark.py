"""Performance figures: train step per strategy (and the PyTorch peer), inference, task switch,
mask storage against its entropy bound, peak host memory. ``experiments/benchmark.py`` is the
entry point; ``run`` returns the JSON-ready dict and ``markdown`` the summary.

Timings interleave their contestants round-robin (one step of each per round) so that a noisy,
shared machine slows all of them alike; ratios are reported as the median of per-round ratios
next to the ratio of medians and of minima.
"""
from __future__ import annotations

import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from piggyjax import bench_report, hostmem, masks, sharding, tasks, train
from piggyjax.models import unet

DEFAULTS = {
    "task": "seg_voc",                 # whose loss the step computes (21 classes)
    "strategies": "scratch,finetune,decoder,piggyback",
    "steps": 10,                       # timed rounds (N) after warm-up
    "warmup": 2,                       # untimed calls per contestant, the first one compiles
    "inference_steps": 10,
    "mask_density": 0.9,               # kept fraction of the synthetic masks (inference, switch)
    "switch_preset": "paper",          # the U-Net whose task switch is timed
    "switch_image_size": 64,
    "switch_repeats": 5,
    # The quickstart-like run whose masks are measured (experiments/configs/quickstart.py).
    "storage_preset": "quick",
    "storage_image_size": 32,
    "storage_steps": 120,
    "storage_lr_scores": 2e-3,
    "storage_norm": "per_task",
    "peer_threads": 0,                 # torch.set_num_threads; 0 = torch's default
}


def settings(config) -> dict:
  given = dict(config.get("bench", {}) or {})
  unknown = set(given) - set(DEFAULTS)
  if unknown:
    raise ValueError(f"unknown config.bench fields {sorted(unknown)}; known: {sorted(DEFAULTS)}")
  return {**DEFAULTS, **given}


def synthetic_batch(batch_size: int, image_size: int, classes: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 256, (batch_size, image_size, image_size, 3), np.uint8),
          "label": rng.integers(0, classes, (batch_size, image_size, image_size)).astype(np.int32),
          "valid": np.ones((batch_size,), bool)}


def random_masks(params: dict, density: float, seed: int = 0) -> dict:
  """Bernoulli(density) boolean masks over every leaf Piggyback masks."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.random(s.shape) < density, masks.init_scores(params))


def round_robin(timers: dict[str, Callable], rounds: int) -> dict[str, list[float]]:
  times = {k: [] for k in timers}
  for _ in range(rounds):
    for name, fn in timers.items():
      t = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t)
  return times


def summary(times_s: list[float]) -> dict:
  ms = 1e3 * np.asarray(times_s)
  return {"median_ms": float(np.median(ms)), "min_ms": float(ms.min()),
          "mean_ms": float(ms.mean()), "times_ms": [round(float(t), 3) for t in ms]}


def ratio(a: list[float], b: list[float]) -> dict:
  a, b = np.asarray(a), np.asarray(b)
  return {"median_of_paired": float(np.median(a / b)),
          "of_medians": float(np.median(a) / np.median(b)), "of_mins": float(a.min() / b.min())}


# ---- train step ------------------------------------------------------------------------------

def _jax_step(config, task_id: str, name: str, variables: dict, batch_np: dict):
  runner = train.Runner(config, task_id, name, variables)
  fixed = runner.put({"params": runner.frozen, "stats": runner.base_stats})
  consts = runner.put(runner.task.load(config))
  batch = sharding.put_batch(batch_np, runner.mesh)
  # A host copy: the step donates its state, and device_put of a device array may alias it.
  box = {"state": runner.put(jax.device_get(runner.init_state)), "losses": []}

  def step():
    box["state"], metrics = runner.train_step(box["state"], fixed, consts, batch)
    jax.block_until_ready(box["state"])
    box["losses"].append(metrics["loss"])

  return step, runner, box


def train_steps(config, s: dict, peer: bool = False) -> dict:
  task = tasks.get(s["task"])
  cfg = train.model_config(config)
  heads = ((s["task"], task.head_channels),)
  variables = jax.tree.map(np.asarray, unet.init(cfg, heads, int(config.seed), config.image_size))
  batch = synthetic_batch(config.batch_size, config.image_size, task.head_channels)
  timers, first, extra = {}, {}, {}
  for name in [n.strip() for n in s["strategies"].split(",") if n.strip()]:
    step, runner, box = _jax_step(config, s["task"], name, variables, batch)
    t = time.perf_counter()
    step()
    first[name] = time.perf_counter() - t
    for _ in range(max(s["warmup"] - 1, 0)):
      step()
    timers[name] = step
    extra[name] = (runner, box)
  if peer:
    from piggyjax import peer as torch_peer
    torch_peer.self_check()
    for name in ("piggyback", "finetune"):
      fn = torch_peer.make_step(cfg.widths, task.head_channels, name, batch,
                                threads=s["peer_threads"] or None)
      t = time.perf_counter()
      for _ in range(max(s["warmup"], 1)):
        fn()
      first[f"peer_{name}"] = (time.perf_counter() - t) / max(s["warmup"], 1)
      timers[f"peer_{name}"] = fn
  times = round_robin(timers, s["steps"])
  out = {"strategies": {}, "ratios": {}}
  for name in timers:
    row = summary(times[name])
    row["first_call_s"] = first[name]
    if name in extra:
      runner, box = extra[name]
      row["compile_s"] = max(first[name] - row["median_ms"] / 1e3, 0.0)
      # One compiled program per strategy: a second one would mean a recompile in the loop.
      row["compiled_programs"] = int(runner.train_step._cache_size())
      losses = [float(x) for x in box["losses"]]
      row["loss_first"], row["loss_last"] = losses[0], losses[-1]
    out["strategies"][name] = row
  pairs = [("piggyback", "finetune"), ("peer_piggyback", "peer_finetune"),
           ("piggyback", "peer_piggyback"), ("finetune", "peer_finetune")]
  for a, b in pairs:
    if a in times and b in times:
      out["ratios"][f"{a}/{b}"] = ratio(times[a], times[b])
  out["masked_weights"] = masks.count(masks.init_scores(variables["params"]))
  if peer:
    n = torch_peer.masked_weights(timers["peer_piggyback"].model)
    if n != out["masked_weights"]:   # then the peer is not the same network
      raise RuntimeError(f"the peer masks {n} weights, piggyjax {out['masked_weights']}")
    out["peer"] = {**torch_peer.info(), "masked_weights": n, "self_check": "passed"}
  return out


# ---- inference -------------------------------------------------------------------------------

def inference(config, s: dict) -> dict:
  """Images/s with the masks applied inside the jitted forward vs weights materialised once."""
  task = tasks.get(s["task"])
  cfg = train.model_config(config)
  heads = ((s["task"], task.head_channels),)
  v = unet.init(cfg, heads, int(config.seed), config.image_size)
  model = unet.UNet(cfg, heads)
  mask = jax.device_put(random_masks({"backbone": v["params"]["backbone"]}, s["mask_density"]))
  x = jax.device_put(task.model_input(synthetic_batch(config.batch_size, config.image_size,
                                                      task.head_channels)))

  @jax.jit
  def on_the_fly(v, mask, x):
    params = masks.apply_binary_masks(v["params"], mask)
    return model.apply({**v, "params": params}, x, s["task"], False)

  @jax.jit
  def plain(v, x):
    return model.apply(v, x, s["task"], False)

  materialised = {**v, "params": jax.jit(masks.apply_binary_masks)(v["params"], mask)}
  timers = {"on_the_fly": lambda: on_the_fly(v, mask, x).block_until_ready(),
            "materialised": lambda: plain(materialised, x).block_until_ready()}
  for fn in timers.values():
    for _ in range(max(s["warmup"], 1)):
      fn()
  times = round_robin(timers, s["inference_steps"])
  out = {k: {**summary(t), "images_per_s": config.batch_size / float(np.median(t))}
         for k, t in times.items()}
  out["on_the_fly/materialised"] = ratio(times["on_the_fly"], times["materialised"])
  return out


# ---- the whole run ---------------------------------------------------------------------------

def machine() -> dict:
  cpu = platform.processor()
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  dev = jax.devices()[0]
  return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
          "python": platform.python_version(), "jax": jax.__version__,
          "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
          "device_count": jax.device_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "train_step_compiler_options": train.compiler_options(),
          "malloc_keeps_freed_memory": hostmem.applied}


def peak_host_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(config, peer: bool = False, bank: str | None = None, workdir=None) -> dict:
  from piggyjax import bench_bank
  s = settings(config)
  cfg = train.model_config(config)
  result = {"machine": machine(), "settings": s,
            "model": {"preset": config.model.preset, "widths": list(cfg.widths),
                      "norm": cfg.norm, "dtype": str(np.dtype(cfg.dtype)),
                      "image_size": config.image_size, "batch_size": config.batch_size,
                      "classes": tasks.get(s["task"]).head_channels},
            "load_average_start": list(os.getloadavg())}
  with tempfile.TemporaryDirectory(dir=workdir) as tmp:
    sections = [("train_step", lambda: train_steps(config, s, peer)),
                ("inference", lambda: inference(config, s)),
                ("task_switch", lambda: bench_bank.task_switch(config, s, Path(tmp))),
                ("storage", lambda: bench_bank.storage(config, s, Path(tmp), bank))]
    for name, fn in sections:
      t = time.perf_counter()
      result[name] = fn()
      result[name]["section_s"] = time.perf_counter() - t
  result["load_average_end"] = list(os.getloadavg())
  result["peak_host_memory_mb"] = peak_host_mb()
  return result


def markdown(r: dict) -> str:
  return bench_report.markdown(r)
