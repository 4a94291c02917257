"""--mode=export: a bank's tasks as jax.export functions, run in a process that never imports
piggyjax, against what --mode=apply computes; the all-task export about the bank's size; damaged
and foreign exports refused clearly."""
import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from piggyjax import cli, export, export_reader, train
from piggyjax.bank import Bank

# Runs in a fresh interpreter: each export's own reader.py, then proof piggyjax never loaded.
RUN = """
import importlib.util, sys, numpy as np
for job in sys.argv[1:]:
  directory, task, x, y = job.split("|")
  spec = importlib.util.spec_from_file_location("reader", directory + "/reader.py")
  reader = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(reader)
  np.save(y, reader.load(directory)(np.load(x), task))
assert "piggyjax" not in sys.modules, "the reader imported piggyjax"
print("piggyjax-free")
"""


def run_reader(jobs, tmp_path):
  """Outputs of (export directory, task, images) jobs, all in one process without piggyjax."""
  args = []
  for i, (directory, task, x) in enumerate(jobs):
    np.save(tmp_path / f"x{i}.npy", x)
    args.append(f"{directory}|{task}|{tmp_path / f'x{i}.npy'}|{tmp_path / f'y{i}.npy'}")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  proc = subprocess.run([sys.executable, "-c", RUN, *args], cwd=tmp_path,
                        env=dict(env, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0 and "piggyjax-free" in proc.stdout, proc.stderr[-3000:]
  return [np.load(tmp_path / f"y{i}.npy") for i in range(len(jobs))]


def apply_outputs(bank_path, config, task, x):
  """What --mode=apply computes before drawing its picture (cli.apply's own calls)."""
  bank = Bank.open(bank_path)
  ev = train.evaluator(task, train.model_config(config))
  return np.asarray(ev.predict(ev.put(bank.load(task)), {"image": x}))


def photos(shared_data):
  """A real photo fitted as apply fits it, and a random batch of another size (the export's
  batch and spatial sizes are symbolic)."""
  path = sorted((shared_data / "camvid").rglob("*.png"))[0]
  with Image.open(path) as im:
    real = cli._fit(np.asarray(im.convert("RGB").resize((60, 44))), 4)[None]
  rand = np.random.default_rng(0).integers(0, 256, (2, 16, 24, 3), np.uint8)
  return real, rand


def test_single_task_equals_apply_without_piggyjax(serving_bank, shared_data, tmp_path):
  bank_path, config = serving_bank
  bank = Bank.open(bank_path)
  assert bank.meta("seg_voc")["density"]["total"] < 0.8  # the mask really drops weights
  jobs, manifests = [], {}
  for task in ("seg_voc", "colorize_coco"):
    manifests[task] = export.export(config, bank, task, tmp_path / task)
    assert manifests[task]["input"]["shape"] == ["b", "4*h", "4*w", 3]
    assert "bits" not in json.dumps(manifests[task]["weights"])  # the mask is folded in
    jobs += [(tmp_path / task, task, x) for x in photos(shared_data)]
  for (_, task, x), got in zip(jobs, run_reader(jobs, tmp_path)):
    want = apply_outputs(bank_path, config, task, x)
    assert got.shape == want.shape == x.shape[:3] + (manifests[task]["tasks"][0]["channels"],)
    assert np.abs(got - want).max() <= 1e-5


def test_all_tasks_one_function_about_the_bank_size(serving_bank, shared_data, tmp_path):
  bank_path, config = serving_bank
  out = tmp_path / "all"
  proc = subprocess.run([sys.executable, "experiments/main.py", "--mode=export", "--task=all",
                         f"--base_ckpt={bank_path}", f"--output={out}",
                         "--config.model.preset=tiny"], cwd=ROOT, capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=180)
  assert proc.returncode == 0, proc.stderr[-3000:]
  bank = Bank.open(bank_path)
  ids = bank.tasks()
  manifest = json.loads((out / "manifest.json").read_text())
  assert [t["id"] for t in manifest["tasks"]] == ids == ["seg_coco", "seg_voc", "colorize_coco"]
  # The weights file holds the base once, one bit per masked weight per piggyback task, and
  # each task's head and norms: counted here from the bank's own payloads.
  base_bytes = sum(v.nbytes for v in export._flat(bank.base()).values())
  per_task = 0
  for t in ids:
    arrays, mask, _ = bank.load_payload(t)
    own = export._flat(arrays)
    per_task += sum(v.nbytes for k, v in own.items()
                    if not k.startswith("params/head_") or k.startswith(f"params/head_{t}/"))
    per_task += sum((m.size + 7) // 8 for m in export._flat(mask or {}).values() if not m.all())
  assert len(zlib.decompress((out / "weights.bin.z").read_bytes())) == base_bytes + per_task
  total, bank_total = export.size(out), bank.sizes()["total"]
  assert total <= 1.05 * bank_total, (total, bank_total)
  assert f"{total} bytes (the bank: {bank_total} bytes)" in proc.stdout
  x = photos(shared_data)[0]
  for t, got in zip(ids, run_reader([(out, t, x) for t in ids], tmp_path)):
    assert np.abs(got - apply_outputs(bank_path, config, t, x)).max() <= 1e-5


def test_damaged_or_foreign_export_is_a_clear_error(serving_bank, tmp_path):
  bank_path, config = serving_bank
  out = tmp_path / "seg"
  export.export(config, Bank.open(bank_path), "seg_voc", out)
  foreign = tmp_path / "photos"
  foreign.mkdir()
  (foreign / "a.txt").write_text("hello")
  with pytest.raises(export_reader.ArtifactError, match="is not a piggyjax export"):
    export_reader.load(foreign)
  with pytest.raises(export.ExportError, match="exists and is not an export"):
    export.export(config, Bank.open(bank_path), "seg_voc", foreign)
  data = bytearray((out / "weights.bin.z").read_bytes())
  data[100] ^= 1
  (out / "weights.bin.z").write_bytes(bytes(data))
  with pytest.raises(export_reader.ArtifactError, match="weights.bin.z fails its sha256 check"):
    export_reader.load(out)
  # The reader's command line: one line, no traceback, exit status 2.
  proc = subprocess.run([sys.executable, str(out / "reader.py"), str(out), "x.npy",
                         "--output=y.npy"], cwd=tmp_path, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 2 and "fails its sha256 check" in proc.stderr
  assert "Traceback" not in proc.stderr
  manifest = json.loads((out / "manifest.json").read_text())
  (out / "manifest.json").write_text(json.dumps(dict(manifest, function="../../etc/passwd")))
  with pytest.raises(export_reader.ArtifactError, match="names files it does not check"):
    export_reader.load(out)
  (out / "manifest.json").write_text("{not json")
  with pytest.raises(export_reader.ArtifactError, match="manifest.json is not valid JSON"):
    export_reader.load(out)


def test_unknown_task_or_missing_output_is_a_usage_error(serving_bank, tmp_path):
  bank_path, config = serving_bank
  with pytest.raises(cli.UsageError, match="--task=style_scream is not in the bank"):
    cli.export(config, "style_scream", str(bank_path), str(tmp_path / "o"))
  with pytest.raises(cli.UsageError, match="--output is required"):
    cli.export(config, "seg_voc", str(bank_path), None)
