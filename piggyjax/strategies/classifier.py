"""Classifier-only (Table 2's "Classifier Only" column): the base stays as it is, a task trains
its head alone and stores nothing else. The lower bound that Piggyback's masks must beat."""
from __future__ import annotations

from piggyjax.strategies.base import Strategy, heads_of, host, merge, split, with_base


class ClassifierOnly(Strategy):

  def split_params(self, params, config):
    trainable, frozen = split(params, lambda p: p[0] != "backbone")
    return frozen, trainable

  def payload(self, task, frozen, trainable, batch_stats, config):
    return {"params": heads_of(host(merge(frozen, trainable)))}, None

  def assemble_stored(self, base, arrays, mask, latest=None):
    return with_base(base, arrays.get("params", {}), {})
