"""One grain pipeline for every source: shard, shuffle, decode, augment, batch.

Train: one stream for all processes (shuffled, reshuffled each epoch) -> decode -> random scale,
crop and flip -> batches of exactly ``batch_size``; records the source skips are dropped. Global
batch k is positions [kB, (k+1)B) of that stream (B = batch_size x shard_count) and process p
reads rows [p*batch_size, (p+1)*batch_size) of it, so the global batch at step k holds the same
examples, with the same augmentation, however many processes share it. Eval: every
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
_SKIPPED: dict = {"skipped": True}  # a training record its source skipped (see batches)


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
          n: int = 0) -> dict[str, Any] | None:
  try:
    return source[index]
  except records.BadRecord:  # strict mode: the run stops here
    raise
  except records.SkipRecord as e:
    reason = str(e)
  except Exception as e:  # noqa: BLE001  an unforeseen bad file costs one record, not the run
    if getattr(source, "strict", False):
      raise
    reason = f"unexpected {type(e).__name__}: {e}"
    note = getattr(source, "note_skip", None)
    if note is not None:
      note(f"#{index}", reason)
    else:
      records.log.warning("%s: skipping record #%d: %s", type(source).__name__, index, reason)
  if failed is not None:
    failed.add(index)
    if len(failed) >= n:  # an endless loop over nothing but bad records would hang
      raise RuntimeError(f"every record of this {type(source).__name__} was skipped, "
                         f"last: {reason}") from None
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


def _rows_of_process(stream: grain.MapDataset, per_process: int, index: int,
                     count: int) -> grain.MapDataset:
  """Process ``index``'s slice of every global batch of ``stream`` (one shared order)."""
  global_batch = per_process * count

  def pick(j: int):
    k, r = divmod(j, per_process)
    return stream[k * global_batch + index * per_process + r]

  return grain.MapDataset.range(len(stream) // global_batch * per_process).map(pick)


def batches(source: Sequence, *, batch_size: int, image_size: int, train: bool, seed: int,
            num_epochs: int | None = None, shard_index: int | None = None,
            shard_count: int | None = None, num_threads: int = 4,
            worker_count: int = 0, device_augment: bool = False
            ) -> Iterator[dict[str, np.ndarray]]:
  """Batches of numpy arrays: ``image`` uint8 BHW3, ``label`` int32 BHW (255 = ignore), ``valid`` bool B.

  ``batch_size`` is per process; the global batch is ``batch_size * shard_count``. Train is
  endless when ``num_epochs`` is None; eval is one pass. ``worker_count`` > 0 (train only):
  records are read and augmented in that many grain worker processes (each with
  ``num_threads`` threads; the source is pickled to them), giving the same batches as threads.
  ``device_augment`` (train only): rows are fixed-size canvases for ``device_augment.augment``,
  which draws and makes the views on the accelerator (piggyjax/data/device_augment.py).
  """
  shard_index, shard_count = _shard(shard_index, shard_count)
  labels = _has_labels(source)
  # A class per image (classification) is not drawn on the pixel grid: the image may be decoded
  # smaller and cropped alone, like an unlabelled one.
  pixel_labels = labels and getattr(source, "label_kind", "pixel") != "class"
  size, n = int(image_size), len(source)
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(2 * batch_size, 8))

  if device_augment and labels and not pixel_labels:
    raise ValueError("config.data.device_augment crops per-pixel labels with the image; a "
                     "classification task's views are made on the host (set it to False)")
  if device_augment and not train:
    raise ValueError("device_augment is for training batches; evaluation views are centre "
                     "crops made on the host (call batches(..., train=False) without it)")
  if device_augment:
    from piggyjax.data import device_augment as device
  if train:
    if n == 0:
      raise ValueError("the source is empty")
    failed: set[int] = set()
    draft_train = None if pixel_labels else transforms.largest_view(size)

    def augment(index: int, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
      with records.decode_at_least(draft_train):  # an unlabelled JPEG may decode smaller
        example = _read(source, index, failed, n)
      if example is None:
        return _SKIPPED  # dropped below, after the workers' streams are merged back in order
      if device_augment:  # the square to a canvas; the view is drawn on the device
        return device.host_row(example, size, rng, labels)
      h, w = transforms.frame_hw(example)
      return _row(transforms.apply_view(example, transforms.train_view(h, w, size, rng), size),
                  labels, True)

    ds = grain.MapDataset.range(n).shuffle(seed=seed).repeat(num_epochs)
    ds = ds.random_map(augment, seed=seed + 1)  # the rng follows the stream position
    if shard_count > 1:
      ds = _rows_of_process(ds, batch_size, shard_index, shard_count)
    rows = ds.to_iter_dataset(options)
    if worker_count > 0:
      from absl import flags
      if not flags.FLAGS.is_parsed():  # grain reads its absl flags; outside an absl app: defaults
        flags.FLAGS.mark_as_parsed()
      # Worker w reads positions w, w+k, ... of this stream and grain interleaves them back
      # round-robin, so the order is the stream's; a skipped record is a marker until here
      # (a dropped one would shift that worker's turn), so batches match the threads' exactly.
      rows = rows.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(worker_count)))
    rows = rows.filter(lambda row: "image" in row)
    return iter(rows.batch(batch_size, drop_remainder=True,
                           batch_fn=device.stack if device_augment else _stack))

  per_shard = math.ceil(n / shard_count)
  num_batches = math.ceil(per_shard / batch_size)
  pad = {"image": np.zeros((size, size, 3), np.uint8),
         "label": np.full((size, size), VOID, np.uint8) if pixel_labels else np.int32(-1)}

  def view(k: int) -> dict[str, np.ndarray]:
    index = shard_index + k * shard_count
    with records.decode_at_least(None if pixel_labels else size):
      example = _read(source, index) if k < per_shard and index < n else None
    if example is None:
      return _row(pad, labels, False)
    h, w = transforms.frame_hw(example)
    return _row(transforms.apply_view(example, transforms.eval_view(h, w, size), size), labels, True)

  ds = grain.MapDataset.range(num_batches * batch_size).map(view)
  return iter(ds.to_iter_dataset(options).batch(batch_size, batch_fn=_stack))
