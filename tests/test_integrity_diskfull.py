"""Disk full: every write that fails for want of space leaves what was written before intact
and says which path could not be written and how much it needed.

A full disk is simulated with a file size limit: the child (this file run as a script) ignores
SIGXFSZ, so a write past ``RLIMIT_FSIZE`` fails with EFBIG as it would with ENOSPC, and lowers
the limit only around the write under test. The parent sets up what exists before, reads what
the child reports (one JSON line per point) and checks the files afterwards.
"""
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from conftest import CONSTANT_RATE_FLAGS  # noqa: E402
from test_integrity_crash import ARCH, base_tree, head, piggy_mask, same  # noqa: E402

RESULTS = {
    "tasks": ["t1", "t2"], "machine": "test box", "elapsed_s": 1.0,
    "primary": {t: {"metric": "miou", "higher_is_better": True} for t in ("t1", "t2")},
    "strategies": {"piggyback": {
        "after_training": {"t1": {"miou": 50.0}, "t2": {"miou": 40.0}},
        "matrix": [[{"miou": 50.0}, None], [{"miou": 49.0}, {"miou": 40.0}]],
        "sizes": {"base": 100, "tasks": {"t1": 10, "t2": 10}, "total": 120},
        "curves": {"t1": [[1, 2.0], [2, 1.0]], "t2": [[1, 3.0], [2, 1.5]]}}}}
LIMIT = 1024  # bytes: more than the small JSON files, less than an array file or a checkpoint
STEPS = 3


@contextmanager
def file_size_limit(nbytes: int):
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
  try:
    yield
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


class Widening:
  """Labelled images 24 px high and much wider at each index: the second prepared shard needs
  more than the first's 128 KiB (ArrayRecord writes whole blocks of it)."""
  has_labels, num_classes, class_names, strict = True, 2, ("a", "b"), False

  def __init__(self):
    self.skipped = {}

  def __len__(self):
    return 6

  def __getitem__(self, i):
    w = 24 + 500 * i
    rng = np.random.default_rng(i)
    return {"image": rng.integers(0, 255, (24, w, 3), dtype=np.uint8),
            "label": rng.integers(0, 2, (24, w), dtype=np.uint8)}


# ---- the child: each write under the limit ------------------------------------------------------

def child(work: Path) -> None:
  from conftest import make_tiny_config
  from piggyjax import continual, diskfull, report, train
  from piggyjax.bank import Bank
  from piggyjax.data import prepared

  def attempt(point, fn, limit=LIMIT):
    try:
      with file_size_limit(limit):
        fn()
      out = {"point": point, "error": None}
    except diskfull.DiskFull as err:
      out = {"point": point, "error": str(err), "path": str(err.path), "needed": err.needed}
    except Exception as err:  # noqa: BLE001  (reported, the parent fails on it)
      out = {"point": point, "error": f"{type(err).__name__}: {err}", "path": None}
    print(json.dumps(out), flush=True)

  results = json.loads((work / "results_v2.json").read_text())
  attempt("bank add", lambda: Bank.open(work / "bank").add(
      "p", "piggyback", head("head_p", 2), piggy_mask(), {"metrics": {"m": 1.0}}))
  attempt("bank create", lambda: Bank.create(work / "bank2", base_tree(), ARCH))
  attempt("tables", lambda: report.write_tables(results, str(work / "tables")))
  attempt("figure", lambda: report.write_figures(results, str(work / "tables")))
  attempt("progress", lambda: continual._write_json(work / "sequence_x.json",
                                                    {"matrix": [[{"m": 2.0}]] * 50}))
  # A sequence's copy of bank_base for a strategy: refused before any training starts.
  attempt("bank copy", lambda: continual.run_strategy(make_tiny_config(), "piggyback", ["a"],
                                                      work / "seq", {}, {}), limit=256)
  # A prepared set: the first shard fits, the second (wider images) does not.
  probe = prepared.prepare(Widening(), work / "probe", task_id="seg_voc", split="train",
                           image_size=16, shard_size=2)
  sizes = [s["bytes"] for s in probe["shards"]]
  attempt("prepared shard", lambda: prepared.prepare(
      Widening(), work / "prepared", task_id="seg_voc", split="train", image_size=16,
      shard_size=2), limit=sizes[0] + 1)
  # Training: 2 steps saved and sealed, then the step-3 checkpoint cannot be written.
  config = make_tiny_config(steps=STEPS, checkpoint_every=1)
  config.stop_after = 2
  try:
    train.train_task(config, "seg_coco", "base", work / "run", bank_path=work / "run" / "bank")
  except train.Interrupted:
    pass
  config.stop_after = 0
  attempt("checkpoint", lambda: train.train_task(config, "seg_coco", "base", work / "run",
                                                 bank_path=work / "run" / "bank"), limit=4096)


# ---- the test -----------------------------------------------------------------------------------

def digests(root: Path) -> dict:
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file()}


def test_each_disk_full_point_names_the_path_and_keeps_what_was_there(tmp_path):
  from piggyjax import ckpt_verify, continual, report
  from piggyjax.bank import Bank
  work = tmp_path
  # What exists before: a bank with task 'a', tables, figures and a progress file.
  bank = Bank.create(work / "bank", base_tree(), ARCH)
  bank.add("a", "base", head("head_a", 1))
  results = RESULTS
  shutil.copytree(work / "bank", work / "seq" / "bank_base")
  report.write_tables(results, str(work / "tables"))
  report.write_figures(results, str(work / "tables"))
  continual._write_json(work / "sequence_x.json", {"matrix": [[{"m": 1.0}]]})
  results["elapsed_s"] = 999.0  # what the child tries to write over them
  (work / "results_v2.json").write_text(json.dumps(report.to_jsonable(results)))
  before = {"bank": digests(work / "bank"), "tables": digests(work / "tables"),
            "progress": (work / "sequence_x.json").read_bytes()}

  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, __file__, str(work)], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  points = {r["point"]: r for r in map(json.loads, out.stdout.splitlines()) if "point" in r}
  print(json.dumps(points, indent=1))
  assert set(points) == {"bank add", "bank create", "tables", "figure", "progress",
                         "bank copy", "prepared shard", "checkpoint"}
  for name, p in points.items():
    assert p["error"] and p["error"].startswith(f"could not write {p['path']} (file too large)"), p
    assert "are free on that filesystem" in p["error"] and "ulimit -f" in p["error"], p
    assert "rerun the same command" in p["error"], p

  # Bank: the task being added is absent; 'a' loads as before; adding again works.
  assert "tasks/.partial-p-" in points["bank add"]["path"] and points["bank add"]["needed"] > LIMIT
  again = Bank.open(work / "bank")
  assert again.tasks() == ["a"]
  same(again.load_payload("a")[0], head("head_a", 1))
  again.add("p", "piggyback", head("head_p", 2), piggy_mask(), {"metrics": {"m": 1.0}})
  assert Bank.open(work / "bank").tasks() == ["a", "p"]
  # A base that could not be written: no bank there, and creating it again works.
  assert points["bank create"]["path"] == str(work / "bank2" / "base")
  assert not (work / "bank2" / "bank.json").exists()
  Bank.create(work / "bank2", base_tree(), ARCH)
  # Tables and figures: every file as it was, no temporary file left.
  assert points["tables"]["path"].startswith(str(work / "tables" / "results."))
  assert points["figure"]["path"].startswith(str(work / "tables" / "figures"))
  assert digests(work / "tables") == before["tables"]
  assert (work / "sequence_x.json").read_bytes() == before["progress"]
  assert points["progress"]["needed"] > LIMIT
  # The bank copy: a temporary directory, never a bank_piggyback missing files.
  assert points["bank copy"]["path"] == str(work / "seq" / ".bank_piggyback.tmp")
  assert not (work / "seq" / "bank_piggyback").exists()
  # Prepared set: shard 0 committed and listed, shard 1 named; finishing it later works.
  assert points["prepared shard"]["path"].endswith("shard-00001.arrayrecord.tmp")
  manifest = json.loads((work / "prepared" / "manifest.json").read_text())
  assert [s["file"] for s in manifest["shards"]] == ["shard-00000.arrayrecord"]
  # Training: the step-2 checkpoint is intact and verified; no bank was written.
  assert points["checkpoint"]["path"] == str(work / "run" / "checkpoints" / "3")
  assert points["checkpoint"]["needed"] > 4096
  ckpts = work / "run" / "checkpoints"
  assert 2 in [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()]
  assert ckpt_verify.problem(ckpts, 2) is None
  assert not (work / "run" / "bank").exists()


if __name__ == "__main__":
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit raises EFBIG instead
  child(Path(sys.argv[1]))


def test_the_command_stops_with_one_line_naming_the_checkpoint(tmp_path):
  """experiments/main.py under a 4 KiB file size limit: the first checkpoint cannot be written;
  exit status 2 and one line naming it. (Resuming after a failed save is
  checked above, in-process: the checkpoint before it verifies.)"""
  # bash sets both for the command it execs (no preexec_fn: forking a JAX process is unsafe):
  # 4 blocks of 1 KiB, and SIGXFSZ ignored, which exec keeps.
  limited = ["bash", "-c", 'ulimit -f 4 && trap "" XFSZ && exec "$@"', "limited"]
  cmd = [sys.executable, str(ROOT / "experiments" / "main.py"), "--task=seg_coco",
         f"--workdir={tmp_path}", "--config.model.preset=tiny", "--config.steps=2",
         *CONSTANT_RATE_FLAGS,
         "--config.checkpoint_every=1", "--config.batch_size=4", "--config.eval_batches=1",
         "--config.data.quickstart_train_examples=16", "--config.data.quickstart_eval_examples=4"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run(limited + cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 2, out.stderr[-3000:]
  line = [l for l in out.stderr.splitlines() if l.startswith("error: ")]
  assert line and line[0].startswith(f"error: could not write {tmp_path}/base/seg_coco/"
                                     "checkpoints/1 (file too large): it needs about "), out.stderr[-1500:]
  # (Orbax's save thread logs its own traceback of the failure before that line.)
  assert not (tmp_path / "bank").exists()
