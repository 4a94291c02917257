"""What the shared-network baselines (LwF, EWC, replay) have in common: they continue from the
latest backbone like fine-tune, keep every earlier task's head as that task stored it, and run
the backbone and the old heads outside the U-Net module (to distil, penalise or replay).

Old heads stay frozen: Li & Hoiem also tune them while learning a new task; here only the
backbone and the new head learn, so a stored task never changes except through the backbone.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

from piggyjax import models, tasks
from piggyjax.models import unet
from piggyjax.strategies.finetune import Finetune


def earlier_tasks(bank, task_id: str) -> list[str]:
  """The bank's tasks before ``task_id`` (all of them when it is new)."""
  names = bank.tasks()
  return names[:names.index(task_id)] if task_id in names else names


def old_heads(bank, task_id: str) -> dict:
  """{task: its stored head params} for every earlier task."""
  out = {}
  for t in earlier_tasks(bank, task_id):
    params = bank.load(t)["params"]
    out[t] = jax.tree.map(np.asarray, params[unet.head_name(t)])
  return out


def backbone_features(runner, variables: dict, x_BHWC, train) -> jax.Array:
  """The backbone's output; BatchNorm statistics updated by this call are dropped."""
  return models.backbone_features(runner.model.config, variables, x_BHWC, train)


def apply_head(head: dict, task_id: str, feats) -> jax.Array:
  """An old task's 1x1 head on backbone features, as ``UNet`` applies it."""
  conv = nn.Conv(tasks.get(task_id).head_channels, (1, 1))
  return conv.apply({"params": head}, feats).astype(np.float32)


def norms_mode(runner, variables: dict):
  return runner.strategy.norms_train if "batch_stats" in variables else False


class Shared(Finetune):
  """Fine-tune plus a strategy-specific term; the bank stores what fine-tune stores."""

  def param(self, key: str, default):
    section = self.config.get(self.name) if self.config is not None else None
    return default if section is None else section.get(key, default)
