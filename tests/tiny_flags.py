"""Command-line flags that shrink any config to a test size, appended to a documented command
(never edited into it). Only fields the config has are set, so a config that gains or loses
fields (or tasks in steps_for) still gets valid flags. A config on a pretrained backbone
(classify.py's VGG-16) keeps a pretrained one, the smallest (AlexNet), at a size its pools allow:
the tiny U-Net would turn it into another kind of network."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY = {"model.preset": "tiny", "image_size": 32, "figure_size": 0, "batch_size": 2,
        "steps": 2, "checkpoint_every": 2, "eval_batches": 1, "figure_images": 2,
        "style.style_size": 32, "bn_recalibrate": 0, "optim.schedule": "constant",
        "data.quickstart_train_examples": 8, "data.quickstart_eval_examples": 4}
PRETRAINED = {"model.preset": "alexnet", "image_size": 64}


def _has(config, dotted: str) -> bool:
  for part in dotted.split("."):
    if not hasattr(config, "keys") or part not in config:
      return False
    config = config[part]
  return True


def tiny_flags(config_file: str | Path, cwd: Path = ROOT) -> list[str]:
  path = Path(config_file) if Path(config_file).is_absolute() else cwd / config_file
  spec = importlib.util.spec_from_file_location(f"_tiny_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  from piggyjax.models import classifier
  tiny = dict(TINY)
  if _has(c, "model.preset") and c.model.preset in classifier.names():
    tiny.update(PRETRAINED)
  flags = [f"--config.{k}={v}" for k, v in tiny.items() if _has(c, k)]
  flags += [f"--config.steps_for.{task}=2" for task in c.get("steps_for", {})]
  return flags
