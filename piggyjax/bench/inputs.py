"""The input side: training-batch images/s per core for each source, raw and prepared, and
where a record's time goes (decode vs resize/crop/flip vs the rest).

"Per core" is images per CPU-second of this process (user + system, all of grain's threads):
on a machine shared with other jobs that is steadier than wall time, and times the number of
host cores it extrapolates what a larger host would feed (assuming the pipeline scales across
cores, which grain's threads do while PIL releases the GIL; the threads-vs-wall figures show how
far they did here). Also ``python -m piggyjax.bench.inputs --source=voc`` for one source.
"""
from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import ml_collections
import numpy as np

from piggyjax.data import batches, make_source, prepared, records, transforms

# name -> (task id, config.data fields besides data_dir)
SOURCES = {
    "voc": ("seg_voc", {"source": "samples"}),
    "coco": ("seg_coco", {"source": "samples"}),
    "camvid": ("seg_camvid", {"source": "dirs"}),
    "folder": ("colorize_coco", {"source": "samples"}),   # unlabelled photos (ImageFolder)
    "quickstart": ("seg_voc", {"source": "quickstart"}),
}


def _cpu() -> float:
  return time.process_time()  # every thread of this process, ns resolution (os.times: 10 ms)


def _cpu_thread() -> float:
  return time.thread_time()


class Cycled:
  """``source``'s records repeated up to ``length``: the sample sets hold 3-20 records, and on
  so few grain's index shuffle alone costs ~2-5 ms a record (0.03 ms from 1,000 on), which
  would swamp what is measured here."""

  def __init__(self, source, length: int) -> None:
    self.source, self.length = source, max(int(length), len(source))
    for k in ("has_labels", "num_classes", "class_names", "strict"):
      setattr(self, k, getattr(source, k, None))

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, index: int):
    return self.source[int(index) % len(self.source)]


def source_config(name: str, data_dir: str, image_size: int,
                  prepared_dir: str = "") -> ml_collections.ConfigDict:
  task, fields = SOURCES[name]
  return ml_collections.ConfigDict({"image_size": image_size, "data": {
      **fields, "data_dir": data_dir, "prepared_dir": prepared_dir}})


def stages(source, image_size: int, records_n: int, seed: int = 0) -> dict:
  """Per record, one thread, no grain: ``src[i]`` (read + decode, labels included) and the
  training view (resize the crop window, flip), in CPU ms; raw JPEGs at full size."""
  rng = np.random.default_rng(seed)
  labels = bool(getattr(source, "has_labels", False))
  draft = None if labels else transforms.largest_view(image_size)
  read, view, read_draft = [], [], []
  try:
    source[0]  # warm-up: a first read opens files, verifies a shard's checksum
  except records.SkipRecord:
    pass
  for i in itertools.islice(itertools.cycle(range(len(source))), records_n):
    t0 = _cpu_thread()
    try:
      ex = source[i]
    except records.SkipRecord:
      continue
    t1 = _cpu_thread()
    h, w = transforms.frame_hw(ex)
    transforms.apply_view(ex, transforms.train_view(h, w, image_size, rng), image_size)
    t2 = _cpu_thread()
    read.append(t1 - t0)
    view.append(t2 - t1)
    if draft:
      with records.decode_at_least(draft):
        t3 = _cpu_thread()
        source[i]
        read_draft.append(_cpu_thread() - t3)
  out = {"decode_ms": 1e3 * float(np.mean(read)), "resize_crop_flip_ms": 1e3 * float(np.mean(view)),
         "records": len(read)}
  if read_draft:
    out["decode_draft_ms"] = 1e3 * float(np.mean(read_draft))
  return out


def _cpu_with_workers() -> float:
  """This process's CPU seconds plus its live child processes' (grain's workers)."""
  import psutil
  me = psutil.Process()
  total = _cpu()
  for child in me.children(recursive=True):
    try:
      t = child.cpu_times()
      total += t.user + t.system
    except psutil.Error:  # it ended meanwhile
      pass
  return total


def pipeline_rate(source, image_size: int, batch_size: int, n_batches: int, threads: int,
                  seed: int = 0, workers: int = 0, device_augment: bool = False) -> dict:
  """``workers`` > 0: grain worker processes, each with ``threads`` threads; CPU time then
  counts them too (psutil, 10 ms ticks: time enough batches). ``device_augment``: the host's
  share of config.data.device_augment (canvases; the views are not made here)."""
  it = batches(Cycled(source, 4096), batch_size=batch_size, image_size=image_size, train=True,
               seed=seed, num_epochs=None, shard_index=0, shard_count=1, num_threads=threads,
               worker_count=workers, device_augment=device_augment)
  cpu_now = _cpu_with_workers if workers else _cpu
  for _ in range(1 + 2 * workers):  # warm-up: threads or processes start, shard checksums
    next(it)
  wall, cpu = time.perf_counter(), cpu_now()
  for _ in range(n_batches):
    next(it)
  wall, cpu = time.perf_counter() - wall, cpu_now() - cpu
  getattr(it, "close", lambda: None)()
  n = n_batches * batch_size
  return {"threads": threads, "workers": workers, "images": n, "images_per_s": n / wall,
          "images_per_cpu_s": n / max(cpu, 1e-9), "cpu_ms_per_image": 1e3 * cpu / n}


def with_workers(row: dict, source, image_size: int, batch_size: int, n_batches: int,
                 workers: int) -> None:
  """``row`` (threads) gains the same source read by ``workers`` processes of one thread."""
  if workers > 0:
    w = pipeline_rate(source, image_size, batch_size, n_batches, 1, workers=workers)
    w["per_core_vs_threads"] = w["images_per_cpu_s"] / row["images_per_cpu_s"]
    w["wall_vs_threads"] = w["images_per_s"] / row["images_per_s"]
    row["worker_processes"] = w


def measure(name: str, data_dir: str, image_size: int, batch_size: int, n_batches: int,
            threads: int, workdir: str | None = None, encodings=("raw",), workers: int = 0) -> dict:
  """Raw and prepared figures for one source (and with ``workers`` processes, if > 0)."""
  task, _ = SOURCES[name]
  raw = make_source(task, "train", source_config(name, data_dir, image_size))
  out = {"task": task, "records": len(raw), "raw": pipeline_rate(raw, image_size, batch_size,
                                                                  n_batches, threads)}
  with_workers(out["raw"], raw, image_size, batch_size, n_batches, workers)
  out["raw"]["stages"] = stages(raw, image_size, min(max(len(raw), 24), 96))
  _split(out["raw"])
  with tempfile.TemporaryDirectory(dir=workdir) as tmp:
    for enc in encodings:
      d = str(Path(tmp) / enc)
      t = _cpu()
      m = prepared.prepare(raw, prepared.set_dir(d, task, "train"), task_id=task, split="train",
                           image_size=image_size, encoding=enc)
      prepare_s = (_cpu() - t) / len(raw)
      prep = make_source(task, "train", source_config(name, data_dir, image_size, d))
      row = pipeline_rate(prep, image_size, batch_size, n_batches, threads)
      if enc == "raw":
        with_workers(row, prep, image_size, batch_size, n_batches, workers)
      row["stages"] = stages(prep, image_size, min(max(len(prep), 24), 96))
      _split(row)
      row["prepare_cpu_ms_per_image"] = 1e3 * prepare_s
      row["bytes_per_image"] = sum(s["bytes"] for s in m["shards"]) / len(raw)
      row["speedup_per_core"] = row["images_per_cpu_s"] / out["raw"]["images_per_cpu_s"]
      out[f"prepared_{enc}"] = row
  return out


def _split(row: dict) -> None:
  """Where a pipeline image's CPU time goes: decode, resize/crop/flip, and the rest (grain,
  batching, threads), the rest being what the pipeline spent beyond the two stages."""
  s = row["stages"]
  row["rest_ms"] = row["cpu_ms_per_image"] - s["decode_ms"] - s["resize_crop_flip_ms"]


def input_pipeline(config, s: dict, workdir: str | None = None) -> dict:
  out, size = {"image_size": s["input_image_size"], "cores_extrapolated": s["input_cores"],
               "sources": {}}, int(s["input_image_size"])
  names = [n.strip() for n in s["input_sources"].split(",") if n.strip()]
  if set(names) - set(SOURCES):
    raise ValueError(f"config.bench.input_sources: unknown {sorted(set(names) - set(SOURCES))}; "
                     f"known: {sorted(SOURCES)}")
  for name in names:
    try:
      r = measure(name, s["input_data_dir"], size, s["input_batch_size"], s["input_batches"],
                  s["input_threads"], workdir, tuple(s["input_encodings"].split(",")),
                  int(s["input_workers"]))
    except (FileNotFoundError, ValueError) as e:  # e.g. no CamVid reader or data here
      out["sources"][name] = {"error": f"{type(e).__name__}: {e}"}
      continue
    for k in [k for k in r if k == "raw" or k.startswith("prepared_")]:
      r[k]["images_per_s_at_cores"] = r[k]["images_per_cpu_s"] * s["input_cores"]
    out["sources"][name] = r
  # config.data.device_augment's host share against today's views (issue 14's VOC target).
  for name in [n.strip() for n in s["input_device_augment"].split(",") if n.strip()]:
    try:
      out.setdefault("device_augment", {})[name] = device_augment_rounds(
          name, s["input_data_dir"], size, s["input_batch_size"], s["input_batches"],
          s["input_threads"], int(s["input_rounds"]), workdir)
    except (FileNotFoundError, ValueError, KeyError) as e:
      out.setdefault("device_augment", {})[name] = {"error": f"{type(e).__name__}: {e}"}
  return out


def device_cost(batch: dict, image_size: int, calls: int = 10) -> dict:
  """``device_augment.augment`` on one canvas batch on JAX's default backend, jitted, after two
  warm-up calls: wall and process-CPU ms per batch (on a CPU backend that is host time too)."""
  import jax
  from piggyjax.data import device_augment
  fn = jax.jit(device_augment.augment, static_argnums=2)
  x = jax.device_put(batch)
  for i in range(2):
    jax.block_until_ready(fn(x, jax.random.key(i), image_size))
  wall, cpu = time.perf_counter(), _cpu()
  for i in range(calls):
    jax.block_until_ready(fn(x, jax.random.key(2 + i), image_size))
  wall, cpu = time.perf_counter() - wall, _cpu() - cpu
  return {"backend": jax.default_backend(), "device": str(jax.devices()[0]),
          "batch": int(batch["image"].shape[0]), "canvas": int(batch["image"].shape[1]),
          "wall_ms_per_batch": 1e3 * wall / calls, "cpu_ms_per_batch": 1e3 * cpu / calls}


def device_augment_rounds(name: str, data_dir: str, image_size: int, batch_size: int,
                          n_batches: int, threads: int, rounds: int = 3,
                          workdir: str | None = None) -> dict:
  """Host images per CPU-second of today's views on the raw source (``host_raw``) and the
  prepared set (``host_prepared``) against the host's share of config.data.device_augment on
  the same two (``device_raw``, ``device_prepared``), interleaved in each round of one process,
  plus ``device_cost`` of the views on this machine's backend once per round."""
  task, _ = SOURCES[name]
  raw = make_source(task, "train", source_config(name, data_dir, image_size))
  out = {"task": task, "records": len(raw), "image_size": image_size, "batch_size": batch_size,
         "batches": n_batches, "threads": threads, "rounds": []}
  with tempfile.TemporaryDirectory(dir=workdir) as tmp:
    prepared.prepare(raw, prepared.set_dir(tmp, task, "train"), task_id=task, split="train",
                     image_size=image_size)
    prep = make_source(task, "train", source_config(name, data_dir, image_size, tmp))
    for r in range(rounds):
      row = {}
      for key, src, dev in (("host_raw", raw, False), ("device_raw", raw, True),
                            ("host_prepared", prep, False), ("device_prepared", prep, True)):
        row[key] = pipeline_rate(src, image_size, batch_size, n_batches, threads, seed=r,
                                 device_augment=dev)
      rate = {k: v["images_per_cpu_s"] for k, v in row.items()}
      row["vs_host_raw"] = {k: rate[k] / rate["host_raw"] for k in rate}
      row["device_prepared_vs_host_prepared"] = rate["device_prepared"] / rate["host_prepared"]
      canvas = next(batches(Cycled(prep, 4096), batch_size=batch_size, image_size=image_size,
                            train=True, seed=r, shard_index=0, shard_count=1,
                            num_threads=threads, device_augment=True))
      row["device_views"] = device_cost(canvas, image_size)
      out["rounds"].append(row)
  for k in ("host_raw", "device_raw", "host_prepared", "device_prepared"):
    out[f"median_{k}_images_per_cpu_s"] = float(np.median(
        [row[k]["images_per_cpu_s"] for row in out["rounds"]]))
  out["median_device_views_cpu_ms_per_batch"] = float(np.median(
      [row["device_views"]["cpu_ms_per_batch"] for row in out["rounds"]]))
  return out


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--source", default="voc", choices=sorted(SOURCES))
  p.add_argument("--data_dir", default="../shared/data")
  p.add_argument("--image_size", type=int, default=256)
  p.add_argument("--batch_size", type=int, default=8)
  p.add_argument("--batches", type=int, default=10)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--encodings", default="raw,jpeg")
  p.add_argument("--workers", type=int, default=0, help="also measure grain worker processes")
  p.add_argument("--device_augment", default="",
                 help="sources (e.g. voc,coco): host views vs config.data.device_augment's host "
                      "share, raw and prepared, in --rounds interleaved rounds, and the views' "
                      "cost on this backend; replaces the default measurement")
  p.add_argument("--rounds", type=int, default=3)
  a = p.parse_args()
  if a.device_augment:
    print(json.dumps({n: device_augment_rounds(n, a.data_dir, a.image_size, a.batch_size,
                                               a.batches, a.threads, a.rounds)
                      for n in a.device_augment.split(",")}, indent=1))
    return
  print(json.dumps(measure(a.source, a.data_dir, a.image_size, a.batch_size, a.batches,
                           a.threads, encodings=tuple(a.encodings.split(",")),
                           workers=a.workers), indent=1))


if __name__ == "__main__":
  main()
