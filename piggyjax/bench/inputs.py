"""Input-pipeline throughput: ``python -m piggyjax.bench.inputs [--source quickstart|samples] ...``.

Prints images/s of ``batches()`` (decode + augment + batch), the number to hold against a
training step's images/s to see whether the input would starve it.
"""
from __future__ import annotations

import argparse
import time

import ml_collections

from piggyjax.data import batches, make_source


def measure(task: str, source: str, data_dir: str | None, image_size: int, batch_size: int,
            steps: int, num_threads: int, train: bool = True) -> float:
  config = ml_collections.ConfigDict({"data": {"source": source, "data_dir": data_dir}})
  src = make_source(task, "train", config)
  it = batches(src, batch_size=batch_size, image_size=image_size, train=train, seed=0,
               num_epochs=None, shard_index=0, shard_count=1, num_threads=num_threads)
  next(it)  # warm-up: thread pool start, photo loading
  start = time.perf_counter()
  for _ in range(steps):
    next(it)
  return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--task", default="seg_voc")
  p.add_argument("--source", default="samples")
  p.add_argument("--data_dir", default=None)
  p.add_argument("--image_size", type=int, default=256)
  p.add_argument("--batch_size", type=int, default=16)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--num_threads", type=int, default=4)
  a = p.parse_args()
  rate = measure(a.task, a.source, a.data_dir, a.image_size, a.batch_size, a.steps, a.num_threads)
  print(f"{a.task} {a.source} {a.image_size}x{a.image_size} batch {a.batch_size} "
        f"threads {a.num_threads}: {rate:.1f} images/s")


if __name__ == "__main__":
  main()
