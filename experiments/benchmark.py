"""Performance figures as JSON (and a Markdown summary): train step per strategy, the PyTorch
peer (--peer, needs the `peer` extra), inference, task switch, mask storage, peak memory.

  python experiments/benchmark.py --config=experiments/configs/benchmark.py --json=bench.json \
      --md=bench.md --peer
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs import experiments.*

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

DEFAULT_CONFIG = str(Path(__file__).parent / "configs" / "benchmark.py")
config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "ml_collections config file.",
                                lock_config=False)
flags.DEFINE_string("json", None, "Where to write the figures (JSON).", required=True)
flags.DEFINE_string("md", None, "Where to write a Markdown summary.")
flags.DEFINE_bool("peer", False, "Also time the PyTorch peer (pip install -e .[peer]).")
flags.DEFINE_string("bank", None, "Report mask storage of this bank's piggyback tasks instead "
                    "of training a quickstart-like one.")
flags.DEFINE_string("workdir", None, "Parent of the temporary directory (default: system tmp).")
flags.DEFINE_bool("keep_freed_memory", True, "Tune glibc malloc so XLA's per-step temporaries "
                  "stop page-faulting (piggyjax.bench.hostmem); applies to the peer too.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from piggyjax.bench import hostmem
  if FLAGS.keep_freed_memory:   # before JAX starts its CPU client
    hostmem.keep_freed_memory()
  from piggyjax import cli
  from piggyjax.bench import suite
  cli.configure_logging()
  result = suite.run(FLAGS.config, peer=FLAGS.peer, bank=FLAGS.bank, workdir=FLAGS.workdir)
  Path(FLAGS.json).parent.mkdir(parents=True, exist_ok=True)
  Path(FLAGS.json).write_text(json.dumps(result, indent=1))
  if FLAGS.md:
    Path(FLAGS.md).write_text(suite.markdown(result))
  print(suite.markdown(result))


if __name__ == "__main__":
  app.run(main)
