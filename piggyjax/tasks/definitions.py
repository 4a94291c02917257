"""Tasks defined in the config: ``config.task_defs.<id>`` -> a registered ``Task``.

    c.task_defs.seg_pets = dict(
        kind="segmentation", classes=3, class_names="pet,background,border",
        ignore="", remap="1:0,2:1,3:2",
        data=dict(layout="tfds", name="oxford_iiit_pet", label_key="segmentation_mask",
                  train_split="train", eval_split="test"))
    c.tasks = "seg_camvid,seg_pets"   # or --config.tasks=seg_camvid,seg_pets

Fields: ``kind`` (a key of ``KINDS``: segmentation | colorization | style | classification, or
one added with ``register_kind``); ``classes`` (segmentation, classification: the head's width); ``class_names`` (comma
separated or a list, optional); ``ignore`` (segmentation: label values to leave out, e.g. "11" or "0,255");
``remap`` ("from:to,..." applied to label values before the class check); ``style_image``
(style: a painting name such as starry_night, or a path); ``data`` (the data spec that
``piggyjax.data.make_source`` reads; see piggyjax/data/factory.py). Every error names the task
and the field, and comes before any training.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from piggyjax.tasks.base import Task
from piggyjax.tasks.classification import Classification
from piggyjax.tasks.colorization import Colorization
from piggyjax.tasks.segmentation import Segmentation
from piggyjax.tasks.style import Style

KINDS: dict[str, type[Task]] = {"segmentation": Segmentation, "colorization": Colorization,
                                "style": Style, "classification": Classification}
FIELDS = ("kind", "classes", "class_names", "ignore", "remap", "style_image", "data", "head_channels")
IGNORE = 255


class TaskDefinitionError(ValueError):
  """A task definition in the config is wrong; the message names the task and the field."""


def register_kind(kind: str, cls: type[Task]) -> None:
  """Let ``config.task_defs.<id>.kind = kind`` build ``cls(name=<id>, ...)``."""
  if not (isinstance(cls, type) and issubclass(cls, Task)):
    raise TypeError(f"register_kind({kind!r}, ...) takes a Task subclass, got {cls!r}")
  KINDS[kind] = cls


def _get(spec: Any, key: str, default: Any = None) -> Any:
  if spec is None:
    return default
  value = spec.get(key, default) if hasattr(spec, "get") else getattr(spec, key, default)
  return default if value is None or value == "" else value


def _fail(task_id: str, field: str, why: str) -> TaskDefinitionError:
  return TaskDefinitionError(f"task {task_id!r}: config.task_defs.{task_id}.{field} {why}")


def int_list(task_id: str, field: str, value: Any) -> tuple[int, ...]:
  """'11' / 11 / '0,255' / [0, 255] -> (ints)."""
  if value is None or value == "":
    return ()
  items = value.split(",") if isinstance(value, str) else (value if hasattr(value, "__iter__") else [value])
  try:
    return tuple(int(str(v).strip()) for v in items if str(v).strip())
  except ValueError:
    raise _fail(task_id, field, f"must be integers separated by commas, got {value!r}") from None


def name_list(value: Any) -> tuple[str, ...]:
  if value is None or value == "":
    return ()
  items = value.split(",") if isinstance(value, str) else value
  return tuple(str(v).strip() for v in items)


def remap_of(task_id: str, spec: Any) -> dict[int, int]:
  """``remap`` as {file value: class}; every target must be a class (or 255, ignore)."""
  value = _get(spec, "remap")
  if not value:
    return {}
  if hasattr(value, "items"):
    pairs = [(k, v) for k, v in value.items()]
  else:
    pairs = [p.split(":") for p in str(value).split(",") if p.strip()]
  try:
    remap = {int(str(k).strip()): int(str(v).strip()) for k, v in pairs}
  except (ValueError, TypeError):
    raise _fail(task_id, "remap", f"must look like '1:0,2:1' (file value:class), got {value!r}") from None
  classes = _get(spec, "classes")
  for k, v in remap.items():
    if v != IGNORE and classes is not None and not 0 <= v < int(classes):
      raise _fail(task_id, "remap", f"maps {k} to {v}, outside the classes 0..{int(classes) - 1} "
                                    f"(classes={int(classes)}); map to {IGNORE} to ignore it")
  return remap


def build(task_id: str, spec: Any) -> Task:
  """One definition -> a Task (not registered); errors name the task and the field."""
  if not task_id or not str(task_id).replace("_", "").replace("-", "").isalnum():
    raise TaskDefinitionError(f"task id {task_id!r} must be letters, digits, '_' or '-'")
  keys = set(spec.keys()) if hasattr(spec, "keys") else set()
  unknown = sorted(keys - set(FIELDS))
  if unknown:
    raise _fail(task_id, unknown[0], f"is not a task field; fields: {', '.join(FIELDS)}")
  kind = _get(spec, "kind")
  if kind not in KINDS:
    raise _fail(task_id, "kind", f"is {kind!r}; known kinds: {', '.join(sorted(KINDS))} "
                                 "(add one with piggyjax.tasks.register_kind)")
  cls = KINDS[kind]
  params: dict[str, Any] = {}
  fields = {f.name for f in dataclasses.fields(cls)}
  classes = _get(spec, "classes", _get(spec, "head_channels"))
  if classes is not None:
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
      raise _fail(task_id, "classes", f"must be a positive integer, got {classes!r}")
    params["head_channels"] = classes
  elif kind in ("segmentation", "classification"):
    raise _fail(task_id, "classes", f"is required for a {kind} task (the number of classes)")
  names = name_list(_get(spec, "class_names"))
  if names:
    if "class_names" not in fields:
      raise _fail(task_id, "class_names", f"is not used by kind {kind!r}")
    if classes is not None and len(names) != classes:
      raise _fail(task_id, "class_names", f"has {len(names)} names for classes={classes}")
    params["class_names"] = names
  if classes is not None and classes >= IGNORE and kind == "segmentation":
    raise _fail(task_id, "classes", f"is {classes}; at most {IGNORE - 1} (label value {IGNORE} is ignore)")
  ignore = int_list(task_id, "ignore", _get(spec, "ignore"))
  if classes is not None and kind == "segmentation":
    inside = [v for v in ignore if 0 <= v < classes]
    if inside:
      raise _fail(task_id, "ignore", f"lists {inside}, which are classes (0..{classes - 1}); "
                                     "lower classes or remap those values")
  remap_of(task_id, spec)
  painting = _get(spec, "style_image")
  if painting:
    if kind != "style":
      raise _fail(task_id, "style_image", f"is only for style tasks, this one is {kind!r}")
    p = Path(str(painting))
    if p.suffix or "/" in str(painting):
      params.update(style_name=p.stem, style_path=str(p))
    else:
      params["style_name"] = str(painting)
  try:
    return cls(name=task_id, **params)
  except TypeError as e:
    raise _fail(task_id, "kind", f"{kind!r} cannot be built from these fields ({e})") from None


def define(config: Any, register: Callable[..., Task], registered: Callable[[str], Task | None],
           builtin: set[str]) -> list[str]:
  """Registers every ``config.task_defs`` entry; returns the ids of ``config.tasks`` in order.

  A definition may replace a built-in task (the config is the source of truth for those); one
  that clashes with a task registered in code under the same id is an error.
  """
  defs = _get(config, "task_defs") or {}
  for task_id in list(defs.keys()):
    task = build(task_id, defs[task_id])
    old = registered(task_id)
    if old is not None and old != task and task_id not in builtin and task_id not in _FROM_CONFIG:
      raise TaskDefinitionError(
          f"task {task_id!r} is defined twice: registered in code as {old!r} and in "
          f"config.task_defs.{task_id} as {task!r}; rename one of them")
    register(task, overwrite=True)
    _FROM_CONFIG.add(task_id)
  ids = [t.strip() for t in str(_get(config, "tasks", "")).split(",") if t.strip()]
  return ids


_FROM_CONFIG: set[str] = set()  # ids a config defined: a later config may define them again
