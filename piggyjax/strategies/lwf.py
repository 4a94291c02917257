"""Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017).

One shared network. While learning task k, every earlier task's head is run on task k's
inputs, and its outputs are pulled towards those of a frozen copy of the network as it was
before task k (its outputs are the "recorded responses"):

* segmentation heads: KL(softmax(teacher / T) || softmax(student / T)) per pixel, T = 2 as in
  the paper (and Avalanche's LwF), no T^2 factor, averaged over pixels;
* image outputs (colorization, style): the mean squared difference of the outputs.

Loss = new task's loss + lambda * sum over old tasks (``config.lwf.lam``, default 1, the
paper's lambda_o; ``config.lwf.temperature``, default 2). With lam = 0 every step computes
exactly what fine-tune computes. Deviation: old heads are frozen (see ``shared.py``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from piggyjax import tasks
from piggyjax.strategies import shared
from piggyjax.strategies.base import host_copy


def distill(kind: str, student, teacher, temperature: float):
  if kind == "segmentation":
    p_t = jax.nn.softmax(teacher / temperature, axis=-1)
    log_t = jax.nn.log_softmax(teacher / temperature, axis=-1)
    log_s = jax.nn.log_softmax(student / temperature, axis=-1)
    return jnp.mean(jnp.sum(p_t * (log_t - log_s), axis=-1))
  return jnp.mean(jnp.square(student - teacher))


class LwF(shared.Shared):

  def prepare(self, config, task_id, bank, variables):
    teacher = {"params": {"backbone": variables["params"]["backbone"]}}
    if "batch_stats" in variables:
      teacher["batch_stats"] = variables["batch_stats"]
    return {"lam": np.float32(self.param("lam", 1.0)), "teacher": host_copy(teacher),
            "heads": shared.old_heads(bank, task_id)}

  def add_loss(self, runner, loss, aux, trainable, variables, extra, batch, step):
    if not extra.get("heads") or float(self.param("lam", 1.0)) == 0.0:
      return loss, aux  # lam = 0: fine-tune's very program (a term times 0 fuses differently)
    x = runner.task.model_input(batch)
    t_feats = jax.lax.stop_gradient(
        shared.backbone_features(runner, extra["teacher"], x, False))
    s_feats = shared.backbone_features(runner, variables, x,
                                       shared.norms_mode(runner, variables))
    temperature = float(self.param("temperature", 2.0))
    term = 0.0
    for t, head in extra["heads"].items():
      student = shared.apply_head(head, t, s_feats)
      teacher = shared.apply_head(head, t, t_feats)
      term = term + distill(tasks.get(t).kind, student, teacher, temperature)
    return loss + extra["lam"] * term, {**aux, "lwf_distill": term}
