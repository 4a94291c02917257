"""What the user sees while training: a progress bar or log lines, metrics.jsonl, TensorBoard."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from absl import logging


class Reporter:
  """Progress with ETA on a terminal, plain log lines elsewhere; scalars to jsonl + TensorBoard.

  Only the writing process (process 0) creates files.
  """

  def __init__(self, workdir: Path | None, total: int, start: int = 0, desc: str = "",
               log_every: int = 10):
    self.total, self.step, self.desc, self.log_every = total, start, desc, log_every
    self.start_step, self.t0 = start, time.time()
    self.tty = sys.stderr.isatty()
    self._jsonl = self._tb = None
    if workdir is not None:
      workdir.mkdir(parents=True, exist_ok=True)
      self._jsonl = open(workdir / "metrics.jsonl", "a")
      if self._jsonl.tell() and not (workdir / "metrics.jsonl").read_bytes().endswith(b"\n"):
        self._jsonl.write("\n")  # a line torn by a kill stays a line of its own
      try:
        from tensorboardX import SummaryWriter
        self._tb = SummaryWriter(str(workdir / "tb"))
      except ImportError:  # TensorBoard is a nicety; metrics.jsonl has everything
        pass

  def eta(self) -> str:
    done = self.step - self.start_step
    if done <= 0:
      return "?"
    left = (time.time() - self.t0) / done * (self.total - self.step)
    return f"{int(left // 60)}:{int(left % 60):02d}"

  def scalars(self, step: int, values: dict, prefix: str = "train") -> None:
    row = {"step": step, "time": round(time.time(), 3),
           **{f"{prefix}/{k}": float(v) for k, v in values.items()}}
    if self._jsonl:
      self._jsonl.write(json.dumps(row) + "\n")
      self._jsonl.flush()
    if self._tb:
      for k, v in values.items():
        self._tb.add_scalar(f"{prefix}/{k}", float(v), step)

  def advance(self, step: int, values: dict) -> None:
    self.step = step
    loss = values.get("loss", float("nan"))
    msg = f"{self.desc} step {step}/{self.total} loss {loss:.4f} ETA {self.eta()}"
    if self.tty:
      width = 24
      filled = int(width * step / max(self.total, 1))
      sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {msg}  ")
      sys.stderr.flush()
      if step >= self.total:
        sys.stderr.write("\n")
    elif step % self.log_every == 0 or step >= self.total:
      logging.info(msg)

  def close(self) -> None:
    if self._jsonl:
      self._jsonl.close()
    if self._tb:
      self._tb.close()


def images_per_s(metrics_jsonl: Path, batch_size: int) -> dict:
  """Training images/s between the first and the last train row of a run's metrics.jsonl (the
  first row comes after compilation and the first batches, so they are left out)."""
  rows = [json.loads(line) for line in metrics_jsonl.read_text().splitlines() if line.strip()]
  rows = [r for r in rows if "train/loss" in r]
  if len(rows) < 2:
    raise ValueError(f"{metrics_jsonl}: {len(rows)} train rows; need 2 (train >= 20 steps)")
  first, last = rows[0], rows[-1]
  steps, seconds = last["step"] - first["step"], last["time"] - first["time"]
  if steps <= 0 or seconds <= 0:
    raise ValueError(f"{metrics_jsonl}: rows from step {first['step']} to {last['step']} over "
                     f"{seconds:.3f} s; one run's rows, in order, are needed")
  return {"steps": steps, "seconds": round(seconds, 3),
          "images_per_s": batch_size * steps / seconds,
          "from_step": first["step"], "to_step": last["step"]}
