"""PackNet (Mallya & Lazebnik, CVPR 2018; github.com/arunmallya/packnet).

One network whose conv kernels are shared out between tasks. A task trains the weights no
earlier task owns (the free ones; the weights of earlier tasks are used, never changed), then
prunes, per layer, ``frac`` of those free weights with the smallest magnitude to exactly 0,
retrains the rest briefly, and owns them for good. The pruned ones are free for later tasks.
A stored task is evaluated with the weights of itself and every earlier task (later tasks'
weights are 0 for it), so it stays bit-identical however many tasks follow.

Defaults as in arunmallya/packnet: the first network is pruned by 50 % (``packnet.first_prune``),
every later task by 75 % of its free weights (``packnet.prune``); retraining runs half as many
steps as training (their 10 epochs after 20; ``packnet.retrain_steps``, 0 = half).

The first task of a sequence is the bank's shared base (every strategy trains it once), so
PackNet's sequence starts by pruning that dense network by 50 % and retraining it (its head
too) for ``retrain_steps``; its row in the matrix is that pruned network. Biases and norms
(BatchNorm scale, bias and statistics, conv biases) are the base's for every task and never
train, as the original freezes them after the first network.

Per task the bank stores its head, an ownership mask (which kernel weights it owns, coded like
Piggyback's masks: packed bits, zstd or Golomb-Rice gaps, whichever is smallest) and the values
of those weights. The task index per weight is the union of the disjoint masks in bank order.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from piggyjax import masks
from piggyjax.strategies.base import (Strategy, heads_of, host, host_copy, merge, split,
                                      with_base)

VALUES = "packnet_values"


def _is_kernel(path) -> bool:
  return path[0] == "backbone" and path[-1] == "kernel"


def _flat(tree) -> dict:
  return traverse_util.flatten_dict(tree)


def _mine(bank) -> list[str]:
  return [t for t in bank.tasks() if bank.meta(t)["strategy"] == "packnet"]


def _prune(w, free, frac):
  """``w`` with the ``frac`` smallest-magnitude free weights set to 0 (packnet's ``le``)."""
  a = jnp.sort(jnp.where(free, jnp.abs(w), jnp.inf).reshape(-1))
  n = jnp.round(frac * jnp.sum(free)).astype(jnp.int32)
  cutoff = jnp.where(n > 0, a[jnp.maximum(n - 1, 0)], -1.0)
  return jnp.where(free & (jnp.abs(w) <= cutoff), jnp.zeros_like(w), w)


class PackNet(Strategy):
  adopts_first = True  # the bank's first (dense) task is pruned and retrained as PackNet's

  def _param(self, key, default):
    section = self.config.get("packnet") if self.config is not None else None
    return default if section is None else section.get(key, default)

  def start_from(self, bank):
    mine = _mine(bank)
    if mine:
      return bank.load(mine[-1])
    first = [t for t in bank.tasks() if bank.meta(t)["strategy"] == "base"]
    return bank.load(first[0]) if first else bank.base()

  def start_params(self, source, task_id):
    head = {k: v for k, v in source["params"].items() if k == f"head_{task_id}"}
    return {"backbone": source["params"]["backbone"], **head}

  def split_params(self, params, config):
    trainable, frozen = split(params, lambda p: p[0] != "backbone" or _is_kernel(p))
    return frozen, trainable

  def prepare(self, config, task_id, bank, variables):
    mine = [t for t in _mine(bank) if t != task_id]
    kernels = {p[1:]: v for p, v in _flat(variables["params"]).items() if _is_kernel(p)}
    taken = {p: np.zeros(np.shape(v), bool) for p, v in kernels.items()}
    for t in mine:
      for p, m in _flat(bank.load_payload(t)[1]).items():
        taken[p[1:]] |= m
    first = not mine and task_id in bank.tasks() and bank.meta(task_id)["strategy"] == "base"
    frac = float(self._param("first_prune", 0.5) if not mine else self._param("prune", 0.75))
    if not 0.0 <= frac < 1.0:
      raise ValueError(f"config.packnet.{'first_prune' if not mine else 'prune'}={frac}: the "
                       "fraction of a task's weights released for later tasks, in [0, 1)")
    for p, t in taken.items():
      n_free = int(t.size - t.sum())
      if round(n_free * (1 - frac)) < 1:
        raise ValueError(
            f"PackNet: layer {'/'.join(p)} has {n_free} free weights left after {len(mine)} "
            f"tasks, too few for task {task_id!r}; release more per task (raise "
            "config.packnet.prune, now "
            f"{self._param('prune', 0.75)}), learn fewer tasks, or use a wider model.preset")
    steps = int((config.get("steps_for") or {}).get(task_id, config.steps))
    return {"free": traverse_util.unflatten_dict({p: ~t for p, t in taken.items()}),
            "start": host_copy(traverse_util.unflatten_dict(kernels)),
            "prune_at": np.int32(0 if first else steps), "frac": np.float32(frac)}

  def total_steps(self, steps, extra):
    retrain = int(self._param("retrain_steps", 0)) or max(1, steps // 2)
    return int(extra["prune_at"]) + retrain

  def before_step(self, trainable, extra, step):
    def prune(tr):
      bb = jax.tree.map(lambda f, w: _prune(w, f, extra["frac"]), extra["free"],
                        _kernels(tr["backbone"]))
      return merge(tr, {"backbone": bb})
    return jax.lax.cond(step == extra["prune_at"], prune, lambda tr: tr, trainable)

  def mask_updates(self, updates, trainable, extra, step):
    after = step >= extra["prune_at"]
    w = _kernels(trainable["backbone"])
    # Before pruning: the free weights learn. After: the free ones that survived it.
    keep = jax.tree.map(lambda f, x: f & (jnp.logical_not(after) | (x != 0)), extra["free"], w)
    u = jax.tree.map(lambda k, x: jnp.where(k, x, jnp.zeros_like(x)), keep,
                     _kernels(updates["backbone"]))
    return merge(updates, {"backbone": u})

  def payload(self, task, frozen, trainable, batch_stats, config):
    return {"params": heads_of(host(trainable))}, None

  def after_task(self, runner, state, fixed, consts, extra, arrays, mask):
    w = host(_kernels(state.trainable["backbone"]))
    free = _flat(host(extra["free"]))
    start = _flat(host(extra["start"]))
    owned, values = {}, {}
    for p, x in _flat(w).items():
      if not np.array_equal(x[~free[p]], start[p][~free[p]]):
        raise RuntimeError(f"PackNet changed weights of earlier tasks in {'/'.join(p)}; "
                           "their outputs would change (a bug: please report it)")
      owned[("backbone",) + p] = free[p] & (x != 0)
      values[("backbone",) + p] = x[owned[("backbone",) + p]]
    return ({**arrays, VALUES: traverse_util.unflatten_dict(values)},
            traverse_util.unflatten_dict(owned))

  def load_stored(self, bank, task, arrays, mask, meta, latest):
    base = bank.base()
    mine = _mine(bank)
    kernels = {p: np.zeros(np.shape(v), np.asarray(v).dtype)
               for p, v in _flat(base["params"]).items() if _is_kernel(p)}
    for t in mine[:mine.index(task) + 1]:
      a, m = (arrays, mask) if t == task else bank.load_payload(t)[:2]
      vals = _flat(a[VALUES])
      for p, own in _flat(m).items():
        kernels[p][own] = vals[p]
    params = merge({"backbone": base["params"]["backbone"]},
                   traverse_util.unflatten_dict(kernels), arrays.get("params", {}))
    return with_base(base, {k: v for k, v in params.items() if k != "backbone"}, {},
                     {"backbone": params["backbone"]})


def _kernels(backbone: dict) -> dict:
  return traverse_util.unflatten_dict({p: v for p, v in _flat(backbone).items()
                                       if p[-1] == "kernel"})


def ownership(bank) -> dict:
  """{kernel path: uint8 array of the PackNet task index (1-based, bank order) owning each
  weight, 0 = free}: the map the per-task masks code."""
  out = {}
  for i, t in enumerate(_mine(bank), start=1):
    for p, m in _flat(bank.load_payload(t)[1]).items():
      out.setdefault(p, np.zeros(m.shape, np.uint8))[m] = i
  return out
