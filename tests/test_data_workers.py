"""Sources pickle (grain's worker processes get copies) and worker processes give the same
training batches as threads (``config.data.worker_count``)."""
import pickle

import ml_collections
import numpy as np
import pytest

from piggyjax.data import SkipRecord, Source, batches, make_source, prepared


class Ramps(Source):
  """Labelled ramps of several sizes, one record broken on purpose (its skip must not shift the
  stream differently in workers than in threads)."""
  has_labels, num_classes = True, 3

  def __init__(self, n=11, bad=(3,)):
    super().__init__()
    self.n, self.bad = n, set(bad)

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    if i in self.bad:
      self.skip(f"r{i}", "broken on purpose")
    h, w = 20 + 3 * i, 30 - i
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([8 * x, 8 * y, np.full_like(x, 20 * i)], -1).astype(np.uint8)
    return {"image": image, "label": ((x // 7 + y // 5 + i) % 3).astype(np.uint8)}


def _config(source, data_dir, **data):
  return ml_collections.ConfigDict({"image_size": 32, "data": {
      "source": source, "data_dir": str(data_dir), "prepared_dir": "",
      "quickstart_train_examples": 6, **data}})


@pytest.mark.parametrize("task, source", [
    ("seg_voc", "samples"), ("seg_coco", "samples"), ("seg_camvid", "dirs"),
    ("colorize_coco", "samples"), ("seg_voc", "quickstart"), ("seg_voc", "prepared")])
def test_each_source_type_pickles_and_reads_the_same(task, source, shared_data, tmp_path):
  if source == "prepared":
    raw = make_source(task, "train", _config("samples", shared_data))
    prepared.prepare(raw, prepared.set_dir(tmp_path, task, "train"), task_id=task, split="train",
                     image_size=32)
    src = make_source(task, "train", _config("samples", shared_data, prepared_dir=str(tmp_path)))
    assert isinstance(src, prepared.PreparedSource)
  else:
    src = make_source(task, "train", _config(source, shared_data))
  src[0]  # a prepared source has now verified and opened shard 0
  src.note_skip("#x", "seen before pickling")
  copy = pickle.loads(pickle.dumps(src))
  assert type(copy) is type(src) and len(copy) == len(src)
  assert copy.skipped == src.skipped and copy.skipped is not src.skipped
  for i in {0, len(src) // 2, len(src) - 1}:
    a, b = src[i], copy[i]
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  copy.note_skip("#y", "the copy's own lock works")   # a fresh lock, its own skip record
  assert "#y" in copy.skipped and "#y" not in src.skipped


def test_worker_processes_give_the_same_batches_as_threads():
  def run(workers):
    it = batches(Ramps(), batch_size=3, image_size=16, train=True, seed=7, num_epochs=2,
                 shard_index=0, shard_count=1, num_threads=1, worker_count=workers)
    out = list(it)
    getattr(it, "close", lambda: None)()  # the worker processes end here, not at exit
    return out

  threads, workers = run(0), run(2)
  assert len(threads) == len(workers) == (2 * 10) // 3   # 2 epochs of 10 usable records
  for a, b in zip(threads, workers):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  with pytest.raises(SkipRecord):
    Ramps()[3]
