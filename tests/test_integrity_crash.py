"""kill -9 during a bank write, at every filesystem step: the bank reopens, nothing is lost.

One child process (this file run as a script) imports the bank once, then forks a worker per
kill point. The worker records every filesystem mutation (mkdir, open for writing, the first
write of each file, fsync, rename, delete); at step k it writes half of that step's bytes if the
step is a write, stops itself (SIGSTOP), and the child SIGKILLs it: a real kill -9 at a known
place, with no hook in the library. A first uncounted run of each scenario counts its steps.
The test then reopens every killed bank here and checks: the previous tasks load bit-identically,
the task being written is absent or complete (or, when it was replacing itself, reported
missing), and adding it again works and leaves no leftovers.
"""
import builtins
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ARCH = {"widths": [4, 8], "norm": "batch"}
SCENARIOS = ("add", "overwrite", "create")


# ---- the trees written (tiny, hand-made: no model, no compilation) ------------------------------

def base_tree():
  rng = np.random.default_rng(0)
  bb = {"enc_0": {"Conv_0": {"kernel": rng.normal(size=(3, 3, 3, 4)).astype(np.float32),
                             "bias": rng.normal(size=(4,)).astype(np.float32)}},
        "dec_0": {"Conv_0": {"kernel": rng.normal(size=(3, 3, 4, 8)).astype(np.float32)}}}
  stats = {"enc_0": {"Norm_0": {"mean": np.arange(4, dtype=np.float32),
                                "var": np.ones(4, np.float32)}}}
  return {"params": {"backbone": bb}, "batch_stats": {"backbone": stats}}


def head(name, seed):
  rng = np.random.default_rng(seed)
  return {"params": {name: {"kernel": rng.normal(size=(1, 1, 8, 3)).astype(np.float32),
                            "bias": np.full(3, seed, np.float32)}}}


def piggy_mask():
  rng = np.random.default_rng(7)
  bb = base_tree()["params"]["backbone"]
  return {"backbone": {k: {"Conv_0": {"kernel": rng.random(v["Conv_0"]["kernel"].shape) < 0.4}}
                       for k, v in bb.items()}}


def do(scenario, root: Path):
  """The write under test (what train_task does for a new, a re-trained and a first task)."""
  from piggyjax.bank import Bank
  if scenario == "add":
    Bank.open(root).add("p", "piggyback", head("head_p", 2), piggy_mask(), {"metrics": {"m": 1.0}})
  elif scenario == "overwrite":
    Bank.open(root).add("a", "base", head("head_a", 3), overwrite=True)
  else:
    Bank.create(root, base_tree(), ARCH).add("a", "base", head("head_a", 1), overwrite=True)


# ---- the child: fork a worker per kill point ----------------------------------------------------

class Steps:
  """Counts filesystem mutations; at step ``kill_at`` tears the write and stops the process."""

  def __init__(self, kill_at):
    self.n, self.kill_at, self.log = 0, kill_at, []

  def __call__(self, what, path, tear=None):
    self.n += 1
    self.log.append(f"{what} {path}")
    if self.n == self.kill_at:
      if tear is not None:
        tear()
      os.kill(os.getpid(), signal.SIGSTOP)  # the child SIGKILLs us here


def install(step: Steps):
  orig_open = builtins.open

  class Torn:
    def __init__(self, f, path):
      self._f, self._path, self._first = f, path, True

    def write(self, data):
      if self._first:
        self._first = False
        def tear():
          self._f.write(data[:len(data) // 2])
          self._f.flush()
        step("write", self._path, tear)
      return self._f.write(data)

    def __getattr__(self, name):
      return getattr(self._f, name)

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      return self._f.__exit__(*exc)

  def patched_open(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
      step("open", file)
      return Torn(orig_open(file, mode, *args, **kwargs), file)
    return orig_open(file, mode, *args, **kwargs)

  def wrap(mod, name):
    fn = getattr(mod, name)
    def wrapped(*args, **kwargs):
      step(name, args[0] if args else "")
      return fn(*args, **kwargs)
    setattr(mod, name, wrapped)

  builtins.open = io.open = patched_open
  for name in ("replace", "rename", "mkdir", "unlink", "remove", "rmdir", "fsync"):
    wrap(os, name)
  wrap(shutil, "rmtree")


def run_worker(scenario, template: Path, target: Path, kill_at):
  """Fork; return ('killed', step) or ('done', number of steps)."""
  pid = os.fork()
  if pid == 0:
    code = 1
    try:
      if scenario != "create":
        shutil.copytree(template, target)
      step = Steps(kill_at)
      install(step)
      do(scenario, target)
      Path(f"{target}.steps").write_text("\n".join(step.log))
      code = 0
    finally:
      os._exit(code)
  _, status = os.waitpid(pid, os.WUNTRACED)
  if os.WIFSTOPPED(status):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "killed", kill_at
  assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"{scenario} worker failed"
  return "done", len(Path(f"{target}.steps").read_text().splitlines())


def child(work: Path):
  import orbax.checkpoint  # noqa: F401  imported before forking, so each worker starts fast
  import piggyjax.bank  # noqa: F401
  report = {}
  for scenario in SCENARIOS:
    _, n = run_worker(scenario, work / "template", work / f"{scenario}-count", None)
    report[scenario] = {"steps": Path(work / f"{scenario}-count.steps").read_text().splitlines(),
                        "killed": []}
    for k in range(1, n + 1):
      outcome, _ = run_worker(scenario, work / "template", work / f"{scenario}-{k}", k)
      if outcome == "killed":
        report[scenario]["killed"].append(k)
  (work / "report.json").write_text(json.dumps(report, indent=1))


# ---- the test -----------------------------------------------------------------------------------

def flat(tree, prefix=""):
  out = {}
  for k, v in tree.items():
    out.update(flat(v, f"{prefix}{k}/") if isinstance(v, dict) else {prefix + k: np.asarray(v)})
  return out


def same(got, want):
  g, w = flat(got), flat(want)
  assert g.keys() == w.keys()
  for k in g:
    assert g[k].dtype == w[k].dtype and g[k].shape == w[k].shape, k
    assert g[k].tobytes() == w[k].tobytes(), k  # bit-identical, not merely close


def digest_dir(root: Path):
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file()}


def no_leftovers(root: Path):
  left = [p.name for p in root.iterdir() if p.name.startswith(".")]
  left += [p.name for p in (root / "tasks").iterdir() if p.name.startswith(".")]
  assert not left, left


def test_kill_during_bank_writes_loses_nothing(tmp_path):
  from piggyjax.bank import Bank, BankError
  template = Bank.create(tmp_path / "template", base_tree(), ARCH)
  template.add("a", "base", head("head_a", 1))
  base_digest = digest_dir(template.root / "base")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, __file__, str(tmp_path)], env=env, capture_output=True,
                        text=True, timeout=300, cwd=Path(__file__).parents[1])
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((tmp_path / "report.json").read_text())
  outcomes = {}

  # A new task: absent or complete, never half there; "a" untouched.
  killed = report["add"]["killed"]
  assert len(killed) >= 12, report["add"]["steps"]  # every mkdir/write/fsync/rename was a kill point
  for k in killed:
    root = tmp_path / f"add-{k}"
    bank = Bank.open(root)
    assert bank.tasks() in (["a"], ["a", "p"]), k
    same(bank.load_payload("a")[0], head("head_a", 1))
    assert digest_dir(root / "base") == base_digest
    if "p" in bank.tasks():
      arrays, mask, _ = bank.load_payload("p")
      same(arrays, head("head_p", 2))
      same(mask, piggy_mask())
    outcomes[("add", "p listed" if "p" in bank.tasks() else "p absent")] = outcomes.get(
        ("add", "p listed" if "p" in bank.tasks() else "p absent"), 0) + 1
    bank.add("p", "piggyback", head("head_p", 2), piggy_mask(), overwrite="p" in bank.tasks())
    same(Bank.open(root).load_payload("p")[1], piggy_mask())
    no_leftovers(root)
  assert outcomes[("add", "p absent")] and outcomes[("add", "p listed")]

  # Replacing a task: the old copy, the new one, or "missing, add it again"; never a mix.
  for k in report["overwrite"]["killed"]:
    root = tmp_path / f"overwrite-{k}"
    bank = Bank.open(root)
    assert bank.tasks() == ["a"]
    try:
      got = bank.load_payload("a")[0]
      kind = "old" if flat(got)["params/head_a/bias"][0] == 1 else "new"
      same(got, head("head_a", 1 if kind == "old" else 3))
    except BankError as err:
      assert "task 'a'" in str(err) and "missing" in str(err) and "add it again" in str(err)
      kind = "reported missing"
    outcomes[("overwrite", kind)] = outcomes.get(("overwrite", kind), 0) + 1
    bank.add("a", "base", head("head_a", 3), overwrite=True)
    same(Bank.open(root).load_payload("a")[0], head("head_a", 3))
    no_leftovers(root)
  assert outcomes[("overwrite", "old")] and outcomes[("overwrite", "new")]

  # A first task (base + task): no bank, or a bank of that base; a rerun completes it.
  for k in report["create"]["killed"]:
    root = tmp_path / f"create-{k}"
    if not (root / "bank.json").exists():
      with pytest.raises(BankError, match="no bank"):
        Bank.open(root)
      kind = "no bank"
    else:
      kind = "bank, task listed" if Bank.open(root).tasks() else "bank without its task"
    outcomes[("create", kind)] = outcomes.get(("create", kind), 0) + 1
    bank = Bank.create(root, base_tree(), ARCH)  # what rerunning the first task does
    bank.add("a", "base", head("head_a", 1), overwrite=True)
    again = Bank.open(root)
    assert again.tasks() == ["a"]
    same(again.load_payload("a")[0], head("head_a", 1))
    same(again.base(), base_tree())  # checksums, then Orbax, then the fingerprint
    no_leftovers(root)
  assert outcomes[("create", "no bank")] and outcomes[("create", "bank without its task")]
  print("kill points and outcomes:", {s: len(report[s]["killed"]) for s in SCENARIOS}, outcomes)


if __name__ == "__main__":
  sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
  child(Path(sys.argv[1]))
