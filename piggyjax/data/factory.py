"""``make_source(task_id, split, config)``: the task's data spec decides which reader serves it;
``prepare_set`` writes one as a prepared set (experiments/prepare.py).

The spec is ``config.task_defs.<id>.data`` (piggyjax/tasks/definitions.py), else the built-in
task's (piggyjax/tasks/builtin.py); a task registered in code without one reads content images
if it is unlabelled. Its ``layout`` names the reader (piggyjax/data/layouts.py: voc,
coco_panoptic, paired, tfds, folder, content, classes). Under ``data.source=quickstart`` a task whose spec
names a ``quickstart`` stand-in (seg_coco / seg_voc / images) reads that offline source instead;
tasks without one (seg_camvid, your own) read their real layout.

``config.data`` fields (default): ``source`` ('quickstart'; or samples, dirs, tfds),
``data_dir``, ``voc_dir``, ``coco_dir``, ``image_dir``, ``tfds_data_dir`` (None each),
``coco_things_only`` (False), ``coco_train_split``/``coco_eval_split`` ('train2017'/'val2017';
'val2017' for both under 'samples'), ``voc_train_split``/``voc_eval_split`` ('train'/'val'),
``on_label_size_mismatch`` ('skip'; TFDS only), ``quickstart_image_size`` (96),
``quickstart_train_examples`` (512), ``quickstart_eval_examples`` (64), ``seed`` (0),
``strict`` (False: bad records are counted skips).

Checked here, before training, with the task and the field in the message: an unknown layout,
a layout that gives labels to an unlabelled task (or none to a segmentation task), a reader with
more classes than the task's ``classes``, and label values outside the classes in most of the
first ``PROBE`` records (a config error, not one bad record).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from piggyjax.data import layouts, quickstart, records
from piggyjax.data.layouts import coco_root, voc_root  # noqa: F401  (kept for old imports)

SOURCES = ("quickstart", "samples", "tfds", "dirs")
PROBE = 8  # records read at construction to tell too few classes from one bad record
_get = layouts.get


def _fail(task_id: str, field: str, why: str) -> Exception:
  from piggyjax.tasks import TaskDefinitionError
  return TaskDefinitionError(f"task {task_id!r}: config.task_defs.{task_id}.{field} {why}")


def task_definition(config: Any, task_id: str) -> Any:
  """``config.task_defs.<id>``, else the built-in definition, else None."""
  from piggyjax.tasks.builtin import BUILTIN_DEFS
  defs = _get(config, "task_defs")
  if defs is not None and task_id in defs:
    return defs[task_id]
  return BUILTIN_DEFS.get(task_id)


def make_source(task_id: str, split: str, config: Any, prepared: bool = True) -> records.Source:
  """A random-access source for ``task_id`` ('train' or 'eval' split); see the module docstring.

  ``config.data.strict``: a record that would be skipped is an error instead (``BadRecord``),
  at indexing time here or when it is read. ``config.data.prepared_dir``: the set prepared from
  this source is read instead, unless ``prepared`` is False.
  """
  try:
    source = _make(task_id, split, config)
  except (FileNotFoundError, KeyError, ValueError) as e:
    message = str(e.args[0]) if e.args else str(e)
    if isinstance(e, records.BadRecord) or message.startswith(f"task {task_id!r}"):
      raise
    try:
      named = type(e)(f"task {task_id!r} ({split}): {message}")  # which task's data is wrong
    except Exception:  # noqa: BLE001  an error type that wants other arguments: keep it as is
      raise e from None
    raise named from e
  if _get(_get(config, "data"), "strict", False):
    source.strict = True
    if source.skipped:
      raise records.BadRecord(
          f"{type(source).__name__} ({split}): {len(source.skipped)} records cannot be used and "
          f"config.data.strict is set; e.g. {list(source.skipped.items())[:3]}")
  prepared_dir = _get(_get(config, "data"), "prepared_dir")
  if prepared and prepared_dir:  # read the examples prepared from this source (prepare_set)
    from piggyjax.data import prepared as sets
    return sets.open_prepared(sets.set_dir(prepared_dir, task_id, split), source,
                              task_id=task_id, split=split, image_size=config.image_size)
  return source


def prepare_set(task_id: str, split: str, config: Any, prepared_dir: str | Path,
                **options) -> tuple[records.Source, dict]:
  """Write ``task_id``'s raw ``split`` as a prepared set under ``prepared_dir`` at the run's
  crop size (resumable; ``options`` go to ``prepared.prepare``: shard_size, encoding, on_shard).
  Returns the raw source and the set's manifest."""
  from piggyjax.data import prepared as sets
  raw = make_source(task_id, split, config, prepared=False)
  manifest = sets.prepare(raw, sets.set_dir(prepared_dir, task_id, split), task_id=task_id,
                          split=split, image_size=config.image_size, **options)
  return raw, manifest


def check_spec(config: Any, task_id: str) -> tuple[Any, Any, Any]:
  """(task, definition, data spec) once the spec is known to fit the task: a known layout, and
  labels exactly when the task is a segmentation. Cheap (opens no file): ``cli`` runs it for every
  task of the sequence before any work."""
  from piggyjax import tasks
  task = tasks.get(task_id)
  definition = task_definition(config, task_id)
  spec = _get(definition, "data")
  if spec is None:
    if task.kind in ("segmentation", "classification"):
      raise _fail(task_id, "data", f"is missing: say where its images and labels are, e.g. "
                  f"dict(layout='paired', dir='my_data') (layouts: {', '.join(layouts.READERS)})")
    spec = {"layout": "content", "quickstart": "images"}  # an unlabelled task made in code
  layout = _get(spec, "layout")
  if layout not in layouts.READERS:
    raise _fail(task_id, "data.layout", f"is {layout!r}; layouts: {', '.join(layouts.READERS)}")
  if task.kind == "classification":
    if layout not in layouts.CLASS_LABELLED:
      raise _fail(task_id, "data.layout", f"is {layout!r}, which has no image classes; use "
                  f"one of {', '.join(sorted(layouts.CLASS_LABELLED))}")
    return task, definition, spec
  labelled = task.kind == "segmentation"
  if labelled and layout not in layouts.LABELLED | {"tfds"}:
    raise _fail(task_id, "data.layout", f"is {layout!r}, which has no labels for a segmentation "
                f"task; use one of {', '.join(sorted(layouts.LABELLED | {'tfds'}))}")
  if not labelled and layout in layouts.LABELLED | {"classes"}:
    raise _fail(task_id, "data.layout", f"is {layout!r}, which gives labels, but a {task.kind} "
                "task reads images alone: use 'folder' (pointed at the images) or 'tfds'")
  return task, definition, spec


def _make(task_id: str, split: str, config: Any) -> records.Source:
  from piggyjax.tasks import definitions
  if split not in ("train", "eval"):
    raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
  data = _get(config, "data")
  name = _get(data, "source", "quickstart")
  if name not in SOURCES:
    raise ValueError(f"config.data.source must be one of {SOURCES}, got {name!r}")
  task, definition, spec = check_spec(config, task_id)
  layout = _get(spec, "layout")
  stand_in = _get(spec, "quickstart")
  if name == "quickstart" and stand_in:
    length = _get(data, f"quickstart_{split}_examples", 512 if split == "train" else 64)
    return quickstart.Quickstart(stand_in, split, size=_get(data, "quickstart_image_size", 96),
                                 length=length, seed=_get(data, "seed", 0))
  labelled = task.kind == "segmentation"  # per-pixel labels, checked against the classes below
  ctx = layouts.Context(task_id, split, task, definition, spec, data,
                        definitions.int_list(task_id, "ignore", _get(definition, "ignore")),
                        definitions.remap_of(task_id, definition))
  source = layouts.READERS[layout](ctx)
  if labelled:
    _check_classes(task_id, task, source)
  return source


def _check_classes(task_id: str, task: Any, source: records.Source) -> None:
  """A reader with more classes than the head, or labels beyond the classes in most of the
  first records: the config is wrong, say so now rather than skip every record."""
  k = task.head_channels
  if source.num_classes and source.num_classes > k:
    raise _fail(task_id, "classes", f"is {k}, but its data has {source.num_classes} classes "
                                    f"({type(source).__name__}); set classes={source.num_classes}")
  label_map = getattr(source, "labels", None)
  if label_map is None or not hasattr(label_map, "bad_values"):
    return
  probed = min(PROBE, len(source))
  for i in range(probed):
    try:
      source[i]
    except records.SkipRecord:
      pass
  if probed and len(label_map.bad_values) * 2 > probed:
    values = sorted({v for vs in label_map.bad_values.values() for v in vs})
    raise _fail(task_id, "classes", f"is {k}, but {len(label_map.bad_values)} of the first "
                f"{probed} labels hold values {values[:8]} outside 0..{k - 1}: raise classes, or "
                "list those values in ignore or remap")
