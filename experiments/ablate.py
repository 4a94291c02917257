"""Ablations: one trained task-1 bank, task 2 trained again per setting, same data, same steps.

  python experiments/ablate.py --config=experiments/configs/real.py --data_dir=../shared/data \
      --base=runs/abl/bank_base --task=colorize_camvid --out=runs/abl/ablate.jsonl \
      --runs='finetune:strategy=finetune;pb:strategy=piggyback;pb_lr1e-4:strategy=piggyback,optim.lr_scores=1e-4'

Without --base, task 1 (config.tasks' first) is trained once into <out dir>/bank_base.
Each run is ``name:field=value,field=value`` (``strategy=`` picks the strategy; the rest are
config overrides, parsed as Python literals where they parse). One JSON line per run: the
metrics, wall and CPU seconds, mask density and, for colorization, how well each predicted
chroma channel follows the truth (correlation and slope of truth on prediction).
"""
import ast
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

config_flags.DEFINE_config_file("config", None, "ml_collections config file.", lock_config=False)
flags.DEFINE_string("base", None, "A bank holding task 1; trained into --out's folder if absent.")
flags.DEFINE_string("task", None, "The task to ablate (default: config.tasks' second).")
flags.DEFINE_string("runs", "", "name:key=value,...;name:... (see the docstring).")
flags.DEFINE_string("out", "runs/ablate.jsonl", "JSON lines, one per run (appended).")
flags.DEFINE_string("data_dir", None, "Overrides config.data.data_dir.")
flags.DEFINE_bool("table", False, "Only print --out as a Markdown table.")
FLAGS = flags.FLAGS


def parse_runs(spec: str) -> list[tuple[str, dict]]:
  runs = []
  for item in filter(None, (s.strip() for s in spec.split(";"))):
    name, _, rest = item.partition(":")
    fields = {}
    for kv in filter(None, (s.strip() for s in rest.split(","))):
      key, _, value = kv.partition("=")
      try:
        fields[key.strip()] = ast.literal_eval(value.strip())
      except (ValueError, SyntaxError):
        fields[key.strip()] = value.strip()
    runs.append((name.strip(), fields))
  return runs


def apply_overrides(config, fields: dict):
  config = config.copy_and_resolve_references()
  for key, value in fields.items():
    if key == "strategy":
      continue
    *parents, leaf = key.split(".")
    target = config
    for part in parents:
      target = target[part]
    target[leaf] = value
  return config


def chroma_fit(config, task_id: str, variables: dict) -> dict:
  """Per ab channel over the eval split: corr(pred, truth) and the slope of truth on pred."""
  from piggyjax import data, train
  from piggyjax.tasks import colorization
  ev = train.evaluator(task_id, train.model_config(config))
  source = data.make_source(task_id, "eval", config)
  preds, truths = [], []
  for batch in data.batches(source, batch_size=config.batch_size, image_size=config.image_size,
                            train=False, seed=config.seed):
    valid = np.asarray(batch.get("valid", np.ones(len(batch["image"]), bool)), bool)
    y = np.asarray(ev.predict(ev.put(variables), {k: v for k, v in batch.items() if k != "id"}))
    t = np.asarray(colorization.lab_of(batch["image"]))[..., 1:] / colorization.AB_SCALE
    preds.append(y[valid].reshape(-1, 2))
    truths.append(t[valid].reshape(-1, 2))
  p, t = np.concatenate(preds), np.concatenate(truths)
  out = {}
  for i, ch in enumerate("ab"):
    pc, tc = p[:, i] - p[:, i].mean(), t[:, i] - t[:, i].mean()
    out[f"corr_{ch}"] = float((pc * tc).sum() / np.sqrt((pc**2).sum() * (tc**2).sum() + 1e-12))
    out[f"slope_{ch}"] = float((pc * tc).sum() / ((pc**2).sum() + 1e-12))
    out[f"mean_pred_{ch}"] = float(p[:, i].mean() * colorization.AB_SCALE)
    out[f"mean_true_{ch}"] = float(t[:, i].mean() * colorization.AB_SCALE)
  return out


def _head_hook(train):
  """Ablation only: ``head_random=True`` gives the new task the layer's random head init
  instead of its task's zero init (what piggyjax did before docs/ABLATIONS.md)."""
  from piggyjax import tasks
  original = train.initial_variables

  def initial_variables(config, task_id, head_channels, strategy, bank):
    cls = type(tasks.get(task_id))
    if not config.get("head_random"):
      return original(config, task_id, head_channels, strategy, bank)
    saved, cls.zero_head_init = cls.zero_head_init, False
    try:
      return original(config, task_id, head_channels, strategy, bank)
    finally:
      cls.zero_head_init = saved
  train.initial_variables = initial_variables


def table(path: Path) -> str:
  """The JSON lines of ``path`` as a Markdown table (the last row of each name wins)."""
  rows = {}
  for line in path.read_text().splitlines():
    if line.strip():
      r = json.loads(line)
      rows[r["name"]] = r
  out = ["| run | strategy | changed | metrics | density | a corr / b corr | wall s |",
         "|---|---|---|---|---|---|---|"]
  for r in rows.values():
    changed = ", ".join(f"{k}={v}" for k, v in r["fields"].items() if k != "strategy") or "-"
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in r["metrics"].items())
    c = r.get("chroma") or {}
    corr = f"{c['corr_a']:.2f} / {c['corr_b']:.2f}" if c else "-"
    dens = f"{r['density']:.3f}" if r.get("density") else "-"
    out.append(f"| {r['name']} | {r['strategy']} | {changed} | {metrics} | {dens} | {corr} | "
               f"{r['wall_s']} |")
  return "\n".join(out)


def main(argv):
  del argv
  if FLAGS.table:
    print(table(Path(FLAGS.out)))
    return
  from piggyjax import continual, tasks, train
  _head_hook(train)
  from piggyjax.bank import Bank
  config = FLAGS.config
  if FLAGS.data_dir:
    config.data.data_dir = FLAGS.data_dir
  if hasattr(tasks, "from_config"):
    tasks.from_config(config)  # the config's own task definitions
  out = Path(FLAGS.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  task_ids = continual._split(config.tasks)
  task_id = FLAGS.task or task_ids[1]
  base = Path(FLAGS.base) if FLAGS.base else out.parent / "bank_base"
  if not (base / "bank.json").exists():
    t0, c0 = time.time(), time.process_time()
    meta = train.train_task(config, task_ids[0], "base", out.parent / "base" / task_ids[0],
                            bank_path=base)
    print(json.dumps({"name": "base", "task": task_ids[0], "metrics": meta["metrics"],
                      "wall_s": round(time.time() - t0, 1),
                      "cpu_s": round(time.process_time() - c0, 1)}), flush=True)
  consts = {}
  for name, fields in parse_runs(FLAGS.runs):
    cfg = apply_overrides(config, fields)
    strategy = fields.get("strategy", "piggyback")
    work = out.parent / "runs" / name
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work / "bank")
    t0, c0 = time.time(), time.process_time()
    meta = train.train_task(cfg, task_id, strategy, work / "train", bank=Bank.open(work / "bank"),
                            consts=continual.task_consts(consts, task_id, cfg))
    row = {"name": name, "task": task_id, "strategy": strategy, "fields": fields,
           "metrics": meta["metrics"], "wall_s": round(time.time() - t0, 1),
           "cpu_s": round(time.process_time() - c0, 1),
           "density": (meta.get("density") or {}).get("total")}
    if tasks.get(task_id).kind == "colorization":
      row["chroma"] = chroma_fit(cfg, task_id, Bank.open(work / "bank").load(task_id))
    with out.open("a") as f:
      f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    shutil.rmtree(work / "train", ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
