"""experiments/device_check.py, the one script a lent accelerator runs, checked on the CPU at tiny
sizes on the real VOC samples in ../shared/data (its benchmark is tests/test_benchmark.py's)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from piggyjax import progress


def run(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "experiments/device_check.py", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


def test_three_input_forms_train_and_report_rates(tmp_path, shared_data):
  out = tmp_path / "out"
  proc = run(f"--data_dir={shared_data}", f"--out={out}", "--quick", "--steps=20", "--nobench")
  assert proc.returncode == 0, proc.stderr[-4000:]
  report = json.loads((out / "device_check.json").read_text())
  assert report["device"]["platform"] == "cpu" and report["quick"] is True
  assert set(report["training"]) == {"raw", "prepared", "prepared_device_augment"}
  for form, row in report["training"].items():
    assert (row["from_step"], row["to_step"], row["steps"]) == (10, 20, 10)
    assert 0 < row["images_per_s"] < float("inf") and row["seconds"] > 0
    assert 0 <= row["metrics"]["miou"] <= 100
    assert (out / form / "bank").is_dir()
  # the prepared forms read a prepared set, made once
  assert (out / "prepared_sets").is_dir()
  assert report["prepare_s"] >= 0
  assert sorted(p.parent.name for p in (out / "prepared_sets").glob("*/manifest.json")) == [
      "seg_voc_eval", "seg_voc_train"]
  assert "prepared_device_augment: " in proc.stdout
  again = run(f"--data_dir={shared_data}", f"--out={out}", "--quick", "--nobench", "--forms=raw")
  assert again.returncode != 0 and "already holds runs ['raw']" in again.stderr


def test_bad_input_is_refused(tmp_path):
  proc = run(f"--data_dir={tmp_path}", f"--out={tmp_path / 'o'}", "--quick", "--nobench")
  assert proc.returncode != 0 and "no voc_samples/" in proc.stderr
  proc = run(f"--data_dir={tmp_path}", f"--out={tmp_path / 'o'}", "--forms=raw,jpeg")
  assert proc.returncode != 0 and "unknown --forms ['jpeg']" in proc.stderr


def test_images_per_s_from_metrics_rows(tmp_path):
  f = tmp_path / "metrics.jsonl"
  rows = [{"step": 10, "time": 100.0, "train/loss": 1.0},
          {"step": 15, "time": 101.0, "eval/miou": 3},
          {"step": 20, "time": 102.0, "train/loss": 0.9},
          {"step": 30, "time": 104.0, "train/loss": 0.8}]
  f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
  r = progress.images_per_s(f, batch_size=8)
  assert (r["steps"], r["seconds"], r["from_step"], r["to_step"]) == (20, 4.0, 10, 30)
  assert r["images_per_s"] == pytest.approx(40.0)
  f.write_text(json.dumps(rows[0]) + "\n")
  with pytest.raises(ValueError, match="1 train rows"):
    progress.images_per_s(f, batch_size=8)
  f.write_text(json.dumps(rows[3]) + "\n" + json.dumps(rows[0]) + "\n")   # two runs' rows mixed
  with pytest.raises(ValueError, match="from step 30 to 10"):
    progress.images_per_s(f, batch_size=8)
