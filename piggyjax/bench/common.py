"""What every benchmark section shares: its settings, synthetic inputs, round-robin timing and
summaries, and a description of the machine.

Timings interleave their contestants round-robin (one step of each per round) so that a noisy,
shared machine slows all of them alike; ratios are reported as the median of per-round ratios
next to the ratio of medians and of minima.
"""
from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from piggyjax import masks, train
from piggyjax.bench import hostmem

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
    "sections": "train_step,inference,task_switch,storage,input_pipeline",
    "flops": True,                     # XLA's FLOPs per step over a matmul timed in the rounds
    "matmul_size": 2048,               # n of the n^3 float32 matmul that stands for the peak
    # With flops: the step's convolutions alone (the ceiling for its kernels), and each part of
    # them (forward, input gradient, weight gradient) with the step's and XLA's default kernels.
    "conv_parts": True,
    # The input side (piggyjax/bench/inputs.py): per source, raw and prepared.
    "input_sources": "voc,coco,camvid,folder,quickstart",
    "input_image_size": 256,
    "input_batch_size": 8,
    "input_batches": 20,               # timed batches per source and form
    "input_threads": 2,                # grain threads
    "input_workers": 0,                # > 0: also grain worker processes (one thread each)
    "input_cores": 16,                 # images/s per core are extrapolated to this many cores
    "input_encodings": "raw,jpeg",     # prepared forms measured
    "input_data_dir": "../shared/data",
    "input_device_augment": "",        # e.g. "voc,coco": also config.data.device_augment's host
    "input_rounds": 3,                 # share vs today's views, in this many interleaved rounds
    # vgg_step (piggyjax/bench/vgg.py): the ImageNet VGG-16 Piggyback step vs the PyTorch peer.
    # Piggyback's own size is 224 px, batch 32 (~1.5 TFLOP a step); these fit a 2-core CPU.
    "vgg_image_size": 64,
    "vgg_batch_size": 8,
    "vgg_classes": 200,                # CUBS-200, Piggyback's first Table 2 task
    "vgg_strategies": "piggyback,finetune",
    "vgg_steps": 5,                    # timed rounds after warm-up
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
