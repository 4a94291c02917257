"""The interface every strategy implements, and the tree helpers they share.

A task's variables are split once into ``frozen`` (never differentiated, no optimizer state)
and ``trainable``; ``assemble`` joins them back into the params the U-Net applies. Around that
a strategy says where a task starts from (``start_from``), what it adds to the loss
(``extra_loss``, with constants from ``prepare``, run before the task), which updates it
keeps (``mask_updates``), what the bank stores for the task (``payload``) and how a stored
task's network is put back together (``assemble_stored``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

DECODER_PREFIXES = ("up_", "dec_")
NORM_LEAVES = ("scale", "bias")


def is_decoder(path) -> bool:
  return len(path) > 1 and path[0] == "backbone" and str(path[1]).startswith(DECODER_PREFIXES)


def is_norm(path) -> bool:
  return any("Norm" in str(p) for p in path) and path[-1] in NORM_LEAVES


def is_head(path) -> bool:
  return str(path[0]).startswith("head_")


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


def host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def host_copy(tree):
  """Fresh numpy copies: a train step donates its state, so a strategy's constants must not
  share a buffer with the weights the task starts from."""
  return jax.tree.map(lambda x: np.array(x, copy=True), jax.device_get(tree))


def heads_of(params: dict) -> dict:
  return {k: v for k, v in params.items() if k.startswith("head_")}


def with_base(base: dict, params: dict, stats: dict, backbone: dict | None = None) -> dict:
  """{'params', 'batch_stats'?} as jnp arrays, ``backbone`` (default: the base's) in params."""
  if backbone is None:
    backbone = {"backbone": base["params"]["backbone"]}
  out = {"params": merge(backbone, params)}
  base_stats = base.get("batch_stats", {})
  if base_stats or stats:
    out["batch_stats"] = merge(base_stats, stats)
  return jax.tree.map(jnp.asarray, out)


@dataclasses.dataclass(frozen=True)
class Strategy:
  name: str
  # Which BatchNorms run in training mode (batch statistics, running averages updated):
  # True = all, "decoder" = the decoder's only (the frozen encoder keeps its base statistics,
  # so it computes at training time exactly what it computes at evaluation), False = none.
  norms_train: bool | str = True
  # Which batch_stats paths the task owns (the others are restored from the base after a step).
  owns_stats: Callable = lambda path: True
  config: Any = dataclasses.field(default=None, compare=False, hash=False, repr=False)
  # Tasks of a strategy that shares one backbone run on the latest one stored (fine-tune).
  shares_backbone = False

  # -- training ---------------------------------------------------------------------------

  def start_from(self, bank) -> dict | None:
    """Variables whose backbone (and BN stats) a new task starts from; None: random init."""
    return bank.base()

  def start_params(self, source: dict, task_id: str) -> dict:
    """What of ``start_from``'s params a new task takes (its head is fresh by default)."""
    return {"backbone": source["params"]["backbone"]}

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

  # -- around the train step (``extra`` is ``prepare``'s pytree, on the device in the step) --

  def prepare(self, config, task_id: str, bank, variables: dict) -> dict:
    """Before a task: the constants its step needs (a teacher, a Fisher, a buffer), as arrays."""
    return {}

  def total_steps(self, steps: int, extra: dict) -> int:
    return steps

  def before_step(self, trainable: dict, extra: dict, step: jax.Array) -> dict:
    """Traced at the start of every step (PackNet prunes here)."""
    return trainable

  def add_loss(self, runner, loss: jax.Array, aux: dict, trainable: dict, variables: dict,
               extra: dict, batch: dict, step: jax.Array) -> tuple[jax.Array, dict]:
    """The task's loss plus the strategy's terms (a penalty, distillation, replayed batches)."""
    return loss, aux

  def mask_updates(self, updates: dict, trainable: dict, extra: dict, step: jax.Array) -> dict:
    """Which optimizer updates are applied (PackNet: only to the weights a task may change)."""
    return updates

  def after_task(self, runner, state, fixed: dict, consts, extra: dict, arrays: dict,
                 mask: dict | None) -> tuple[dict, dict | None]:
    """After a task: what the bank stores, given ``payload``'s (a Fisher, a buffer, owners)."""
    return arrays, mask

  # -- storing and restoring ----------------------------------------------------------------

  def payload(self, task: str, frozen: dict, trainable: dict, batch_stats: dict,
              config) -> tuple[dict, dict | None]:
    """(arrays to store, boolean masks or None) for one trained task."""
    params = host(merge(frozen, {k: v for k, v in trainable.items() if k != "scores"}))
    return {"params": params, "batch_stats": host(batch_stats)}, None

  def assemble_stored(self, base: dict, arrays: dict, mask: dict | None,
                      latest: dict | None = None) -> dict:
    """A stored task's full variables {'params', 'batch_stats'?} from the base and its payload.

    ``latest``: the payload of the strategy's most recent task, for strategies that keep one
    shared network (fine-tune): a task then runs on that backbone with its own head.
    """
    params, stats = arrays.get("params", {}), arrays.get("batch_stats", {})
    if latest is not None:
      own = heads_of(params)  # a newer copy of its head in ``latest`` wins (joint trains them)
      newer = {k: v for k, v in heads_of(latest["params"]).items() if k in own}
      params = merge({k: v for k, v in latest["params"].items() if k == "backbone"}, own, newer)
      stats = latest.get("batch_stats", {})
    return with_base(base, params, stats)


  def load_stored(self, bank, task: str, arrays: dict, mask: dict | None, meta: dict,
                  latest: dict | None) -> dict:
    """``Bank.load``: the default needs only the task's own payload (and ``latest``)."""
    return self.assemble_stored(bank.base(), arrays, mask, latest)


class Base(Strategy):
  """A bank's first task: the whole network trains; the backbone becomes the bank's base and
  the task stores only its head."""

  def start_from(self, bank):
    return None

  def split_params(self, params, config):
    """An ImageNet encoder stays as loaded (the base's encoder is ImageNet's, bit for bit):
    task 1 trains the decoder and its head, as SegNet's decoder learns on a VGG-16 encoder."""
    from piggyjax.models import unet
    preset = unet.PRESETS.get(config.model.get("preset")) if config is not None else None
    if preset is None or preset.encoder == "unet":  # other backbones: all of it trains
      return {}, params
    trainable, frozen = split(params, lambda p: p[0] != "backbone" or is_decoder(p))
    return frozen, trainable

  def payload(self, task, frozen, trainable, batch_stats, config):
    params = host(merge(frozen, {k: v for k, v in trainable.items() if k != "scores"}))
    return {"params": heads_of(params)}, None
