"""kill -9 anywhere in a --mode=sequence run; rerun the same command; same results, same bank.

Tiny U-Net, 2 tasks x 2 strategies, 4 steps each. One unbroken run is the reference. A second
run on a fresh workdir is SIGKILLed again and again and rerun with the same command each time,
until a rerun finishes; its results.json metrics and its banks must equal the reference's.

Where each kill lands is drawn from a seed (``PIGGYJAX_KILL_SEED``, printed; set it to replay a
failure; ``PIGGYJAX_KILLS`` kills per run, 4 by default, up to one in each of the 9 phases). This file run as a script is the child: it runs experiments/main.py in-process after
wrapping a few functions and file operations, counts events per phase (a train step, an
evaluation, a file written or renamed under checkpoints/, the banks, the progress file, the
tables, the figures, a file copied into a bank copy) and at the m-th event of the chosen phase
sends itself SIGKILL: a real kill -9 at a known place, no hook in the library. A phase ``time``
kills after a drawn number of seconds instead.

Bank bytes: every task file (meta.json, arrays.bin, mask.bin) must be byte-identical, and the
base the same network (bank.json's fingerprint). The base's Orbax files themselves differ
between any two unbroken runs (Orbax writes timestamps and random file names), so they and the
sizes that count them are not compared byte for byte.
"""
import atexit
import builtins
import io
import json
import os
import random
import runpy
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from conftest import CONSTANT_RATE_FLAGS

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--mode=sequence", "--config.model.preset=tiny", "--config.tasks=seg_coco,colorize_coco",
        "--config.strategies=piggyback,finetune", "--config.steps=4", "--config.steps_for.colorize_coco=4",
        *CONSTANT_RATE_FLAGS,
        "--config.checkpoint_every=2", "--config.batch_size=4", "--config.eval_batches=1",
        "--config.data.quickstart_train_examples=32", "--config.data.quickstart_eval_examples=8",
        "--config.figure_images=2", "--config.mask.norm=frozen"]
# In the order a run meets them: what a kill at each interrupts.
PHASES = ("train", "checkpoint", "eval", "bank_write", "bank_copy", "progress", "tables",
          "figures", "time")


# ---- the child ----------------------------------------------------------------------------------

def classify(path) -> str | None:
  p = str(path)
  name = os.path.basename(p).lstrip(".")  # a file written beside its destination first
  if "/checkpoints/" in p or p.endswith("/checkpoints"):
    return "checkpoint"
  if "/.bank_" in p:
    return "bank_copy"
  if "/bank_" in p:
    return "bank_write"
  if name.startswith("sequence_"):
    return "progress"
  if name.startswith("results."):
    return "tables"
  if "/figures" in p:
    return "figures"
  return None


def child(spec: str, count_file: str | None, argv: list[str]) -> None:
  phase, _, m = spec.partition(":")
  counts: dict[str, int] = {}
  lock = threading.Lock()

  def event(kind):
    if kind is None:
      return
    with lock:
      counts[kind] = counts.get(kind, 0) + 1
      if kind == phase and counts[kind] == int(m):
        os.kill(os.getpid(), signal.SIGKILL)

  if phase == "time":
    threading.Timer(float(m), lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
  if count_file:
    atexit.register(lambda: Path(count_file).write_text(json.dumps(counts)))

  orig_open = builtins.open

  def patched_open(file, mode="r", *a, **k):
    if isinstance(file, (str, os.PathLike)):
      if any(c in mode for c in "wax+"):
        event(classify(file))
      elif str(file).endswith("arrays.bin"):  # a bank task read: evaluation or the grids
        event("eval")
    return orig_open(file, mode, *a, **k)
  builtins.open = io.open = patched_open

  def wrap(mod, name, kind_of):
    fn = getattr(mod, name)
    def wrapped(*args, **kwargs):
      event(kind_of(*args))
      return fn(*args, **kwargs)
    setattr(mod, name, wrapped)
  for name in ("replace", "rename", "unlink", "remove", "mkdir", "rmdir"):
    wrap(os, name, lambda *a: classify(a[0]) if a else None)
  wrap(shutil, "copy2", lambda *a: classify(a[1]) if len(a) > 1 else None)
  wrap(shutil, "rmtree", lambda *a: classify(a[0]) if a else None)

  sys.path.insert(0, str(ROOT))
  from piggyjax import train
  orig_init, orig_eval = train.Runner.__init__, train.Evaluator.evaluate

  def init(self, *a, **k):
    orig_init(self, *a, **k)
    step = self.train_step
    def counted(*args):
      event("train")
      return step(*args)
    self.train_step = counted
  train.Runner.__init__ = init

  def evaluate(self, *a, **k):
    event("eval")
    return orig_eval(self, *a, **k)
  train.Evaluator.evaluate = evaluate

  sys.argv = [str(ROOT / "experiments" / "main.py"), *argv]
  runpy.run_path(sys.argv[0], run_name="__main__")


# ---- the test -----------------------------------------------------------------------------------

def run(workdir: Path, env: dict, spec: str = "none:0", count_file: Path | None = None):
  cmd = [sys.executable, __file__, spec, str(count_file or ""), f"--workdir={workdir}", *ARGS]
  return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def comparable(workdir: Path) -> dict:
  """What must not depend on kills: results.json less time and place, and the banks' bytes."""
  res = json.loads((workdir / "results.json").read_text())
  for key in ("elapsed_s", "resumed", "machine", "config"):  # the input, and how it ran
    res.pop(key)
  for s in res["strategies"].values():
    s.pop("bank")
    s["sizes"] = s["sizes"]["tasks"]  # the base's Orbax files carry timestamps
  banks = {}
  for bank in sorted(workdir.glob("bank_*")):
    info = json.loads((bank / "bank.json").read_text())
    banks[bank.name] = {"tasks": info["tasks"], "fingerprint": info["fingerprint"],
                        "arch": info["arch"]}
    for f in sorted((bank / "tasks").rglob("*")):
      if f.is_file():
        banks[bank.name][str(f.relative_to(bank))] = f.read_bytes()
  return {"results": res, "banks": banks}


def plan(seed: int, counts: dict, n: int) -> list[tuple[str, int]]:
  """``n`` kills in drawn phases, in the order a run meets them, at a drawn event of each.

  Drawn from the first fifth of the reference's events of that phase: a rerun skips what is
  done, so a later draw could find the work finished and run to the end without being killed
  (about one occurrence of each phase: a fifth of one task's training, of a checkpoint save, of
  a bank write or copy)."""
  rng = random.Random(seed)
  chosen = set(rng.sample([p for p in PHASES if p == "time" or counts.get(p)], n))
  kills = []
  for phase in [p for p in PHASES if p in chosen]:
    if phase == "time":
      kills.append((phase, round(rng.uniform(3.0, 10.0), 2)))
    else:
      kills.append((phase, rng.randint(1, max(1, counts[phase] // 5))))
  return kills


def test_sequence_killed_anywhere_ends_like_an_unbroken_run(tmp_path):
  seed = int(os.environ.get("PIGGYJAX_KILL_SEED", "15"))
  n = int(os.environ.get("PIGGYJAX_KILLS", "4"))  # up to len(PHASES); 4 keeps the test short
  print(f"PIGGYJAX_KILL_SEED={seed} PIGGYJAX_KILLS={n}")
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  ref, counts_file = tmp_path / "unbroken", tmp_path / "counts.json"
  done = run(ref, env, count_file=counts_file)
  assert done.returncode == 0, done.stderr[-3000:]
  counts = json.loads(counts_file.read_text())
  kills = plan(seed, counts, n)
  assert len(kills) == n, (counts, kills)

  work, log = tmp_path / "killed", []
  for spec in [f"{p}:{m}" for p, m in kills] + ["none:0"]:
    out = run(work, env, spec)
    log.append((spec, out.returncode))
    assert out.returncode in (0, -signal.SIGKILL), (spec, log, out.stderr[-3000:])
  print("kills (spec, exit status):", log)
  landed = [s for s, rc in log if rc == -signal.SIGKILL]
  # Every phase met in a rerun at all is met from its first event on: the draws land.
  assert len(landed) >= n - 1, log
  assert log[-1][1] == 0
  got, want = comparable(work), comparable(ref)
  assert got["results"] == want["results"]
  assert got["banks"].keys() == want["banks"].keys()
  for name in want["banks"]:
    assert got["banks"][name].keys() == want["banks"][name].keys(), name
    for key in want["banks"][name]:
      assert got["banks"][name][key] == want["banks"][name][key], (name, key)


if __name__ == "__main__":
  child(sys.argv[1], sys.argv[2] or None, sys.argv[3:])
