"""One grain pipeline for every source: shard, shuffle, decode, augment, batch.

Train: per-process shard -> shuffle (reshuffled each epoch) -> decode -> random scale, crop and
flip -> batches of exactly ``batch_size``; records the source skips are dropped. Eval: every
process yields the same number of batches (a multi-host eval step must not wait on a process that
ran out), each row resized on its shorter side and centre-cropped; padding rows and skipped
records are rows of zeros with ``valid=False``.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import grain
import numpy as np

from piggyjax.data import records, transforms

VOID = 255


def _shard(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
  if shard_index is None or shard_count is None:
    import jax  # only for the defaults, so the data code runs without touching a device
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index {shard_index} must be in [0, {shard_count})")
  return shard_index, shard_count


def _has_labels(source: Sequence) -> bool:
  flag = getattr(source, "has_labels", None)
  if flag is not None:
    return bool(flag)
  for i in range(len(source)):  # a user's source without the attribute: look at a record
    try:
      return "label" in source[i]
    except records.SkipRecord:
      continue
  return False


def _read(source: Sequence, index: int, failed: set[int] | None = None,
          shard_len: int = 0) -> dict[str, Any] | None:
  try:
    return source[index]
  except records.SkipRecord as e:
    if failed is not None:
      failed.add(index)
      if len(failed) >= shard_len:  # an endless loop over nothing but bad records would hang
        raise RuntimeError(f"every record of this shard of {type(source).__name__} was skipped, "
                           f"last: {e}") from None
    return None


def _row(example: dict[str, np.ndarray], labels: bool, valid: bool) -> dict[str, np.ndarray]:
  row = {"image": example["image"], "valid": np.bool_(valid)}
  if labels:
    row["label"] = example["label"]
  return row


def _stack(rows: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  batch = {"image": np.stack([r["image"] for r in rows]).astype(np.uint8),
           "valid": np.array([r["valid"] for r in rows], bool)}
  if "label" in rows[0]:
    batch["label"] = np.stack([r["label"] for r in rows]).astype(np.int32)
  return batch


def batches(source: Sequence, *, batch_size: int, image_size: int, train: bool, seed: int,
            num_epochs: int | None = None, shard_index: int | None = None,
            shard_count: int | None = None, num_threads: int = 4) -> Iterator[dict[str, np.ndarray]]:
  """Batches of numpy arrays: ``image`` uint8 BHW3, ``label`` int32 BHW (255 = ignore), ``valid`` bool B.

  ``batch_size`` is per process. Train is endless when ``num_epochs`` is None; eval is one pass.
  """
  shard_index, shard_count = _shard(shard_index, shard_count)
  labels = _has_labels(source)
  size, n = int(image_size), len(source)
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(2 * batch_size, 8))

  if train:
    ds = grain.MapDataset.range(n)[shard_index::shard_count]
    if len(ds) == 0:
      raise ValueError(f"shard {shard_index}/{shard_count} of a {n}-record source is empty")
    shard_len, failed = len(ds), set()

    def augment(index: int, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
      example = _read(source, index, failed, shard_len)
      if example is None:
        return None  # grain's iterator drops Nones
      h, w = example["image"].shape[:2]
      return _row(transforms.apply_view(example, transforms.train_view(h, w, size, rng), size),
                  labels, True)

    ds = ds.shuffle(seed=seed).repeat(num_epochs).random_map(augment, seed=seed + 1)
    return iter(ds.to_iter_dataset(options).batch(batch_size, drop_remainder=True, batch_fn=_stack))

  per_shard = math.ceil(n / shard_count)
  num_batches = math.ceil(per_shard / batch_size)
  pad = {"image": np.zeros((size, size, 3), np.uint8), "label": np.full((size, size), VOID, np.uint8)}

  def view(k: int) -> dict[str, np.ndarray]:
    index = shard_index + k * shard_count
    example = _read(source, index) if k < per_shard and index < n else None
    if example is None:
      return _row(pad, labels, False)
    h, w = example["image"].shape[:2]
    return _row(transforms.apply_view(example, transforms.eval_view(h, w, size), size), labels, True)

  ds = grain.MapDataset.range(num_batches * batch_size).map(view)
  return iter(ds.to_iter_dataset(options).batch(batch_size, batch_fn=_stack))
