"""Prepared sets (piggyjax/data/prepared.py): read back equal to what was prepared and to the raw
source's crops for the same seed, resumable after a kill, damaged shards named, stale sets
refused. Plus JPEG draft decoding against the full-size path."""

import ml_collections
import numpy as np
import pytest
from PIL import Image

from piggyjax.data import ImageFolder, SkipRecord, Source, batches, make_source, prepared, records
from piggyjax.data import transforms


class Gradients(Source):
  """Smooth labelled images of several sizes (a crop shifted by a pixel shows), one bad record."""
  has_labels, num_classes, class_names = True, 4, ("a", "b", "c", "d")

  def __init__(self, n=7, bad=(4,), shift=0):
    super().__init__()
    self.n, self.bad, self.shift, self.reads = n, set(bad), shift, 0

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    self.reads += 1
    if i in self.bad:
      self.skip(f"r{i}", "broken on purpose")
    h, w = 40 + 6 * i, 56 - 2 * i
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([255 * x / w, 255 * y / h, np.full_like(x, 40 * i + self.shift)], -1)
    return {"image": image.astype(np.uint8), "label": ((x // 20 + y // 24 + i) % 4).astype(np.uint8)}


def _prepare(src, root, size=16, **kw):
  return prepared.prepare(src, root, task_id="seg_voc", split="train", image_size=size,
                          shard_size=3, **kw)


def _open(src, root, size=16):
  return prepared.open_prepared(root, src, task_id="seg_voc", split="train", image_size=size)


def _batch(src, size=16, seed=3):
  return next(batches(src, batch_size=4, image_size=size, train=True, seed=seed,
                      shard_index=0, shard_count=1, num_threads=0))


def test_read_back_equals_prepared_examples_and_raw_crops(tmp_path):
  raw = Gradients()
  m = _prepare(raw, tmp_path / "p")
  assert m["complete"] and [s["records"] for s in m["shards"]] == [3, 3, 1]
  ps = _open(raw, tmp_path / "p")
  assert len(ps) == len(raw) and ps.has_labels and ps.num_classes == 4
  for i in (0, 6):
    got, ex = ps[i], raw[i]
    assert tuple(got["frame_hw"]) == ex["image"].shape[:2]
    # stored: the shorter side at 1.5x the crop, exactly what the preparation computed
    np.testing.assert_array_equal(got["image"], prepared._resize(ex["image"], 24, Image.BILINEAR))
    np.testing.assert_array_equal(got["label"], prepared._resize(ex["label"], 24, Image.NEAREST))
  with pytest.raises(SkipRecord, match="broken on purpose"):
    ps[4]
  # the same seed draws the same crops: smooth images make a shifted crop show
  a, b = _batch(raw), _batch(ps)
  assert a["image"].shape == b["image"].shape == (4, 16, 16, 3)
  assert np.abs(a["image"].astype(int) - b["image"]).mean() < 3
  assert (a["label"] == b["label"]).mean() > 0.9
  assert np.abs(a["image"].astype(int) - _batch(ps, seed=4)["image"]).mean() > 3


def test_killed_preparation_resumes(tmp_path):
  class Killed(Exception):
    pass

  def kill_after_first(done, total):
    if done == 1:
      raise Killed

  with pytest.raises(Killed):
    _prepare(Gradients(), tmp_path / "p", on_shard=kill_after_first)
  with pytest.raises(prepared.PreparedError, match="did not finish"):
    _open(Gradients(), tmp_path / "p")
  again = Gradients()
  m = _prepare(again, tmp_path / "p")
  # only shards 2 and 3 (4 records) were read, plus the fingerprint's 4 probes
  assert again.reads == 4 + 4
  whole = _prepare(Gradients(), tmp_path / "q")
  assert [s["sha256"] for s in m["shards"]] == [s["sha256"] for s in whole["shards"]]


def test_damaged_shard_is_named(tmp_path):
  _prepare(Gradients(), tmp_path / "p")
  shard = tmp_path / "p" / "shard-00001.arrayrecord"
  data = bytearray(shard.read_bytes())
  data[len(data) // 2] ^= 0xFF
  shard.write_bytes(bytes(data))
  ps = _open(Gradients(), tmp_path / "p")
  ps[0]  # another shard is fine
  with pytest.raises(prepared.PreparedError, match="shard-00001.arrayrecord is damaged"):
    ps[3]
  again = Gradients()
  _prepare(again, tmp_path / "p")    # preparing again rewrites the damaged shard and what follows
  assert again.reads == 4 + 4
  assert _open(Gradients(), tmp_path / "p")[3]["image"].shape[-1] == 3


def test_stale_or_mismatched_set_is_refused(tmp_path):
  _prepare(Gradients(), tmp_path / "p")
  with pytest.raises(prepared.PreparedError, match="stale"):
    _open(Gradients(shift=1), tmp_path / "p")           # the source's pixels changed
  with pytest.raises(prepared.PreparedError, match="stale"):
    _open(Gradients(n=8), tmp_path / "p")               # it grew
  with pytest.raises(prepared.PreparedError, match="image_size"):
    _open(Gradients(), tmp_path / "p", size=32)        # another crop size
  with pytest.raises(prepared.PreparedError, match="image_size"):
    _prepare(Gradients(), tmp_path / "p", size=32)     # nor is it overwritten by one
  with pytest.raises(prepared.PreparedError, match="experiments/prepare.py"):
    _open(Gradients(), tmp_path / "nothing")


def test_config_prepared_dir_reads_real_samples(tmp_path, shared_data):
  cfg = ml_collections.ConfigDict({"image_size": 32, "data": {
      "source": "samples", "data_dir": str(shared_data), "prepared_dir": ""}})
  raw = make_source("seg_voc", "train", cfg)
  prepared.prepare(raw, prepared.set_dir(tmp_path, "seg_voc", "train"), task_id="seg_voc",
                   split="train", image_size=32, encoding="jpeg")
  cfg.data.prepared_dir = str(tmp_path)
  ps = make_source("seg_voc", "train", cfg)
  assert isinstance(ps, prepared.PreparedSource)
  a, b = _batch(raw, 32), _batch(ps, 32)
  assert np.abs(a["image"].astype(int) - b["image"]).mean() < 6
  assert (a["label"] == b["label"]).mean() > 0.9
  cfg.image_size = 64
  with pytest.raises(prepared.PreparedError, match="image_size"):
    make_source("seg_voc", "train", cfg)


def test_draft_decoding_close_to_full_size(tmp_path):
  y, x = np.mgrid[0:240, 0:320]
  photo = np.stack([x * 255 / 320, y * 255 / 240, (x + y) % 256], -1).astype(np.uint8)
  Image.fromarray(photo).save(tmp_path / "a.jpg", quality=95)
  src = ImageFolder(tmp_path)
  full = src[0]["image"]
  with records.decode_at_least(48):
    small = src[0]["image"]
  assert small.shape == (60, 80, 3) and full.shape == (240, 320, 3)  # decoded at 1/4
  out = [transforms.apply_view({"image": im}, transforms.eval_view(*im.shape[:2], 32), 32)["image"]
         for im in (full, small)]
  assert out[0].shape == out[1].shape == (32, 32, 3)
  assert np.abs(out[0].astype(int) - out[1]).mean() < 4
  with records.decode_at_least(200):     # 1/2 would go below 200: full size
    assert src[0]["image"].shape == full.shape


def test_eval_batches_match_raw(tmp_path):
  raw = Gradients()
  _prepare(raw, tmp_path / "p")
  ps = _open(raw, tmp_path / "p")
  a, b = [next(batches(s, batch_size=8, image_size=16, train=False, seed=0, shard_index=0,
                       shard_count=1, num_threads=0)) for s in (raw, ps)]
  np.testing.assert_array_equal(a["valid"], b["valid"])      # the skipped record is padding
  assert not a["valid"][4] and a["valid"].sum() == 6
  assert np.abs(a["image"].astype(int) - b["image"]).mean() < 3
  assert (a["label"] == b["label"]).mean() > 0.9


def test_main_reports_a_stale_prepared_set_as_a_usage_error(tmp_path, tiny_config):
  """A stale set reaching experiments/main.py is one line saying what to run, exit 2."""
  import os
  import subprocess
  import sys

  from conftest import ROOT
  old = tiny_config(**{"data.quickstart_train_examples": 8, "data.quickstart_eval_examples": 4})
  for split in ("train", "eval"):   # made from 8 photos; the run below reads 16
    prepared.prepare(make_source("seg_voc", split, old),
                     prepared.set_dir(tmp_path, "seg_voc", split), task_id="seg_voc", split=split,
                     image_size=32)
  args = ["--config=experiments/configs/quickstart.py", "--config.model.preset=tiny",
          "--config.steps=2", "--config.batch_size=4", "--config.eval_batches=1",
          "--config.data.quickstart_train_examples=16", "--config.data.quickstart_eval_examples=4",
          f"--config.data.prepared_dir={tmp_path}", "--task=seg_voc",
          f"--workdir={tmp_path / 'work'}"]
  proc = subprocess.run([sys.executable, "experiments/main.py", *args], cwd=ROOT,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "error: " in proc.stderr and "is stale" in proc.stderr and "prepare.py" in proc.stderr
  assert "Traceback" not in proc.stderr and "step 1/" not in proc.stderr
