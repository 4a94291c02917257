"""The whole benchmark: every section in one process, as one JSON-ready dict, and its Markdown
summary. ``experiments/benchmark.py`` is the entry point."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from piggyjax import tasks, train
from piggyjax.bench import bank as bench_bank
from piggyjax.bench import inputs, report, steps, vgg
from piggyjax.bench.common import machine, peak_host_mb, settings


def run(config, peer: bool = False, bank: str | None = None, workdir=None) -> dict:
  s = settings(config)
  cfg = train.model_config(config)
  result = {"machine": machine(), "settings": s,
            "model": {"preset": config.model.preset, "widths": list(cfg.widths),
                      "norm": cfg.norm, "dtype": str(np.dtype(cfg.dtype)),
                      "image_size": config.image_size, "batch_size": config.batch_size,
                      "classes": tasks.get(s["task"]).head_channels},
            "load_average_start": list(os.getloadavg())}
  with tempfile.TemporaryDirectory(dir=workdir) as tmp:
    sections = [("train_step", lambda: steps.train_steps(config, s, peer)),
                ("inference", lambda: steps.inference(config, s)),
                ("task_switch", lambda: bench_bank.task_switch(config, s, Path(tmp))),
                ("storage", lambda: bench_bank.storage(config, s, Path(tmp), bank)),
                ("input_pipeline", lambda: inputs.input_pipeline(config, s, tmp)),
                ("vgg_step", lambda: vgg.vgg_step(config, s, peer))]
    chosen = [n.strip() for n in s["sections"].split(",") if n.strip()]
    unknown = set(chosen) - {n for n, _ in sections}
    if unknown:
      raise ValueError(f"config.bench.sections: unknown {sorted(unknown)}; known: "
                       f"{[n for n, _ in sections]}")
    for name, fn in [(n, f) for n, f in sections if n in chosen]:
      t = time.perf_counter()
      result[name] = fn()
      result[name]["section_s"] = time.perf_counter() - t
  result["load_average_end"] = list(os.getloadavg())
  result["peak_host_memory_mb"] = peak_host_mb()
  return result


def markdown(r: dict) -> str:
  return report.markdown(r)
