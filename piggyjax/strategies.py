"""What trains, what is stored, and how a task's network is assembled, per strategy.

A task's variables are split once into ``frozen`` (never differentiated, no optimizer state)
and ``trainable``; ``assemble`` joins them back into the params the U-Net applies. The first
task of a bank trains the whole network (strategy ``base``): its backbone becomes the bank's
base and the task stores only its head.

| strategy  | trains                     | stores per task                         |
|-----------|----------------------------|-----------------------------------------|
| base      | everything                 | head (the backbone is the bank's base)   |
| scratch   | everything, from random    | backbone + head                          |
| finetune  | everything, from the latest| backbone + head (the latest one is used) |
| decoder   | decoder + head             | decoder + head (+ decoder BN stats)      |
| piggyback | mask scores + head         | packed mask + head (+ norms if per_task) |
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from piggyjax import masks

NAMES = ("scratch", "finetune", "decoder", "piggyback")
DECODER_PREFIXES = ("up_", "dec_")
NORM_LEAVES = ("scale", "bias")


def _is_decoder(path) -> bool:
  return len(path) > 1 and path[0] == "backbone" and str(path[1]).startswith(DECODER_PREFIXES)


def _is_norm(path) -> bool:
  return any("Norm" in str(p) for p in path) and path[-1] in NORM_LEAVES


def split(tree: dict, predicate: Callable) -> tuple[dict, dict]:
  """(leaves where predicate(path) holds, the rest), both as nested dicts."""
  flat = traverse_util.flatten_dict(tree)
  yes = {p: v for p, v in flat.items() if predicate(p)}
  no = {p: v for p, v in flat.items() if not predicate(p)}
  return traverse_util.unflatten_dict(yes), traverse_util.unflatten_dict(no)


def merge(*trees: dict) -> dict:
  flat = {}
  for t in trees:
    flat.update(traverse_util.flatten_dict(t))
  return traverse_util.unflatten_dict(flat)


@dataclasses.dataclass(frozen=True)
class Strategy:
  name: str
  # Which BatchNorms run in training mode (batch statistics, running averages updated):
  # True = all, "decoder" = the decoder's only (the frozen encoder keeps its base statistics,
  # so it computes at training time exactly what it computes at evaluation), False = none.
  norms_train: bool | str = True
  # Which batch_stats paths the task owns (the others are restored from the base after a step).
  owns_stats: Callable = lambda path: True

  def split_params(self, params: dict, config) -> tuple[dict, dict]:
    """(frozen, trainable) from full params (backbone + this task's head)."""
    return {}, params

  def assemble(self, frozen: dict, trainable: dict, threshold: float) -> dict:
    return merge(frozen, trainable)

  def keep_stats(self, base_stats: dict, new_stats: dict) -> dict:
    """batch_stats after a step: the task's own ones updated, the rest as in the base."""
    if not base_stats:
      return new_stats
    own, _ = split(new_stats, self.owns_stats)
    _, rest = split(base_stats, self.owns_stats)
    return merge(rest, own)


class Piggyback(Strategy):

  def split_params(self, params, config):
    per_task = config.mask.norm == "per_task"
    trainable_pred = lambda p: p[0] != "backbone" or (per_task and _is_norm(p))
    trainable, frozen = split(params, trainable_pred)
    scores = masks.init_scores(frozen, spec=config.mask.get("spec") or None,
                               value=config.mask.init)
    return frozen, {"scores": scores, **trainable}

  def assemble(self, frozen, trainable, threshold):
    rest = {k: v for k, v in trainable.items() if k != "scores"}
    return merge(masks.apply_masks(frozen, trainable["scores"], threshold), rest)


class Decoder(Strategy):

  def split_params(self, params, config):
    trainable, frozen = split(params, lambda p: p[0] != "backbone" or _is_decoder(p))
    return frozen, trainable


def get(name: str, config=None) -> Strategy:
  """The strategy ``name`` (``base`` for a bank's first task), with its norm policy."""
  per_task = config is not None and config.mask.norm == "per_task"
  if name == "piggyback":
    return Piggyback("piggyback", norms_train=per_task)
  if name == "decoder":
    return Decoder("decoder", norms_train="decoder", owns_stats=_is_decoder_stats)
  if name in ("scratch", "finetune", "base"):
    return Strategy(name)
  raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(NAMES)}")


def _is_decoder_stats(path) -> bool:
  return _is_decoder(("backbone",) + tuple(path[1:])) if path[0] == "backbone" else True


# ---- what a bank stores --------------------------------------------------------------------

def payload(strategy: Strategy, task: str, frozen: dict, trainable: dict, batch_stats: dict,
            config) -> tuple[dict, dict | None]:
  """(arrays to store, boolean masks or None) for one trained task."""
  host = lambda t: jax.tree.map(np.asarray, jax.device_get(t))
  params = host(merge(frozen, {k: v for k, v in trainable.items() if k != "scores"}))
  stats = host(batch_stats)
  head = {k: v for k, v in params.items() if k.startswith("head_")}
  if strategy.name == "base":
    return {"params": head}, None
  if strategy.name in ("scratch", "finetune"):
    return {"params": params, "batch_stats": stats}, None
  if strategy.name == "decoder":
    dec, _ = split(params, lambda p: p[0] != "backbone" or _is_decoder(p))
    dec_stats, _ = split(stats, _is_decoder_stats)
    return {"params": dec, "batch_stats": dec_stats}, None
  # piggyback
  mask = masks.binarize(trainable["scores"], config.mask.threshold)
  arrays = {"params": head}
  if config.mask.norm == "per_task":
    norms, _ = split(params, lambda p: p[0] == "backbone" and _is_norm(p))
    arrays = {"params": merge(head, norms), "batch_stats": stats}
  return arrays, mask


def assemble_stored(strategy_name: str, base: dict, arrays: dict, mask: dict | None,
                    latest: dict | None = None) -> dict:
  """A stored task's full variables {'params', 'batch_stats'?} from the base and its payload.

  ``latest`` is the most recent finetune payload: fine-tuning keeps one network, so the first
  task and every fine-tuned one are evaluated with the latest backbone and their own head.
  """
  params = arrays.get("params", {})
  stats = arrays.get("batch_stats", {})
  if latest is not None:
    head = {k: v for k, v in params.items() if k.startswith("head_")}
    params = merge({k: v for k, v in latest["params"].items() if k == "backbone"}, head)
    stats = latest.get("batch_stats", {})
  if strategy_name == "piggyback":
    backbone = masks.apply_binary_masks({"backbone": base["params"]["backbone"]}, mask)
  else:
    backbone = {"backbone": base["params"]["backbone"]}
  out = {"params": merge(backbone, params)}
  base_stats = base.get("batch_stats", {})
  if base_stats or stats:
    out["batch_stats"] = merge(base_stats, stats)
  return jax.tree.map(jnp.asarray, out)
