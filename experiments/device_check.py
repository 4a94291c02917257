"""One short, prepared check for a lent accelerator (issue 14): the benchmark, then a short
training of the paper-size U-Net on the VOC samples, fed three ways (raw files, a prepared set,
a prepared set with the scale/crop/flip on the device), with the training images/s of each.
Everything lands in --out: bench.json and bench.md (the benchmark), device_check.json (the
training rates and the device), one workdir per input form, and prepared_sets/.

  python experiments/device_check.py --data_dir=DIR --out=DIR          # the device check
  python experiments/device_check.py --data_dir=../shared/data --out=/tmp/dc --quick  # CPU, tiny

DIR holds voc_samples/ and coco_samples/ as ../shared/data does. A device machine gets only the
repository: `make device-kit` puts the samples, and the packages its Python image lacks as
wheels, into the git-ignored .device/ to carry along; docs/BENCHMARKS.md has the run command.
Rates come from metrics.jsonl's timestamps (a row every 10 steps), from the first row to the
last, so compilation and the first batches are left out.
"""
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs import experiments.*

from absl import app, flags  # noqa: E402

flags.DEFINE_string("data_dir", None, "Holds voc_samples/ and coco_samples/.", required=True)
flags.DEFINE_string("out", None, "Where everything goes (created).", required=True)
flags.DEFINE_bool("quick", False, "Tiny sizes, a few steps: checks the script itself on a CPU.")
flags.DEFINE_integer("steps", 60, "Training steps per input form (a metrics row every 10).")
flags.DEFINE_integer("batch_size", 32, "Training batch (global).")
flags.DEFINE_list("forms", ["raw", "prepared", "prepared_device_augment"],
                  "Input forms to train.")
flags.DEFINE_bool("bench", True, "Run the benchmark first (train step, inference, input side).")
FLAGS = flags.FLAGS

FORMS = ("raw", "prepared", "prepared_device_augment")


def bench_config(data_dir: str, quick: bool):
  from experiments.configs import benchmark
  c = benchmark.get_config()
  c.bench.update({"sections": "train_step,inference,input_pipeline",
                  "strategies": "finetune,piggyback", "input_sources": "voc,coco",
                  "input_data_dir": data_dir, "input_device_augment": "voc,coco",
                  # every host core reads: the wall images/s is then the feed rate itself,
                  # measured, beside the per-core figure extrapolated to input_cores
                  "input_threads": os.cpu_count() or 2, "input_cores": os.cpu_count() or 16})
  if quick:   # as tests/test_benchmark.py runs it
    c.model.preset, c.image_size, c.batch_size = "tiny", 32, 4
    c.bench.update({"steps": 2, "warmup": 1, "inference_steps": 2, "matmul_size": 128,
                    "input_image_size": 32, "input_batches": 2, "input_encodings": "raw",
                    "input_rounds": 1})
  return c


def train_config(data_dir: str, quick: bool, steps: int, batch_size: int):
  from experiments.configs import samples
  c = samples.get_config()
  c.data.data_dir = data_dir
  c.model.preset, c.image_size, c.batch_size = "paper", 256, batch_size
  if quick:
    c.model.preset, c.image_size, c.batch_size = "tiny", 32, 4
  c.steps = steps
  c.checkpoint_every = steps   # one checkpoint, at the end: the rate is the step's and the input's
  return c


def prepare(config, where: Path) -> None:
  """seg_voc's train and eval splits as prepared sets at the run's crop size (resumable)."""
  from piggyjax.data import prepare_set
  for split in ("train", "eval"):
    prepare_set("seg_voc", split, config, where)


def train_form(config, form: str, out: Path) -> dict:
  from piggyjax import cli, progress
  config = config.copy_and_resolve_references()
  if form != "raw":
    config.data.prepared_dir = str(out / "prepared_sets")
  config.data.device_augment = form == "prepared_device_augment"
  workdir = out / form
  t = time.perf_counter()
  meta = cli.train(config, "seg_voc", "piggyback", None, workdir)  # no bank: trains the base
  return {"wall_s": round(time.perf_counter() - t, 1), "metrics": meta["metrics"],
          **progress.images_per_s(workdir / "base" / "seg_voc" / "metrics.jsonl",
                                  config.batch_size)}


def main(argv):
  del argv
  import jax
  from piggyjax import cli
  from piggyjax.bench import suite
  cli.configure_logging()
  unknown = set(FLAGS.forms) - set(FORMS)
  if unknown:
    raise app.UsageError(f"unknown --forms {sorted(unknown)}; choose from {list(FORMS)}")
  data_dir = Path(FLAGS.data_dir)
  if not (data_dir / "voc_samples").is_dir():
    raise app.UsageError(f"--data_dir={data_dir} has no voc_samples/ (copy ../shared/data's)")
  out = Path(FLAGS.out)
  taken = [f for f in FLAGS.forms if (out / f).exists()]
  if taken:   # a rerun would resume those runs, and their rates would mix two runs' rows
    raise app.UsageError(f"{out} already holds runs {taken}; pass a new --out")
  out.mkdir(parents=True, exist_ok=True)
  dev = jax.devices()[0]
  report = {"device": {"platform": dev.platform, "kind": dev.device_kind,
                       "count": jax.device_count()}, "quick": FLAGS.quick, "training": {}}
  if FLAGS.bench:
    t = time.perf_counter()
    result = suite.run(bench_config(str(data_dir), FLAGS.quick), peer=False, bank=None,
                       workdir=str(out))
    (out / "bench.json").write_text(json.dumps(result, indent=1))
    (out / "bench.md").write_text(suite.markdown(result))
    report["bench_s"] = round(time.perf_counter() - t, 1)
  config = train_config(str(data_dir), FLAGS.quick, FLAGS.steps, FLAGS.batch_size)
  report["training_setting"] = {"preset": config.model.preset, "image_size": config.image_size,
                                "batch_size": config.batch_size, "steps": config.steps,
                                "task": "seg_voc", "data": "VOC samples"}
  if any(form != "raw" for form in FLAGS.forms):
    t = time.perf_counter()
    prepare(config, out / "prepared_sets")
    report["prepare_s"] = round(time.perf_counter() - t, 1)
  for form in FLAGS.forms:
    report["training"][form] = train_form(config, form, out)
    (out / "device_check.json").write_text(json.dumps(report, indent=1))  # kept if a later one dies
    print(f"{form}: {report['training'][form]['images_per_s']:.1f} training images/s")
  print(json.dumps(report, indent=1))


if __name__ == "__main__":
  app.run(main)
