"""Individual networks (Table 2's "Individual Networks" column): every task fine-tunes its own
copy of the bank's base (the ImageNet network) and stores all of it. Scratch's cost on disk
without its random start: the per-task accuracy a shared-weight method is measured against."""
from __future__ import annotations

from piggyjax.strategies.scratch import Scratch


class Individual(Scratch):

  def start_from(self, bank):
    return bank.base()
