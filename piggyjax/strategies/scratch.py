"""Scratch: every task trains the whole U-Net from random init and stores all of it (the
paper's per-task upper bound on accuracy, and its upper bound on size)."""
from __future__ import annotations

from piggyjax.strategies.base import Strategy


class Scratch(Strategy):

  def start_from(self, bank):
    return None
