"""Joint training, the upper bound (Avalanche calls it ``Cumulative``): at task k the shared
network learns tasks 1..k at once, each through its own head and loss, so nothing is
forgotten except what sharing one backbone costs. Its last row is the all-tasks-at-once
network; earlier rows are the same on the tasks seen so far.

Every step takes the new task's batch plus ``batch_size`` examples of each earlier task,
cycling through that task's training examples as drawn once (one augmentation each, at most
``config.joint.max_examples``, 0 = the whole split), and sums the tasks' losses; every head
trains. Nothing extra is stored: the bank keeps the backbone and every head with each task
(a task is evaluated with the latest backbone and the latest copy of its head).
"""
from __future__ import annotations

import numpy as np

from piggyjax import data, tasks
from piggyjax.models import unet
from piggyjax.strategies import replay, shared
from piggyjax.strategies.base import with_base


class Joint(replay.Replay):

  def start_from(self, bank):
    mine = [t for t in bank.tasks() if bank.meta(t)["strategy"] == self.name]
    if not mine:
      first = [t for t in bank.tasks() if bank.meta(t)["strategy"] == "base"]
      return bank.load(first[0]) if first else bank.base()
    a = bank.load_payload(mine[-1])[0]
    rest = {k: v for k, v in a["params"].items() if k != "backbone"}
    return with_base(bank.base(), rest, a.get("batch_stats", {}),
                     {"backbone": a["params"]["backbone"]})

  def start_params(self, source, task_id):
    return dict(source["params"])  # the backbone and every head so far

  def prepare(self, config, task_id, bank, variables):
    cap = int(self.param("max_examples", 0))
    earlier = shared.earlier_tasks(bank, task_id)
    buffers = {}
    for t in earlier:
      n = len(data.make_source(t, "train", config))
      buffers[t] = replay.draw(config, t, min(n, cap) if cap else n)
    return {"buffers": buffers, "consts": {t: tasks.get(t).load(config) for t in earlier}}

  def add_loss(self, runner, loss, aux, trainable, variables, extra, batch, step):
    if not extra.get("buffers"):
      return loss, aux
    heads = {t: trainable[unet.head_name(t)] for t in extra["buffers"]}
    total, parts = replay.replay_loss(runner, variables, heads, extra["buffers"],
                                      extra["consts"], step, int(runner.config.batch_size))
    return loss + total, {**aux, **parts}

  def after_task(self, runner, state, fixed, consts, extra, arrays, mask):
    return arrays, mask
