"""Fine-tune: one network; every task continues from the latest fine-tuned backbone (the base
for the first) and stores it with its head. Earlier tasks are evaluated on the latest backbone
with their own heads, which is how fine-tuning forgets."""
from __future__ import annotations

from piggyjax.strategies.base import Strategy


class Finetune(Strategy):
  shares_backbone = True

  def start_from(self, bank):
    last = [t for t in bank.tasks() if bank.meta(t)["strategy"] == self.name]
    return bank.load(last[-1]) if last else bank.base()
