"""The continual sequence: every strategy learns the tasks in order; every stored task is
evaluated after every new one (the matrix R[after j][task i]); then tables and figures.

Progress is saved after each task (``sequence_<strategy>.json`` next to the banks), so a killed
run picks up where it stopped instead of training everything again.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from pathlib import Path

import jax
import numpy as np
from absl import logging

from piggyjax import (data, diskfull, locking, models, report, sharding, strategies, tasks,
                      train, validate)
from piggyjax.bank import Bank


def _split(names: str) -> list[str]:
  return [n.strip() for n in str(names).split(",") if n.strip()]


def check_sequence(config) -> tuple[list[str], list[str]]:
  # registers config.task_defs; every id of config.tasks known and distinct, in order
  task_ids, strats = tasks.from_config(config), _split(config.strategies)
  if strats == ["all"]:  # --config.strategies=all: the paper's four and every baseline
    pretrained = models.is_pretrained(train.model_config(config))
    strats = list(strategies.ALL_PRETRAINED if pretrained else strategies.ALL_DENSE)
  for s in strats:
    strategies.get(s, config)
  if len(set(task_ids)) != len(task_ids) or not task_ids:
    raise ValueError(f"config.tasks must name distinct tasks, got {config.tasks!r}")
  return task_ids, strats


class _Picked:
  """Records ``ids`` of a source, in that order (figure images spread over a split)."""

  def __init__(self, source, ids: list[int]):
    self.source, self.ids = source, ids
    self.has_labels = getattr(source, "has_labels", None)
    self.label_kind = getattr(source, "label_kind", "pixel")  # a class per image, or per pixel

  def __len__(self) -> int:
    return len(self.ids)

  def __getitem__(self, i: int) -> dict:
    return self.source[self.ids[i]]


def figure_batch(config, task_id: str) -> dict:
  """``config.figure_images`` evaluation images: the same for every strategy, at
  ``config.figure_size`` pixels if set (the U-Net is convolutional: it runs at any size).
  The first ones, or with ``config.figure_spread`` ones spread evenly over the split: CamVid's
  val split is video, so its first four frames show one street four times.
  ``config.figure_from[task_id]`` names another task whose eval photos to draw instead, for a
  task that reads no labels (colorization, style): CamVid's val split is 7 s of one drive, so
  the real runs show their colorization and paintings on MSRC's scenes."""
  other = dict(config.get("figure_from") or {}).get(task_id, task_id)
  if other != task_id:
    kind = tasks.get(task_id).kind
    if kind in ("segmentation", "classification"):
      raise validate.ConfigError(
          f"config.figure_from.{task_id}={other!r}: a {kind} task's figures need their own labels; "
          f"figure_from is for tasks that read none (colorization, style)")
    if other not in config.task_defs:
      raise validate.ConfigError(
          f"config.figure_from.{task_id}={other!r} is not a task of this config; choose one of "
          f"{', '.join(sorted(config.task_defs))}")
  source = data.make_source(other, "eval", config)
  n = max(1, int(config.figure_images))
  if config.get("figure_spread") and len(source) > n:
    source = _Picked(source, [i * len(source) // n for i in range(n)])
  size = int(config.get("figure_size") or config.image_size)
  batch = next(iter(data.batches(source, batch_size=n, image_size=size,
                                 train=False, seed=config.seed, shard_index=0, shard_count=1)))
  return {k: v for k, v in batch.items() if k != "id"}


def _digest(x) -> str:
  return hashlib.sha256(np.ascontiguousarray(np.asarray(x)).tobytes()).hexdigest()[:16]


def _curve(run_dir: Path) -> list[list[float]]:
  path = run_dir / "metrics.jsonl"
  if not path.exists():
    return []
  by_step = {}
  for line in path.read_text().splitlines():
    try:
      row = json.loads(line)
    except ValueError:  # a line torn by a kill; the rerun logged that step again
      continue
    if isinstance(row, dict) and "train/loss" in row:
      by_step[row["step"]] = row["train/loss"]  # a resumed run repeats steps: the same values
  return [[step, loss] for step, loss in sorted(by_step.items())]


def task_consts(cache: dict, task_id: str, config):
  """A task's constants (VGG-16 and Gram targets for style), loaded once per run."""
  if task_id not in cache:
    cache[task_id] = tasks.get(task_id).load(config)
  return cache[task_id]


def run_strategy(config, strategy: str, task_ids: list[str], workdir: Path,
                 fig_batches: dict, consts: dict) -> dict:
  """Train ``strategy`` over the sequence; returns its part of results.json."""
  model_cfg = train.model_config(config)
  bank_path = workdir / f"bank_{strategy}"
  progress_path = workdir / f"sequence_{strategy}.json"
  done = json.loads(progress_path.read_text()) if progress_path.exists() else {}
  rows, digests = done.get("matrix", []), done.get("digests", {})
  # A sequence cut short or extended (--config.tasks=a,b then a,b,c) continues where it
  # stopped: its finished rows get as many columns as the sequence has tasks.
  rows = [(r + [None] * len(task_ids))[:len(task_ids)] for r in rows[:len(task_ids)]]
  class_iou = done.get("class_iou", {})  # segmentation: {task: {after_training|final: {class: IoU}}}
  class_acc = done.get("class_accuracy", {})  # classification: the same, accuracy per class
  if sharding.is_writer() and not (bank_path / "bank.json").exists():
    tmp = workdir / f".bank_{strategy}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    size = sum(f.stat().st_size for f in (workdir / "bank_base").rglob("*") if f.is_file())
    with diskfull.guard(tmp, size):  # the copy is renamed into place whole, or not at all
      shutil.copytree(workdir / "bank_base", tmp)  # the first task is shared by all strategies
    os.replace(tmp, bank_path)
  sharding.barrier(f"piggyjax copied {bank_path}")  # the others open it next
  bank = Bank.open(bank_path)
  for j, task_id in enumerate(task_ids):
    if j < len(rows):
      continue  # finished before a restart: its row and outputs are in the progress file
    # PackNet adopts the shared first task: it prunes that dense network and retrains it.
    adopt = (j == 0 and task_id in bank.tasks() and bank.meta(task_id)["strategy"] == "base"
             and getattr(strategies.get(strategy, config), "adopts_first", False))
    if task_id not in bank.tasks() or adopt:
      train.train_task(config, task_id, strategy, workdir / strategy / task_id, bank=bank,
                       consts=task_consts(consts, task_id, config))
      bank = Bank.open(bank_path)
    row, outs = [], {}
    for i, old in enumerate(task_ids[:j + 1]):
      variables = bank.load(old)
      ev = train.evaluator(old, model_cfg)
      row.append(ev.evaluate(variables, task_consts(consts, old, config), config))
      per_fn, into = ((ev.task.class_iou, class_iou) if hasattr(ev.task, "class_iou") else
                      (getattr(ev.task, "class_accuracy", None), class_acc))
      if per_fn is not None and (i == j or j == len(task_ids) - 1):
        per_class = per_fn(ev.last_state, ev.last_class_names)
        for when in ("after_training",) * (i == j) + ("final",) * (j == len(task_ids) - 1):
          into.setdefault(old, {})[when] = per_class
      outs[old] = _digest(sharding.to_host(ev.predict(ev.put(variables),
                                                      ev.put(fig_batches[old]))))
    rows.append(row + [None] * (len(task_ids) - j - 1))
    for old, d in outs.items():
      digests.setdefault(old, []).append(d)
    if sharding.is_writer():
      _write_json(progress_path, {"matrix": rows, "digests": digests, "class_iou": class_iou,
                                  "class_accuracy": class_acc})
    logging.info("%s after %s: %s", strategy, task_id, row)

  metas = {t: bank.meta(t) for t in task_ids}
  shared_first = metas[task_ids[0]]["strategy"] == "base"  # else a pretrained base
  return {
      "after_training": {t: rows[i][i] for i, t in enumerate(task_ids)},
      "matrix": rows,
      "sizes": bank.sizes(),
      "density": {t: m["density"] for t, m in metas.items() if m.get("density")},
      "bits_per_weight": {t: m["bits_per_weight"] for t, m in metas.items()
                          if m.get("bits_per_weight") is not None},
      "curves": {t: _curve(workdir / (strategy if i or not shared_first else "base") / t)
                 for i, t in enumerate(task_ids)},
      # Outputs on the figure images, unchanged after every later task?
      "bit_identical": {t: len(set(d)) == 1 for t, d in digests.items()},
      "class_iou": class_iou,
      "class_accuracy": class_acc,
      # Backbones on disk (the base, and every task that stores weights of its own): Table 2's
      # "# Models". A task's own norms (mask.norm=per_task) are not a network: kernels only.
      "networks": 1 + sum(any(e["path"].startswith("params/backbone/")
                              and e["path"].endswith("/kernel") for e in metas[t]["arrays"])
                          for t in task_ids),
      "bank": str(bank_path),
  }


def grids(config, task_ids, strats, workdir, fig_batches) -> dict:
  """Per task: input images and each strategy's final outputs on them."""
  model_cfg = train.model_config(config)
  out = {}
  for t in task_ids:
    task = tasks.get(t)
    ev = train.evaluator(t, model_cfg)
    batch = fig_batches[t]
    per = {}
    # A classifier's pictures carry class names, which its data source knows.
    named = ((tuple(data.make_source(t, "eval", config).class_names),)
             if task.kind == "classification" else ())
    for s in strats:
      y = sharding.to_host(ev.predict(ev.put(Bank.open(workdir / f"bank_{s}").load(t)),
                                      ev.put(batch)))
      per[s] = np.stack([task.to_image(y[k], batch["image"][k], *named) for k in range(len(y))])
    out[t] = {"inputs": batch["image"], "outputs": per, **_inputs_and_targets(task, batch, named)}
  return out


def _inputs_and_targets(task, batch, named: tuple = ()) -> dict:
  """What the network saw, and the ground truth as a picture, for the comparison grids."""
  if task.kind == "classification":  # the true class written on the photo
    from piggyjax.tasks.classification import label_image
    return {"targets": np.stack([label_image(img, task.name_of(int(c), *named))
                                 for img, c in zip(batch["image"], batch["label"])])}
  if task.kind == "colorization":  # the input is the gray image; the photo is the target
    gray = np.asarray(task.model_input(batch))[..., :1]  # lightness in [0, 1]
    gray = np.clip(gray * 255, 0, 255).astype(np.uint8)
    return {"inputs": np.repeat(gray, 3, axis=-1), "targets": batch["image"]}
  if task.kind == "segmentation":
    onehot = np.eye(task.head_channels, dtype=np.float32)[np.minimum(batch["label"],
                                                                     task.head_channels - 1)]
    onehot[batch["label"] == 255] = 0  # void shows as class 0's colour
    return {"targets": np.stack([task.to_image(o, i) for o, i in zip(onehot, batch["image"])])}
  return {}


def run(config, workdir: Path) -> dict:
  t0 = time.time()
  task_ids, strats = check_sequence(config)
  validate.check(config, strats)  # every setting, before anything is trained
  workdir = Path(workdir)
  held = [workdir, workdir / "bank_base", *(workdir / f"bank_{s}" for s in strats)]
  for path in held:  # one writer at a time: a second run here stops now, naming this one
    locking.hold(path, "workdir" if path == workdir else "bank")
  fig_batches = {t: figure_batch(config, t) for t in task_ids}
  results = {
      "tasks": task_ids,
      "primary": {t: {"metric": tasks.get(t).primary_metric,
                      "higher_is_better": tasks.get(t).higher_is_better} for t in task_ids},
      "strategies": {},
      "config": json.loads(config.to_json_best_effort()),
  }
  consts = {}  # shared by every strategy: each style task builds its VGG and Grams once
  first = task_ids[0]
  base_bank = workdir / "bank_base"
  pretrained = models.is_pretrained(train.model_config(config))
  need_base = not (base_bank / "bank.json").exists() or (
      not pretrained and first not in Bank.open(base_bank).tasks())
  # Finished work found here: this invocation's elapsed time is not the sequence's.
  resumed = not need_base or any((workdir / f"sequence_{s}.json").exists() for s in strats)
  sharding.barrier("piggyjax looked at bank_base")  # before process 0 removes it
  if need_base and sharding.is_writer():
    shutil.rmtree(base_bank, ignore_errors=True)
  if need_base and pretrained:
    # A pretrained base (ImageNet): no task trains the backbone; every strategy learns them all.
    train.pretrained_bank(config, base_bank)
  elif need_base:
    # Task 1 trains the backbone from random init, which is also what scratch does for it:
    # train it once and give every strategy a copy of that bank.
    train.train_task(config, first, "base", workdir / "base" / first,
                     bank_path=base_bank, consts=task_consts(consts, first, config))
  for s in strats:
    results["strategies"][s] = run_strategy(config, s, task_ids, workdir, fig_batches, consts)
  results["elapsed_s"] = round(time.time() - t0, 1)
  results["resumed"] = resumed
  results["machine"] = (f"{platform.machine()} {os.cpu_count()} cores, "
                        f"{jax.device_count()} {jax.devices()[0].platform} device(s)")
  results = report.summarize(results)
  outputs = grids(config, task_ids, strats, workdir, fig_batches)  # all processes: jitted
  if sharding.is_writer():
    report.write_tables(results, workdir)
    report.write_figures(results, workdir, grids=outputs)
    print((workdir / "results.md").read_text())
  for path in held:
    locking.release(path)
  return results


def _write_json(path: Path, obj) -> None:
  diskfull.write_atomic(path, json.dumps(obj, indent=1))  # killed or disk full: the old one
