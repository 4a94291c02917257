"""What trains, what is stored, and how a task's network is assembled, per strategy: one
module each, on the interface in ``base.py``.

The first task of a bank trains the whole network (strategy ``base``): its backbone becomes
the bank's base and the task stores only its head.

| strategy  | trains                     | stores per task                         |
|-----------|----------------------------|-----------------------------------------|
| base      | everything                 | head (the backbone is the bank's base)   |
| scratch   | everything, from random    | backbone + head                          |
| individual| everything, from the base  | backbone + head                          |
| classifier| head only                  | head                                     |
| finetune  | everything, from the latest| backbone + head (the latest one is used) |
| decoder   | decoder + head             | decoder + head (+ decoder BN stats)      |
| piggyback | mask scores + head         | packed mask + head (+ norms if per_task) |
| packnet   | free kernels + head, pruned| ownership mask + owned values + head     |
| lwf       | like finetune + distillation of old heads | like finetune             |
| ewc       | like finetune + Fisher penalty | like finetune + accumulated Fisher   |
| replay    | like finetune + replayed buffers | like finetune + K examples of the task |
| joint     | backbone + every head, tasks 1..k at once | backbone + every head         |

docs/BASELINES.md says how each baseline follows its paper and where defaults come from.
"""
from __future__ import annotations

from piggyjax.strategies.base import (Strategy, heads_of, is_decoder, is_norm, merge,  # noqa: F401
                                      split)
from piggyjax.strategies.classifier import ClassifierOnly
from piggyjax.strategies.decoder import Decoder, is_decoder_stats
from piggyjax.strategies.ewc import EWC
from piggyjax.strategies.finetune import Finetune
from piggyjax.strategies.individual import Individual
from piggyjax.strategies.joint import Joint
from piggyjax.strategies.lwf import LwF
from piggyjax.strategies.packnet import PackNet
from piggyjax.strategies.piggyback import Piggyback
from piggyjax.strategies.replay import Replay
from piggyjax.strategies.scratch import Scratch
from piggyjax.strategies import base as _base

NAMES = ("scratch", "finetune", "decoder", "piggyback", "packnet", "lwf", "ewc", "replay",
         "joint", "classifier", "individual")
_SIMPLE = {"scratch": Scratch, "finetune": Finetune, "lwf": LwF, "ewc": EWC, "replay": Replay,
           "joint": Joint, "individual": Individual}
# What ``--config.strategies=all`` runs: a U-Net's paper four and baselines; on a pretrained
# classifier, Table 2's columns and the baselines that make sense without a decoder.
ALL_DENSE = NAMES[:9]
ALL_PRETRAINED = ("classifier", "individual", "finetune", "piggyback", "packnet", "lwf", "ewc",
                  "replay")
STORED = ("base", *NAMES)  # strategy names a bank's meta.json may carry

# Old spellings, kept for callers of the single-module version.
_is_decoder, _is_norm, _is_decoder_stats = is_decoder, is_norm, is_decoder_stats


def get(name: str, config=None) -> Strategy:
  """The strategy ``name`` (``base`` for a bank's first task), with its norm policy."""
  per_task = config is not None and config.mask.norm == "per_task"
  if name == "piggyback":
    return Piggyback("piggyback", norms_train=per_task, config=config)
  if name == "decoder":
    return Decoder("decoder", norms_train="decoder", owns_stats=is_decoder_stats, config=config)
  if name == "base":
    return _base.Base(name, config=config)
  if name in _SIMPLE:
    return _SIMPLE[name](name, config=config)
  if name == "classifier":  # the base's norms, in inference mode: nothing but the head changes
    return ClassifierOnly(name, norms_train=False, config=config)
  if name == "packnet":  # BatchNorm stays the base's, in inference mode, as in the original
    return PackNet(name, norms_train=False, config=config)
  raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(NAMES)}")


def payload(strategy: Strategy, task: str, frozen: dict, trainable: dict, batch_stats: dict,
            config) -> tuple[dict, dict | None]:
  """(arrays to store, boolean masks or None) for one trained task."""
  return strategy.payload(task, frozen, trainable, batch_stats, config)


def assemble_stored(strategy_name: str, base: dict, arrays: dict, mask: dict | None,
                    latest: dict | None = None) -> dict:
  """A stored task's full variables {'params', 'batch_stats'?} from the base and its payload."""
  return get(strategy_name).assemble_stored(base, arrays, mask, latest)


def load_stored(bank, task: str) -> dict:
  """``Bank.load``: the task's variables, assembled by the strategy that stored it.

  A task of a strategy that shares one backbone (fine-tune, and the bank's first task) runs on
  the backbone of the latest such task, which is how those strategies forget.
  """
  arrays, mask, meta = bank.load_payload(task)
  strat = get(meta["strategy"])
  latest = None
  if meta["strategy"] == "base" or strat.shares_backbone:
    tuned = [t for t in bank.tasks() if get(bank.meta(t)["strategy"]).shares_backbone]
    if tuned:
      latest = arrays if tuned[-1] == task else bank.load_payload(tuned[-1])[0]
  return strat.load_stored(bank, task, arrays, mask, meta, latest)
