"""Bank tasks as ``jax.export`` (StableHLO) functions that run without piggyjax.

One task: ``f(weights, image_BHW3_uint8) -> outputs``, its mask already folded into the weights.
``all``: ``f(weights, task_index, image) -> one output per task`` (zeros except the chosen one),
with the base stored once and each piggyback task as its packed mask bits (unpacked inside the
function) plus its head and norms, so the export is about the bank's size.

    out/
      manifest.json       shapes, dtypes, preprocessing, outputs per task, sha256 of each file
      function.stablehlo.z   zlib of ``Exported.serialize()`` (StableHLO; no pickle)
      weights.bin.z       zlib of raw little-endian arrays, indexed in manifest.json
      reader.py           a copy of export_reader.py: loads and runs the export with jax alone

Batch and spatial sizes are symbolic (``b, M*h, M*w``, M = the model's down-sampling factor).
A TF SavedModel (jax2tf) is not written: TF is not a dependency of piggyjax, and a SavedModel
would hold every task's masked float32 weights, losing the one-bit masks (DESIGN.md).
"""
from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from piggyjax import export_reader, tasks
from piggyjax.bank import Bank

ArtifactError = export_reader.ArtifactError
PLATFORMS = ("cpu", "cuda", "tpu")


class ExportError(ValueError):
  """The bank or a task cannot be exported as asked; the message says what to do."""


def model_fn(config, task_ids: list[str]) -> tuple[Callable, int]:
  """(apply(variables, x_BHW3_float) -> {task: outputs}, size multiple): the one place that
  builds the model, the same network ``--mode=apply`` runs through ``train.evaluator``."""
  from piggyjax import models, train
  cfg = train.model_config(config)
  model = models.build(cfg, tuple((t, tasks.get(t).head_channels) for t in task_ids))
  return (lambda variables, x: model.apply(variables, x, None, False)), models.size_multiple(cfg)


def _flat(tree) -> dict[str, np.ndarray]:
  return {"/".join(p): np.asarray(v) for p, v in traverse_util.flatten_dict(tree).items()}


def _tree(flat: dict) -> dict:
  return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def _is_head(name: str) -> bool:
  return name.startswith("params/head_")


def _input_spec(multiple: int):
  shape = jax.export.symbolic_shape(f"b, {multiple}*h, {multiple}*w, 3")
  return jax.ShapeDtypeStruct(shape, jnp.uint8)


def _abstract(tree):
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), tree)


def single(config, bank: Bank, task: str):
  """(function, weights, size multiple): the task's variables as ``Bank.load`` assembles them."""
  weights = _flat(bank.load(task))
  apply, multiple = model_fn(config, [task])
  t = tasks.get(task)

  def fn(w, image):
    return apply(_tree(w), t.model_input({"image": image}))[task]
  return fn, weights, multiple


def combined(config, bank: Bank, ids: list[str]):
  """(function, weights, size multiple) for every task: per task and leaf, the base's array,
  the base under the task's packed mask, or the task's own array; each choice checked
  bit-exact here."""
  base = _flat(bank.base())
  weights = {f"base/{k}": v for k, v in base.items()}
  recipes, heads = [], {}
  for t in ids:
    own = _flat(bank.load(t))
    _, mask, _ = bank.load_payload(t)
    mask = {f"params/{k}": np.asarray(m) for k, m in _flat(mask or {}).items()}
    recipe = {}
    for name, value in own.items():
      if _is_head(name):
        if name.startswith(f"params/head_{t}/"):
          heads[name] = value
        continue  # a joint task's other heads belong to the other tasks
      if name in base and np.array_equal(value, base[name]):
        recipe[name] = ("base", f"base/{name}")
      elif name in mask and np.array_equal(value, np.where(mask[name], base[name], 0)):
        weights[f"{t}/bits/{name}"] = np.packbits(mask[name].reshape(-1))
        recipe[name] = ("masked", f"base/{name}", f"{t}/bits/{name}")
      else:
        weights[f"{t}/{name}"] = value
        recipe[name] = ("own", f"{t}/{name}")
    recipes.append(recipe)
  if any(r.keys() != recipes[0].keys() for r in recipes):
    raise ExportError("the bank's tasks do not share one network layout; export them one by "
                      "one (--task=<id>)")
  weights.update({f"heads/{k}": v for k, v in heads.items()})
  apply, multiple = model_fn(config, ids)

  def backbone(recipe):
    def build(w):
      out = {}
      for name, (how, *src) in recipe.items():
        if how == "masked":
          shape = base[name].shape
          bits = jnp.unpackbits(w[src[1]], count=int(np.prod(shape))).reshape(shape)
          out[name] = jnp.where(bits.astype(bool), w[src[0]], 0)
        else:
          out[name] = w[src[0]]
      return out
    return build

  def fn(w, task_index, image):
    # The weights are chosen per task; the network runs once, with every head on top of it.
    shared = jax.lax.switch(task_index, [backbone(r) for r in recipes], w)
    x = jax.lax.switch(task_index, [lambda im, t=t: tasks.get(t).model_input({"image": im})
                                    for t in ids], image)
    variables = {**shared, **{k[len("heads/"):]: w[k] for k in w if k.startswith("heads/")}}
    outs = apply(_tree(variables), x)
    return tuple(jnp.where(task_index == i, outs[t], 0) for i, t in enumerate(ids))
  return fn, weights, multiple


def _output_doc(t) -> dict:
  doc = {"id": t.name, "kind": t.kind, "channels": t.head_channels}
  doc["outputs"] = {
      "segmentation": "float32 (B, H, W, K) logits; argmax over K is the class id",
      "classification": "float32 (B, 1, 1, K) logits; softmax over K gives class probabilities",
      "colorization": "float32 (B, H, W, 2): CIE Lab a, b divided by 110; L is the input's",
      "style": "float32 (B, H, W, 3) logits; sigmoid gives RGB in [0, 1]",
  }.get(t.kind, f"float32 (B, H, W, {t.head_channels}): the task's raw model outputs")
  names = getattr(t, "class_names", ())
  if names:
    doc["class_names"] = list(names)
  return doc


def export(config, bank: Bank, task: str, output) -> dict:
  """Write ``task`` (or ``"all"``) of ``bank`` to the directory ``output``; returns the manifest."""
  ids = bank.tasks() if task == "all" else [task]
  if not ids:
    raise ExportError(f"the bank at {bank.root} has no tasks to export")
  if task != "all" and task not in bank.tasks():
    raise ExportError(f"--task={task} is not in the bank at {bank.root}; it has {bank.tasks()} "
                      "(or pass --task=all)")
  fn, weights, multiple = (combined(config, bank, ids) if task == "all"
                           else single(config, bank, task))
  args = (_abstract(weights),) + ((jax.ShapeDtypeStruct((), jnp.int32),) if task == "all"
                                  else ()) + (_input_spec(multiple),)
  exported = jax.export.export(jax.jit(fn), platforms=PLATFORMS)(*args)
  out = Path(output)
  if out.exists() and any(out.iterdir()) and not (out / "manifest.json").is_file():
    raise ExportError(f"--output={out} exists and is not an export; pass a new directory")
  out.mkdir(parents=True, exist_ok=True)
  (out / "function.stablehlo.z").write_bytes(zlib.compress(exported.serialize(), 9))
  index, chunks, offset = {}, [], 0
  for name, value in weights.items():
    raw = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes()
    index[name] = {"dtype": str(value.dtype), "shape": list(value.shape), "offset": offset}
    chunks.append(raw)
    offset += len(raw)
  # zlib: the stdlib decompresses it; it saves what Orbax's and the bank's coders save.
  (out / "weights.bin.z").write_bytes(zlib.compress(b"".join(chunks), 9))
  shutil.copyfile(export_reader.__file__, out / "reader.py")
  manifest = {
      "kind": export_reader.KIND, "format": export_reader.FORMAT,
      "mode": "all" if task == "all" else "single",
      "bank_fingerprint": bank.fingerprint, "arch": bank.arch,
      "function": "function.stablehlo.z", "platforms": list(PLATFORMS),
      "weights": {"file": "weights.bin.z", "arrays": index},
      "call": ("exported.call(weights, image)" if task != "all" else
               "exported.call(weights, np.int32(task_index), image)[task_index]"),
      "input": {"shape": ["b", f"{multiple}*h", f"{multiple}*w", 3], "dtype": "uint8",
                "multiple": multiple,
                "preprocessing": "RGB uint8, batch first; height and width multiples of "
                f"{multiple} (--mode=apply resizes with PIL bilinear to the nearest multiple, "
                "longest side at most 1024). Scaling to [0, 1] (and colorization's gray "
                "conversion) happen inside the function."},
      "tasks": [_output_doc(tasks.get(t)) for t in ids],
  }
  manifest["files"] = {n: export_reader._sha256(out / n)
                       for n in ("function.stablehlo.z", "weights.bin.z", "reader.py")}
  (out / "manifest.json").write_text(json.dumps(manifest, separators=(",", ":")))
  return manifest


def size(directory) -> int:
  return sum(p.stat().st_size for p in Path(directory).iterdir() if p.is_file())
