"""A truncated or bit-flipped training checkpoint is never resumed from.

Tiny U-Net, 32x32: a run stopped after 3 of 5 steps (checkpoints 2 and 3 kept, each sealed with
a sha256 manifest), then damaged in different ways and resumed.
"""
import json
import logging
import shutil

import pytest

from conftest import make_tiny_config
from piggyjax import ckpt_verify, train
from piggyjax.bank import Bank


def config(**kw):
  return make_tiny_config(steps=5, checkpoint_every=1, **kw)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
  """A run stopped after step 3: checkpoints 2 and 3 on disk, both sealed."""
  run = tmp_path_factory.mktemp("stopped") / "run"
  with pytest.raises(train.Interrupted):
    train.train_task(config(stop_after=3), "seg_coco", "base", run, bank_path=run / "bank")
  assert sorted(int(p.name) for p in (run / "checkpoints").iterdir()) == [2, 3]
  assert sorted(p.name for p in (run / ckpt_verify.MANIFESTS).iterdir()) == ["2.json", "3.json"]
  return run


def copy_of(stopped, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(stopped, run)
  return run


def biggest_file(ckpt):
  return max((p for p in ckpt.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def resumed_from(run):
  rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
  return [r["step"] for r in rows if "checkpoint/resumed_from_step" in r]


def damage(path, how):
  data = bytearray(path.read_bytes())
  if how == "bit-flipped":
    data[len(data) // 2] ^= 0x10
  else:
    data = data[: len(data) // 2]
  path.write_bytes(bytes(data))


def test_damaged_latest_falls_back_to_the_previous_with_a_warning(stopped, tmp_path, caplog):
  run = copy_of(stopped, tmp_path)
  victim = biggest_file(run / "checkpoints" / "3")
  damage(victim, "bit-flipped")
  with caplog.at_level(logging.WARNING):
    meta = train.train_task(config(), "seg_coco", "base", run, bank_path=run / "bank")
  warned = [r.getMessage() for r in caplog.records if "failed verification" in r.getMessage()]
  assert len(warned) == 1 and "step 3: files 1 changed" in warned[0], warned
  assert "resuming from step 2 instead" in warned[0] and victim.name in warned[0]
  assert resumed_from(run) == [2]
  assert [p.name.split("-")[0] for p in (run / ckpt_verify.DAMAGED).iterdir()] == ["3"]
  assert meta["steps"] == 5 and Bank.open(run / "bank").tasks() == ["seg_coco"]


def test_no_good_checkpoint_stops_with_an_error_naming_each(stopped, tmp_path):
  run = copy_of(stopped, tmp_path)
  damage(biggest_file(run / "checkpoints" / "3"), "truncated")
  (run / "checkpoints" / "2" / "_CHECKPOINT_METADATA").unlink()
  (run / ckpt_verify.MANIFESTS / "3.json").write_text('{"step": 3, "fil')  # torn too
  with pytest.raises(ckpt_verify.CheckpointError) as err:
    train.train_task(config(), "seg_coco", "base", run, bank_path=run / "bank")
  msg = str(err.value)
  assert f"no training checkpoint in {run / 'checkpoints'} can be trusted" in msg, msg
  assert "step 3: its manifest is unreadable" in msg, msg
  assert "step 2: files 1 missing (e.g. _CHECKPOINT_METADATA)" in msg, msg
  assert not (run / "bank").exists()
  # The damaged ones are out of the way: rerunning trains the task from the start.
  train.train_task(config(), "seg_coco", "base", run, bank_path=run / "bank")
  assert resumed_from(run) == [] and Bank.open(run / "bank").tasks() == ["seg_coco"]


def test_a_checkpoint_killed_before_its_seal_is_dropped(stopped, tmp_path):
  run = copy_of(stopped, tmp_path)
  (run / ckpt_verify.MANIFESTS / "3.json").unlink()  # killed between Orbax's rename and seal
  train.train_task(config(), "seg_coco", "base", run, bank_path=run / "bank")
  assert resumed_from(run) == [2]
  assert not (run / ckpt_verify.DAMAGED).exists()
  assert sorted(p.name for p in (run / ckpt_verify.MANIFESTS).iterdir()) == ["4.json", "5.json"]
