"""One process of tests/test_multihost.py: train a few piggyback steps on an existing bank.

  python tests/multihost_worker.py BANK WORKDIR OUT_JSON

Several processes when PIGGYJAX_MULTIHOST=1 with JAX_COORDINATOR_ADDRESS, PIGGYJAX_NUM_PROCESSES
and PIGGYJAX_PROCESS_ID set (what piggyjax.sharding.maybe_initialize_distributed reads);
without them, the single-process reference.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")

from conftest import make_tiny_config  # noqa: E402
from piggyjax import sharding, train  # noqa: E402
from piggyjax.bank import Bank  # noqa: E402

TASK, STEPS = "seg_voc", 4


def config():
  c = make_tiny_config(steps=STEPS, checkpoint_every=2, batch_size=4, eval_batches=1)
  # Rates big enough that a few steps flip mask bits and move the head visibly.
  c.optim.lr_scores, c.optim.lr_head = 2e-3, 1e-2
  return c


def main(bank: str, workdir: str, out: str) -> None:
  sharding.maybe_initialize_distributed(False)
  meta = train.train_task(config(), TASK, "piggyback", workdir, bank=Bank.open(bank))
  Path(out).write_text(json.dumps({
      "process": jax.process_index(), "processes": jax.process_count(),
      "devices": jax.device_count(), "meta": meta}))


if __name__ == "__main__":
  main(*sys.argv[1:])
