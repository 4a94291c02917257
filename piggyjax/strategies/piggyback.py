"""Piggyback (Mallya et al., ECCV 2018): the base stays frozen; a task learns real-valued
scores per weight, thresholded into a binary mask (straight-through gradient), plus its head.
The bank stores the packed mask and the head (and the norms with ``mask.norm=per_task``)."""
from __future__ import annotations

from piggyjax import masks
from piggyjax.strategies.base import (Strategy, heads_of, host, is_norm, merge, split,
                                      with_base)


class Piggyback(Strategy):

  def split_params(self, params, config):
    per_task = config.mask.norm == "per_task"
    trainable_pred = lambda p: p[0] != "backbone" or (per_task and is_norm(p))
    trainable, frozen = split(params, trainable_pred)
    scores = masks.init_scores(frozen, spec=config.mask.get("spec") or None,
                               value=config.mask.init)
    return frozen, {"scores": scores, **trainable}

  def assemble(self, frozen, trainable, threshold):
    rest = {k: v for k, v in trainable.items() if k != "scores"}
    return merge(masks.apply_masks(frozen, trainable["scores"], threshold), rest)

  def payload(self, task, frozen, trainable, batch_stats, config):
    params = host(merge(frozen, {k: v for k, v in trainable.items() if k != "scores"}))
    mask = masks.binarize(trainable["scores"], config.mask.threshold)
    arrays = {"params": heads_of(params)}
    if config.mask.norm == "per_task":
      norms, _ = split(params, lambda p: p[0] == "backbone" and is_norm(p))
      arrays = {"params": merge(heads_of(params), norms), "batch_stats": host(batch_stats)}
    return arrays, mask

  def assemble_stored(self, base, arrays, mask, latest=None):
    backbone = masks.apply_binary_masks({"backbone": base["params"]["backbone"]}, mask)
    return with_base(base, arrays.get("params", {}), arrays.get("batch_stats", {}), backbone)
