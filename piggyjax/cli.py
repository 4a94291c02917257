"""What ``experiments/main.py`` does per ``--mode``, with every argument checked before work starts."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from absl import logging

from piggyjax import strategies, tasks
from piggyjax.bank import Bank, BankError

MODES = ("train", "eval", "apply", "sequence", "export")


class UsageError(ValueError):
  """A flag is wrong; the message names it and says what to do."""


def check_task(task: str | None, flag: str = "--task") -> str:
  if not task:
    raise UsageError(f"{flag} is required; choose one of {', '.join(tasks.names())}")
  if task not in tasks.names():
    raise UsageError(f"{flag}={task!r} is not a known task; choose one of "
                     f"{', '.join(tasks.names())} (or register your own, see README)")
  return task


def define_tasks(config) -> list[str]:
  """Registers ``config.task_defs`` so ``--task`` may name one; a bad definition (or an unknown
  id in ``config.tasks``) is a UsageError naming the task and the field."""
  from piggyjax.data import factory
  try:
    ids = tasks.from_config(config)
    for task_id in ids:  # a data spec that cannot fit its task: now, not after hours of task 1
      factory.check_spec(config, task_id)
    return ids
  except tasks.TaskDefinitionError as err:
    raise UsageError(str(err)) from None


def check_strategy(strategy: str) -> str:
  if strategy not in strategies.NAMES:
    raise UsageError(f"--strategy={strategy!r} is not known; choose one of "
                     f"{', '.join(strategies.NAMES)}")
  return strategy


def check_workdir(workdir: str | None) -> Path:
  if not workdir:
    raise UsageError("--workdir is required: a directory for checkpoints, banks and metrics")
  path = Path(workdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path):
      pass
  except OSError as err:
    raise UsageError(f"--workdir={workdir} is not writable ({err.strerror}); pass a directory "
                     "you can write to") from None
  return path


def open_bank(base_ckpt: str | None, config, required: bool) -> Bank | None:
  from piggyjax import train
  if not base_ckpt:
    if required:
      raise UsageError("--base_ckpt is required for this mode: pass a bank directory made by "
                       "a training run (<workdir>/bank)")
    return None
  if not Path(base_ckpt).exists():
    raise UsageError(f"--base_ckpt={base_ckpt} does not exist; pass a bank directory made by a "
                     "training run, or leave the flag out to train a backbone on this task")
  try:
    bank = Bank.open(base_ckpt)
    bank.check_arch(train.arch(config))
  except BankError as err:
    raise UsageError(f"--base_ckpt: {err}") from None
  return bank


def read_image(path: str, flag: str = "--input") -> np.ndarray:
  from PIL import Image, UnidentifiedImageError
  if not path:
    raise UsageError(f"{flag} is required: an image file (JPEG or PNG)")
  try:
    with Image.open(path) as im:
      if Image.MAX_IMAGE_PIXELS and im.width * im.height > Image.MAX_IMAGE_PIXELS:
        raise UsageError(f"{flag}={path} is {im.width}x{im.height}, over PIL's "
                         f"Image.MAX_IMAGE_PIXELS ({Image.MAX_IMAGE_PIXELS}); pass a smaller image")
      im.load()
      return np.asarray(im.convert("RGB"))
  except FileNotFoundError:
    raise UsageError(f"{flag}={path} does not exist") from None
  except UsageError:
    raise
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
          Image.DecompressionBombError) as err:  # what PIL raises for damaged or hostile files
    raise UsageError(f"{flag}={path} is not a readable image ({err}); pass a JPEG or PNG") from None


# ---- modes -----------------------------------------------------------------------------------

def train(config, task: str, strategy: str, base_ckpt: str | None, workdir: Path) -> dict:
  from piggyjax import train as train_lib
  from piggyjax import validate
  validate.check(config, [strategy])  # before the bank is opened or anything compiles
  from piggyjax import locking
  locking.hold(workdir, "workdir")  # one writer: a second run stops here, naming this one
  bank = open_bank(base_ckpt, config, required=False)
  if bank is not None:
    locking.hold(bank.root, "bank")
  if bank is not None and task in bank.tasks():
    logging.warning("the bank already has %s; it will be replaced", task)
  from piggyjax import models
  pretrained = models.is_pretrained(train_lib.model_config(config))
  run_dir = workdir / (strategy if bank is not None or pretrained else "base") / task
  meta = train_lib.train_task(config, task, strategy, run_dir, bank=bank,
                              bank_path=workdir / "bank")
  where = bank.root if bank is not None else workdir / "bank"
  print(f"{task} ({meta['strategy']}) stored in {where}: {_fmt(meta['metrics'])}")
  return meta


def evaluate(config, task: str, base_ckpt: str) -> dict:
  from piggyjax import train as train_lib
  bank = open_bank(base_ckpt, config, required=True)
  if task not in bank.tasks():
    raise UsageError(f"--task={task} is not in the bank at {bank.root}; it has {bank.tasks()}")
  t = tasks.get(task)
  ev = train_lib.evaluator(task, train_lib.model_config(config))
  metrics = ev.evaluate(bank.load(task), t.load(config), config)
  print(f"{task}: {_fmt(metrics)}")
  return metrics


def apply(config, task: str, base_ckpt: str, inputs: list[str], output: str) -> list[Path]:
  """Run a stored task on image files; one input → ``output`` is a file, several → a folder."""
  from piggyjax import train as train_lib
  from PIL import Image
  bank = open_bank(base_ckpt, config, required=True)
  if task not in bank.tasks():
    raise UsageError(f"--task={task} is not in the bank at {bank.root}; it has {bank.tasks()}")
  images = [read_image(p) for p in inputs]
  if not output:
    raise UsageError("--output is required: where to write the result (a .png file)")
  cfg = train_lib.model_config(config)
  ev = train_lib.evaluator(task, cfg)
  variables = ev.put(bank.load(task))
  t = tasks.get(task)
  outs = []
  for src, image in zip(inputs, images):
    x = _fit(image, 2 ** cfg.depth)
    y = np.asarray(ev.predict(variables, {"image": x[None]}))[0]
    if t.kind == "classification":  # the top 5, named as the bank recorded them
      names = tuple(bank.meta(task).get("class_names") or ())
      top = [f"{name} {100 * p:.1f}%" for name, p in t.top(y, 5, names)]
      print(f"{src}: {', '.join(top)}")
      pic = Image.fromarray(t.to_image(y, x, names)).resize(image.shape[1::-1], Image.BILINEAR)
    else:
      pic = Image.fromarray(t.to_image(y, x)).resize(image.shape[1::-1], Image.BILINEAR)
    dest = Path(output) if len(inputs) == 1 else Path(output) / (Path(src).stem + ".png")
    dest.parent.mkdir(parents=True, exist_ok=True)
    pic.save(dest)
    outs.append(dest)
    print(f"{src} -> {dest}")
  return outs


def export(config, task: str | None, base_ckpt: str, output: str | None) -> dict:
  """Write one task (or ``all``) of a bank as a jax.export function piggyjax need not read."""
  from piggyjax import export as export_lib
  if not task:
    raise UsageError("--task is required: a task of the bank, or all")
  bank = open_bank(base_ckpt, config, required=True)
  if not output:
    raise UsageError("--output is required: a new directory for the export")
  try:
    manifest = export_lib.export(config, bank, task, output)
  except (export_lib.ExportError, BankError) as err:
    raise UsageError(str(err)) from None
  size, bank_size = export_lib.size(output), bank.sizes()["total"]
  print(f"exported {', '.join(t['id'] for t in manifest['tasks'])} to {output}: {size} bytes "
        f"(the bank: {bank_size} bytes)")
  return manifest


def _fit(image: np.ndarray, multiple: int, max_side: int = 1024) -> np.ndarray:
  """Resize so both sides are multiples of the U-Net's down-sampling factor."""
  from PIL import Image
  h, w = image.shape[:2]
  scale = min(1.0, max_side / max(h, w))
  nh = max(multiple, round(h * scale / multiple) * multiple)
  nw = max(multiple, round(w * scale / multiple) * multiple)
  return np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))


def _fmt(metrics: dict) -> str:
  return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())


class _QuietLibraries:
  """Drop INFO lines from Orbax, grain and TFDS: they bury our progress and results."""
  NOISY = ("orbax", "grain", "tensorflow_datasets", "etils", "xla_bridge")

  def filter(self, record) -> bool:
    return record.levelno >= 30 or not any(n in record.pathname for n in self.NOISY)


def configure_logging() -> None:
  import logging as pylogging
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TFDS may pull in TensorFlow
  for handler in pylogging.getLogger().handlers + pylogging.getLogger("absl").handlers:
    handler.addFilter(_QuietLibraries())
  pylogging.getLogger("absl").addFilter(_QuietLibraries())
