"""Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017), online (Schwarz et al. 2018).

After each task, a diagonal Fisher of the backbone is estimated from the task's own loss:
the squared gradient of the loss of each of ``config.ewc.batches`` training minibatches
(default 8), averaged over the batches -- the minibatch "empirical Fisher" Avalanche's EWC
computes. BatchNorm runs in inference mode for it. Normalisation (our choice, so that lambda
does not depend on how large a task's loss is: a style loss is ~100x a cross-entropy): each
task's Fisher is divided by its mean over all backbone weights, so it averages 1. Tasks
accumulate: F <- gamma * F + F_task (``config.ewc.gamma``, default 1), anchored at the latest
weights (online EWC keeps one anchor).

Penalty while learning a task: lam / 2 * sum_i F_i (theta_i - theta*_i)^2 over the backbone
(``config.ewc.lam``, default 100 -- see docs/BASELINES.md for how it was chosen; lambdas are
not portable between implementations with other normalisations). The bank stores the
accumulated Fisher (float32, one number per backbone weight) with each EWC task, so the next
task, a restarted run or another process finds it; the sizes count it. The first task of the
bank (trained as the shared base) has no Fisher: the first EWC task estimates it on the base.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from piggyjax import data, tasks
from piggyjax import models
from piggyjax.strategies import shared
from piggyjax.strategies.base import host_copy

KEY = "ewc_fisher"


def fisher(config, task_id: str, variables: dict, model_cfg, batches: int, consts=None) -> dict:
  """Mean over ``batches`` training minibatches of the squared backbone gradient, scaled to
  mean 1 over all backbone weights."""
  task = tasks.get(task_id)
  model = models.build(model_cfg, ((task_id, task.head_channels),))
  consts = task.load(config) if consts is None else consts

  @jax.jit
  def sq_grad(backbone, rest, batch):
    def loss(bb):
      v = {**rest, "params": {**rest["params"], "backbone": bb}}
      return task.loss(consts, model.apply(v, task.model_input(batch), task_id, False), batch)[0]
    return jax.tree.map(jnp.square, jax.grad(loss)(backbone))

  source = data.make_source(task_id, "train", config)
  stream = data.batches(source, batch_size=int(config.batch_size), image_size=config.image_size,
                        train=True, seed=int(config.seed) + 17, shard_index=0, shard_count=1)
  backbone = variables["params"]["backbone"]
  rest = {**variables, "params": {k: v for k, v in variables["params"].items() if k != "backbone"}}
  total, n = None, 0
  for batch in stream:
    if n >= batches:
      break
    batch = {k: v for k, v in batch.items() if k != "id"}
    g = sq_grad(backbone, rest, batch)
    total = g if total is None else jax.tree.map(jnp.add, total, g)
    n += 1
  mean = sum(float(jnp.sum(x)) for x in jax.tree.leaves(total)) / models.parameter_count(total)
  scale = 1.0 / (n * mean) if mean > 0 else 0.0
  return jax.tree.map(lambda x: np.asarray(x * scale, np.float32), total)


class EWC(shared.Shared):

  def _batches(self) -> int:
    return int(self.param("batches", 8))

  def prepare(self, config, task_id, bank, variables):
    prior = [t for t in shared.earlier_tasks(bank, task_id)
             if bank.meta(t)["strategy"] == self.name]
    if prior:
      accumulated = bank.load_payload(prior[-1])[0][KEY]
    else:  # the bank's first task(s), trained before EWC took over: estimate them here
      accumulated = None
      model_cfg = models.config_of(config.model)
      for t in shared.earlier_tasks(bank, task_id):
        v = bank.load(t)
        f = fisher(config, t, v, model_cfg, self._batches())
        accumulated = f if accumulated is None else self._accumulate(accumulated, f)
    return {"lam": np.float32(self.param("lam", 100.0)),
            "anchor": host_copy(variables["params"]["backbone"]), "fisher": accumulated}

  def _accumulate(self, old, new):
    gamma = float(self.param("gamma", 1.0))
    return jax.tree.map(lambda a, b: np.asarray(gamma * a + b, np.float32), old, new)

  def add_loss(self, runner, loss, aux, trainable, variables, extra, batch, step):
    if extra.get("fisher") is None or float(self.param("lam", 100.0)) == 0.0:
      return loss, aux  # lam = 0: fine-tune's very program (a term times 0 fuses differently)
    sq = jax.tree.map(lambda f, w, a: jnp.sum(f * jnp.square(w - a)), extra["fisher"],
                      trainable["backbone"], extra["anchor"])
    penalty = 0.5 * sum(jax.tree.leaves(sq))
    return loss + extra["lam"] * penalty, {**aux, "ewc_penalty": penalty}

  def after_task(self, runner, state, fixed, consts, extra, arrays, mask):
    variables = jax.device_get(runner.variables(fixed["params"], state.trainable,
                                                state.batch_stats))
    f = fisher(runner.config, runner.task_id, variables, runner.model.config, self._batches(),
               consts)
    prior = extra.get("fisher")
    return {**arrays, KEY: f if prior is None else self._accumulate(prior, f)}, mask
