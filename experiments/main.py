"""piggyjax entry point: parse flags, check them, call the library.

  python experiments/main.py --config=experiments/configs/quickstart.py --mode=sequence \
      --workdir=runs/quickstart
  python experiments/main.py --task=style_scream --base_ckpt=runs/quickstart/bank_piggyback
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs import experiments.*

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from piggyjax import ckpt_verify, cli, diskfull, locking, validate  # noqa: E402
from piggyjax.data.prepared import PreparedError  # noqa: E402

DEFAULT_CONFIG = str(Path(__file__).parent / "configs" / "quickstart.py")
config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "ml_collections config file.",
                                lock_config=False)
flags.DEFINE_enum("mode", "train", list(cli.MODES), "What to do.")
flags.DEFINE_string("task", None, "Task id (train, eval, apply, export); export also takes all.")
flags.DEFINE_string("strategy", "piggyback", "scratch | finetune | decoder | piggyback | packnet | "
                    "lwf | ewc | replay | joint.")
flags.DEFINE_string("base_ckpt", None, "A bank directory; without it, train mode trains the "
                    "backbone on --task and starts a new bank.")
flags.DEFINE_string("workdir", "runs/default", "Checkpoints, banks, metrics, figures, tables.")
flags.DEFINE_string("data_dir", None, "Overrides config.data.data_dir.")
flags.DEFINE_list("input", [], "apply: image file(s) to run the task on.")
flags.DEFINE_string("output", None, "apply: output PNG (or a folder for several inputs); "
                    "export: a directory.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() (TPU pods, GPU hosts).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  cli.configure_logging()
  from piggyjax import sharding
  sharding.maybe_initialize_distributed(FLAGS.multihost)
  config = FLAGS.config
  if FLAGS.data_dir:
    config.data.data_dir = FLAGS.data_dir
  try:
    cli.define_tasks(config)  # config.task_defs -> registered tasks, checked before any work
    if FLAGS.mode == "sequence":
      from piggyjax import continual
      continual.run(config, cli.check_workdir(FLAGS.workdir))
    elif FLAGS.mode == "train":
      task, strategy = cli.check_task(FLAGS.task), cli.check_strategy(FLAGS.strategy)
      cli.train(config, task, strategy, FLAGS.base_ckpt, cli.check_workdir(FLAGS.workdir))
    elif FLAGS.mode == "eval":
      cli.evaluate(config, cli.check_task(FLAGS.task), FLAGS.base_ckpt)
    elif FLAGS.mode == "apply":
      cli.apply(config, cli.check_task(FLAGS.task), FLAGS.base_ckpt, FLAGS.input, FLAGS.output)
    elif FLAGS.mode == "export":
      task = FLAGS.task if FLAGS.task == "all" else cli.check_task(FLAGS.task)
      cli.export(config, task, FLAGS.base_ckpt, FLAGS.output)
  except (cli.UsageError, validate.ConfigError, locking.LockHeld, diskfull.DiskFull,
          ckpt_verify.CheckpointError,
          PreparedError) as err:  # what the user can fix: the message says how
    logging.error("%s", err)
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
