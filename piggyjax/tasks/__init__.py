"""Tasks by id: what the backbone sees, the head's width, the loss, the metrics, the pictures.

    from piggyjax import tasks
    tasks.names()      # ['colorize_coco', 'seg_camvid', 'seg_coco', 'seg_voc', 'style_scream', ...]
    task = tasks.get("seg_voc")

Tasks are usually defined in the config (``config.task_defs``, see definitions.py and the
built-in ones in builtin.py); ``tasks.from_config(config)`` registers them and returns the
sequence. In code, another dataset of an existing kind:

    tasks.register(tasks.Segmentation("seg_ade", head_channels=150))
    tasks.register(tasks.Style("style_wave", style_name="great_wave"))

A new kind: subclass ``Task`` (a frozen dataclass; ``model_input`` defaults to image / 255,
``load`` to ``{}``, ``visualize`` to ``to_image``) and define the rest of docs/CONTRACTS.md:

    import dataclasses, jax, jax.numpy as jnp
    from piggyjax.tasks import base, imaging

    @dataclasses.dataclass(frozen=True)
    class Denoise(tasks.Task):
      kind: str = "denoise"
      head_channels: int = 3
      primary_metric: str = "mse"
      higher_is_better: bool = False

      def model_input(self, batch):  # a fixed noise key keeps evaluation repeatable
        x = jnp.asarray(batch["image"]) / 255.0
        return jnp.clip(x + 0.1 * jax.random.normal(jax.random.key(0), x.shape), 0, 1)

      def _mse(self, outputs_BHWK, batch):
        return jnp.mean((outputs_BHWK - jnp.asarray(batch["image"]) / 255.0) ** 2, axis=(1, 2, 3))

      def loss(self, consts, outputs_BHWK, batch):
        per_row = self._mse(outputs_BHWK, batch)
        mse = imaging.masked_mean(per_row, imaging.valid_rows(batch, per_row.shape[0]))
        return mse, {"mse": mse}

      def metrics_init(self):
        return base.summed_metrics(("mse",))

      def metrics_update(self, consts, state, outputs_BHWK, batch):
        per_row = self._mse(outputs_BHWK, batch)
        return base.add_rows(state, {"mse": per_row}, imaging.valid_rows(batch, per_row.shape[0]))

      def metrics_finalize(self, state):
        return base.finalize_means(jax.device_get(state))

      def to_image(self, outputs_HWK, image_HW3):
        return imaging.to_uint8(outputs_HWK)

    tasks.register(Denoise("denoise_coco"))
    tasks.register_kind("denoise", Denoise)   # config.task_defs.x.kind = "denoise" builds one
"""
from __future__ import annotations

from piggyjax.tasks.base import Task
from piggyjax.tasks import definitions
from piggyjax.tasks.builtin import BUILTIN_DEFS
from piggyjax.tasks.definitions import TaskDefinitionError, register_kind
from piggyjax.tasks.classification import Classification
from piggyjax.tasks.colorization import Colorization
from piggyjax.tasks.segmentation import Segmentation
from piggyjax.tasks.style import Style

__all__ = ["Task", "Segmentation", "Colorization", "Style", "Classification", "names", "get", "register",
           "register_kind", "from_config", "TaskDefinitionError"]

_REGISTRY: dict[str, Task] = {}


def register(task: Task, *, overwrite: bool = False) -> Task:
  """Adds ``task`` under ``task.name``; re-using a name is an error unless ``overwrite``."""
  if not isinstance(task, Task):
    raise TypeError(f"register() takes a piggyjax.tasks.Task, got {type(task).__name__}")
  if task.name in _REGISTRY and not overwrite and _REGISTRY[task.name] != task:
    raise ValueError(f"a task named {task.name!r} is already registered; pick another name "
                     "or pass overwrite=True")
  _REGISTRY[task.name] = task
  return task


def names() -> list[str]:
  return sorted(_REGISTRY)


def get(task_id: str) -> Task:
  try:
    return _REGISTRY[task_id]
  except KeyError:
    raise ValueError(
        f"unknown task {task_id!r}; known tasks: {', '.join(names())}. To add one, build a "
        "piggyjax.tasks.Task (e.g. tasks.Segmentation('my_seg', head_channels=K)) and call "
        "piggyjax.tasks.register(task) before using its id.") from None


def from_config(config) -> list[str]:
  """Registers ``config.task_defs`` (piggyjax/tasks/definitions.py) and returns the ids of
  ``config.tasks`` in order, each known and none twice; errors name the task and the field."""
  ids = definitions.define(config, register, _REGISTRY.get, _BUILTIN)
  for t in ids:
    if t not in _REGISTRY:
      raise TaskDefinitionError(f"config.tasks names {t!r}, which is neither defined in "
                                f"config.task_defs nor registered; known: {', '.join(names())}")
  if len(set(ids)) != len(ids) or not ids:
    raise TaskDefinitionError(f"config.tasks must name distinct tasks, got {ids}")
  return ids


for _id, _spec in BUILTIN_DEFS.items():  # seg_coco, seg_voc, seg_camvid, colorize_coco, style_*
  register(definitions.build(_id, _spec))
_BUILTIN = set(_REGISTRY)  # a config may redefine these; its definitions are the source of truth
