"""Experience replay with per-task heads (a rehearsal baseline; Chaudhry et al. 2019's ER).

After each task, ``config.replay.per_task`` (K, default 16) of its training examples (one
augmented draw, fixed by the seed) go into a buffer that the bank stores with the task (as
raw arrays in arrays.bin, so the sizes count them, and a killed run finds them again). While
learning a later task, every step also takes ``config.replay.batch_size`` (default 4)
examples of each earlier task's buffer, cycling through it, runs them through the shared
backbone and that task's head, and adds ``config.replay.weight`` (default 1) times that
task's own loss. The bank's first task (trained as the shared base) gets its buffer from the
first replay task, which stores it. Old heads stay frozen (see ``shared.py``); BatchNorm
statistics of the replayed batches are not kept (the new task's batches set them).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from piggyjax import data, tasks
from piggyjax.strategies import shared

KEY = "replay"


def draw(config, task_id: str, k: int) -> dict:
  """The first ``k`` training examples of a task as one batch (at most k rows)."""
  source = data.make_source(task_id, "train", config)
  batch = next(iter(data.batches(source, batch_size=k, image_size=config.image_size, train=True,
                                 seed=int(config.seed) + 29, shard_index=0, shard_count=1)))
  return {key: np.asarray(v)[:k] for key, v in batch.items() if key != "id"}


def take(buffer: dict, step, b: int) -> dict:
  """``b`` rows of a buffer, the ``step``-th window of a cycle through it."""
  n = jax.tree.leaves(buffer)[0].shape[0]
  idx = (step * b + jnp.arange(b)) % n
  return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), buffer)


def replay_loss(runner, variables: dict, heads: dict, buffers: dict, consts: dict, step,
                b: int):
  mode = shared.norms_mode(runner, variables)
  total, parts = 0.0, {}
  for t, head in heads.items():
    task = tasks.get(t)
    rb = take(buffers[t], step, b)
    feats = shared.backbone_features(runner, variables, task.model_input(rb), mode)
    loss, _ = task.loss(consts[t], shared.apply_head(head, t, feats), rb)
    total, parts[f"replay_{t}"] = total + loss, loss
  return total, parts


class Replay(shared.Shared):

  def per_task(self) -> int:
    k = int(self.param("per_task", 16))
    if k < 1:
      raise ValueError(f"config.{self.name}.per_task={k}: keep at least 1 example per task")
    return k

  def stored_buffers(self, bank) -> dict:
    out = {}
    for t in bank.tasks():
      if bank.meta(t)["strategy"] == self.name:
        out.update(bank.load_payload(t)[0].get(KEY, {}))
    return out

  def prepare(self, config, task_id, bank, variables):
    earlier = shared.earlier_tasks(bank, task_id)
    stored = self.stored_buffers(bank)
    fresh = {t: draw(config, t, self.per_task()) for t in earlier if t not in stored}
    return {"weight": np.float32(self.param("weight", 1.0)),
            "buffers": {t: stored.get(t, fresh.get(t)) for t in earlier}, "fresh": fresh,
            "heads": shared.old_heads(bank, task_id),
            "consts": {t: tasks.get(t).load(config) for t in earlier}}

  def add_loss(self, runner, loss, aux, trainable, variables, extra, batch, step):
    if not extra.get("heads"):
      return loss, aux
    b = int(self.param("batch_size", 4))
    total, parts = replay_loss(runner, variables, extra["heads"], extra["buffers"],
                               extra["consts"], step, b)
    return loss + extra["weight"] * total, {**aux, **parts}

  def after_task(self, runner, state, fixed, consts, extra, arrays, mask):
    own = draw(runner.config, runner.task_id, self.per_task())
    buffers = {**jax.tree.map(np.asarray, jax.device_get(extra.get("fresh", {}))),
               runner.task_id: own}
    return {**arrays, KEY: buffers}, mask
