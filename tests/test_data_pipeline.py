"""The grain pipeline: alignment of image and label under augmentation, seeds, shards, padding.

The alignment tests read a real VOC pair from ../shared/data (/work/shared/data) and fail without it.
"""
from pathlib import Path

import numpy as np
import pytest

from piggyjax import data
from piggyjax.data import SkipRecord, Source, transforms, voc

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
VOC = SHARED / "voc_samples" / "VOCdevkit"
needs_shared = pytest.mark.usefixtures("shared_data")


class Counting(Source):
  """Record i is an image filled with i and a label filled with i % 7; some indices are bad."""
  has_labels = True

  def __init__(self, n, bad=(), size=(20, 30)):
    super().__init__()
    self.n, self.bad, self.size = n, set(bad), size

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    if i in self.bad:
      self.skip(str(i), "bad on purpose")
    h, w = self.size
    return {"image": np.full((h, w, 3), i, np.uint8), "label": np.full((h, w), i % 7, np.uint8),
            "id": str(i)}


class Painted(Source):
  """A real VOC mask with the image painted in the mask's colours: alignment is checkable per pixel."""
  has_labels = True

  def __init__(self, split="train"):
    super().__init__()
    self.voc = data.VocSegmentation(VOC, split)

  def __len__(self):
    return len(self.voc)

  def __getitem__(self, i):
    label = self.voc[i]["label"]
    return {"image": voc.voc_colormap()[label], "label": label, "id": str(i)}


def agreement(images, labels):
  """Per sample: of the pixels inside a region (3x3 neighbourhood of one class), the fraction
  whose colour is that class's colour. Bilinear blending only touches region borders."""
  pad = np.pad(labels, ((0, 0), (1, 1), (1, 1)), mode="edge")
  h, w = labels.shape[1:]
  interior = np.all([pad[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] == labels
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
  close = (np.abs(voc.voc_colormap()[labels].astype(int) - images) <= 2).all(-1)
  return (close & interior).sum(axis=(1, 2)) / interior.sum(axis=(1, 2))


@needs_shared
def test_flip_flips_image_and_label_together():
  src = data.VocSegmentation(VOC, "train")
  example = src[src.ids.index("2011_000025")]
  rng = np.random.default_rng(0)
  for _ in range(4):
    h, w = example["image"].shape[:2]
    view = transforms.train_view(h, w, 64, rng)
    a = transforms.apply_view(example, view._replace(flip=False), 64)
    b = transforms.apply_view(example, view._replace(flip=True), 64)
    np.testing.assert_array_equal(b["image"], a["image"][:, ::-1])
    np.testing.assert_array_equal(b["label"], a["label"][:, ::-1])
    assert set(np.unique(a["label"])) <= {0, 6, 7}  # nearest neighbour: no invented classes


@needs_shared
@pytest.mark.parametrize("train", [True, False])
def test_batches_keep_image_and_label_aligned(train):
  it = data.batches(Painted(), batch_size=5, image_size=48, train=train, seed=3, shard_index=0,
                    shard_count=1)
  for _ in range(2 if train else 1):
    batch = next(it)
    assert batch["image"].shape == (5, 48, 48, 3) and batch["label"].dtype == np.int32
    assert agreement(batch["image"], batch["label"]).min() > 0.97
    # and the check is sharp: labels 4 px off their image fail it
    assert agreement(batch["image"], np.roll(batch["label"], (4, 4), axis=(1, 2))).mean() < 0.9


def test_train_batches_deterministic_by_seed():
  def first(seed):
    it = data.batches(Counting(40), batch_size=4, image_size=16, train=True, seed=seed,
                      shard_index=0, shard_count=1)
    return [next(it) for _ in range(3)]
  a, b, c = first(0), first(0), first(1)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
  assert any(not np.array_equal(x["image"], y["image"]) for x, y in zip(a, c))
  assert all(x["valid"].all() for x in a) and a[0]["label"].shape == (4, 16, 16)


def test_train_is_endless_and_reshuffles_each_epoch():
  it = data.batches(Counting(6), batch_size=3, image_size=8, train=True, seed=0, shard_index=0,
                    shard_count=1)
  epochs = [sorted(int(v) for b in (next(it), next(it)) for v in b["image"][:, 0, 0, 0]) for _ in range(3)]
  assert epochs == [list(range(6))] * 3
  finite = list(data.batches(Counting(6), batch_size=3, image_size=8, train=True, seed=0,
                             num_epochs=2, shard_index=0, shard_count=1))
  assert len(finite) == 4


def test_shards_are_disjoint_and_eval_pads_to_equal_batch_counts():
  n, seen, counts = 7, [], []
  for shard in range(2):
    out = list(data.batches(Counting(n), batch_size=2, image_size=8, train=False, seed=0,
                            shard_index=shard, shard_count=2))
    counts.append(len(out))
    for b in out:
      seen += [int(v) for v in b["image"][b["valid"], 0, 0, 0]]
      assert np.all(b["label"][~b["valid"]] == 255) and np.all(b["image"][~b["valid"]] == 0)
  assert counts == [2, 2]  # 4 and 3 records: same number of batches on every process
  assert sorted(seen) == list(range(n))


def test_global_train_batch_is_the_same_for_any_process_count():
  """Step k's global batch: the same examples, augmented alike, for 1, 2 or 4 processes."""
  class Ramp(Counting):  # channels 1 and 2 ramp across the image: crops and flips show
    def __getitem__(self, i):
      ex = super().__getitem__(i)
      h, w = self.size
      ex["image"][..., 1] = np.arange(w, dtype=np.uint8) * 8
      ex["image"][..., 2] = np.arange(h, dtype=np.uint8)[:, None] * 8
      return ex

  def global_batches(count, steps=5):  # 10 records, global batch 4: crosses epoch boundaries
    its = [data.batches(Ramp(10, size=(24, 30)), batch_size=4 // count, image_size=8,
                        train=True, seed=0, shard_index=i, shard_count=count)
           for i in range(count)]
    return [{k: np.concatenate([b[k] for b in parts]) for k in parts[0]}
            for parts in ([next(it) for it in its] for _ in range(steps))]
  one = global_batches(1)
  for count in (2, 4):
    for a, b in zip(one, global_batches(count)):
      for k in a:
        np.testing.assert_array_equal(a[k], b[k])
  two = [data.batches(Counting(10), batch_size=2, image_size=8, train=True, seed=0,
                      shard_index=i, shard_count=2) for i in range(2)]
  first = [sorted(int(v) for v in next(it)["image"][:, 0, 0, 0]) for it in two]
  assert not set(first[0]) & set(first[1])  # the processes read different examples


def test_eval_resizes_shorter_side_and_centre_crops():
  src = Counting(3, size=(20, 40))
  b = next(data.batches(src, batch_size=3, image_size=10, train=False, seed=0, shard_index=0,
                        shard_count=1))
  assert b["image"].shape == (3, 10, 10, 3) and b["valid"].all()
  view = transforms.eval_view(20, 40, 10)
  assert view == transforms.View(10, 0, 5, False)


def test_skipped_records_dropped_in_train_padded_in_eval():
  src = Counting(6, bad={1, 4})
  b = next(data.batches(src, batch_size=4, image_size=8, train=True, seed=0, shard_index=0,
                        shard_count=1))
  assert sorted(int(v) for v in b["image"][:, 0, 0, 0]) == [0, 2, 3, 5]
  ev = list(data.batches(src, batch_size=4, image_size=8, train=False, seed=0, shard_index=0,
                         shard_count=1))
  assert [b["valid"].tolist() for b in ev] == [[True, False, True, True], [False, True, False, False]]
  assert src.skipped == {"1": "bad on purpose", "4": "bad on purpose"}


def test_all_records_bad_is_an_error_not_a_hang():
  it = data.batches(Counting(3, bad={0, 1, 2}), batch_size=2, image_size=8, train=True, seed=0,
                    shard_index=0, shard_count=1)
  with pytest.raises(RuntimeError, match="every record"):
    next(it)


def test_unlabelled_sources_have_no_label_key():
  class Plain(Counting):
    has_labels = False
  b = next(data.batches(Plain(4), batch_size=2, image_size=8, train=False, seed=0, shard_index=0,
                        shard_count=1))
  assert set(b) == {"image", "valid"}
