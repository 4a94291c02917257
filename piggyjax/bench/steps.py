"""Train step per strategy (and the PyTorch peer) and inference, timed round-robin."""
from __future__ import annotations

import time

import jax
import numpy as np

from piggyjax import masks, sharding, tasks, train
from piggyjax.bench import flops
from piggyjax.bench.common import random_masks, ratio, round_robin, summary, synthetic_batch
from piggyjax.models import unet


# ---- train step ------------------------------------------------------------------------------

def _jax_step(config, task_id: str, name: str, variables: dict, batch_np: dict):
  runner = train.Runner(config, task_id, name, variables)
  fixed = runner.put({"params": runner.frozen, "stats": runner.base_stats})
  consts = runner.put(runner.task.load(config))
  batch = sharding.put_batch(batch_np, runner.mesh)
  # A host copy: the step donates its state, and device_put of a device array may alias it.
  box = {"state": runner.put(jax.device_get(runner.init_state)), "losses": [],
         "args": (fixed, consts, batch)}

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
  gflop = {name: flops.step_gflop(runner, box["state"], *box["args"])
           for name, (runner, box) in extra.items()} if s["flops"] else {}
  if s["flops"]:  # a contestant like the others: same rounds, same load
    timers["matmul_peak"], mm_gflop = flops.matmul(s["matmul_size"])
    timers["forward"], gflop["forward"] = flops.forward(config, s["task"], variables, batch)
    timers["convolutions"], gflop["convolutions"] = flops.convolutions(config, variables)
    if s["conv_parts"]:
      kernels = {"": None, "_ynnpack": {}} if jax.default_backend() == "cpu" else {"": None}
      for part in flops.CONV_PARTS:
        for suffix, options in kernels.items():
          name = f"conv_{part}{suffix}"
          timers[name], gflop[name] = flops.convolutions(config, variables, (part,), options)
    for name in set(timers) - set(first):
      first[name] = 0.0
  if peer:
    from piggyjax.bench import peer as torch_peer
    torch_peer.self_check()
    for name in ("piggyback", "finetune"):
      fn = torch_peer.make_step(cfg.widths, task.head_channels, name, batch,
                                threads=s["peer_threads"] or None)
      t = time.perf_counter()
      for _ in range(max(s["warmup"], 1)):
        fn()
      first[f"peer_{name}"] = (time.perf_counter() - t) / max(s["warmup"], 1)
      timers[f"peer_{name}"] = fn
      if name in gflop:   # the same network and work: XLA's count stands for both
        gflop[f"peer_{name}"] = gflop[name]
    if s["flops"]:
      timers["peer_convolutions"] = torch_peer.make_convolutions(
          flops.conv_layers(config, variables), config.batch_size)
      gflop["peer_convolutions"] = gflop["convolutions"]
      first["peer_convolutions"] = 0.0
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
  if s["flops"]:
    out["vs_matmul_peak"] = {name: flops.vs_peak(times[name], g, times["matmul_peak"], mm_gflop)
                             for name, g in gflop.items()}
    out["vs_matmul_peak"]["matmul_size"] = s["matmul_size"]
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
