"""Settings checked before the first step: a bad one fails in a second, not an hour in.

``check(config, strategies)`` looks at every field a run depends on and raises one
``ConfigError`` listing each problem on its own line, each naming the config field (as the
``--config.<field>=`` flag that fixes it) and what would work. ``experiments/main.py`` calls it
before any training, and so does ``continual.run`` for callers that skip main.py.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

MASK_NORMS = ("frozen", "per_task")
DTYPES = ("float32", "bfloat16")


class ConfigError(ValueError):
  """One or more config fields are unusable; the message names each and says what to do."""


def _number(x: Any) -> float | None:
  """``x`` as a float if it is a real number (bools are not), else None."""
  if isinstance(x, bool):
    return None
  try:
    return float(x)
  except (TypeError, ValueError):
    return None


def _positive(problems: list[str], field: str, value: Any, integer: bool = False) -> None:
  v = _number(value)
  if v is None or not math.isfinite(v) or v <= 0 or (integer and v != int(v)):
    kind = "a positive integer" if integer else "a positive, finite number"
    problems.append(f"config.{field}={value!r} must be {kind}; set --config.{field}=...")


def _non_negative_int(problems: list[str], field: str, value: Any, means: str) -> None:
  v = _number(value)
  if v is None or v < 0 or v != int(v):
    problems.append(f"config.{field}={value!r} must be an integer >= 0 ({means}); set "
                    f"--config.{field}=...")


def problems(config, strategies: Sequence[str] = (), device_count: int | None = None
             ) -> list[str]:
  """Every problem found, one line each (empty when the settings are usable)."""
  from piggyjax import models
  from piggyjax.models import unet
  out: list[str] = []
  model = config.model
  preset = model.get("preset")
  cfg = None
  if preset not in models.preset_names():
    out.append(f"config.model.preset={preset!r} is not a U-Net preset or a pretrained network; "
               f"choose one of {', '.join(models.preset_names())} (--config.model.preset=...)")
  else:
    cfg = unet.PRESETS.get(preset) or models.ClassifierConfig(preset)
  if model.get("norm", "batch") not in unet.NORMS:
    out.append(f"config.model.norm={model.get('norm')!r} is not known; choose one of "
               f"{', '.join(unet.NORMS)}")
  if model.get("dtype", "float32") not in DTYPES:
    out.append(f"config.model.dtype={model.get('dtype')!r} is not known; choose one of "
               f"{', '.join(DTYPES)}")

  size = _number(config.get("image_size"))
  if size is None or size != int(size) or size <= 0:
    out.append(f"config.image_size={config.get('image_size')!r} must be a positive integer")
  elif cfg is not None and int(size) % 2**cfg.depth:
    f = 2**cfg.depth
    near = max(f, round(size / f) * f)
    out.append(f"config.image_size={int(size)} is not divisible by {f}: the {preset!r} U-Net "
               f"halves the image {cfg.depth} times; set --config.image_size={near} (or another "
               f"multiple of {f})")

  _positive(out, "batch_size", config.get("batch_size"), integer=True)
  batch = _number(config.get("batch_size"))
  if device_count is None:
    import jax
    device_count = jax.device_count()
  if batch and batch > 0 and batch == int(batch) and int(batch) % device_count:
    up = (int(batch) // device_count + 1) * device_count
    out.append(f"config.batch_size={int(batch)} (the global batch) is not divisible by the "
               f"{device_count} devices; set --config.batch_size={up} (or another multiple of "
               f"{device_count})")

  _positive(out, "steps", config.get("steps"), integer=True)
  for task, n in dict(config.get("steps_for") or {}).items():
    _positive(out, f"steps_for.{task}", n, integer=True)
  _positive(out, "checkpoint_every", config.get("checkpoint_every"), integer=True)
  _non_negative_int(out, "eval_every", config.get("eval_every", 0), "0: only at the end")
  _non_negative_int(out, "eval_batches", config.get("eval_batches", 0), "0: the whole split")
  _non_negative_int(out, "stop_after", config.get("stop_after", 0), "0: never")
  _non_negative_int(out, "bn_recalibrate", config.get("bn_recalibrate", 0),
                    "0: keep the running averages")
  for name in ("lr", "lr_head", "lr_scores"):
    if name in config.optim:
      _positive(out, f"optim.{name}", config.optim[name])

  from piggyjax.data import device_augment  # its own check, so the message is written once
  try:
    device_augment.enabled(config)
  except ValueError as e:
    out.append(str(e))

  if "piggyback" in strategies:
    _mask(out, config.mask)
  if isinstance(cfg, models.ClassifierConfig):
    for s in set(strategies) & {"decoder", "joint"}:
      out.append(f"strategy {s!r} needs a U-Net (a decoder, or dense heads trained together); "
                 f"config.model.preset={preset!r} is a pretrained classifier: use classifier, "
                 "individual, finetune, piggyback, packnet, lwf, ewc or replay")
  return out


def _mask(out: list[str], mask) -> None:
  init, t = _number(mask.get("init")), _number(mask.get("threshold"))
  if init is None or not math.isfinite(init) or init <= 0:
    out.append(f"config.mask.init={mask.get('init')!r} must be a positive, finite number (every "
               "score starts there, above config.mask.threshold)")
  elif t is None or not math.isfinite(t) or t < 0 or t >= init:
    why = ("every score starts at config.mask.init, so the mask would start empty"
           if t is not None and t >= init else "the scores' range starts at 0")
    out.append(f"config.mask.threshold={mask.get('threshold')!r} must be >= 0 and below "
               f"config.mask.init={init:g} ({why}); e.g. --config.mask.threshold={init / 2:g}")
  if mask.get("norm", "frozen") not in MASK_NORMS:
    out.append(f"config.mask.norm={mask.get('norm')!r} is not known; choose one of "
               f"{', '.join(MASK_NORMS)}")


def check(config, strategies: Sequence[str] = (), device_count: int | None = None) -> None:
  """Raise ``ConfigError`` naming every bad field; return quietly when all are usable."""
  found = problems(config, strategies, device_count)
  if found:
    raise ConfigError("bad settings, nothing was trained:\n  " + "\n  ".join(found))
