"""Two real JAX processes (jax.distributed over 127.0.0.1, gloo CPU collectives) train a
piggyback task and end where one process ends over the same global batches; only process 0
writes the bank.

The same global batches: ``piggyjax.data.batches`` gives step k the same examples with the same
augmentation for any process count (each process reads its rows of one shared stream), so the
two-process run (2 examples per process) and the one-process run (4) see identical global
batches, and only the order of floating-point sums differs.
"""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from conftest import ROOT, make_tiny_config
from piggyjax import train
from piggyjax.bank import Bank
from piggyjax.models import unet

WORKER = ROOT / "tests" / "multihost_worker.py"
TASK = "seg_voc"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _make_bank(path: Path) -> None:
  """A bank whose base is a freshly initialised backbone (no training needed here)."""
  config = make_tiny_config()
  v = jax.tree.map(np.asarray, unet.init(train.model_config(config), (("seg_coco", 5),), 0, 32))
  base = {"params": {"backbone": v["params"]["backbone"]}}
  if "batch_stats" in v:
    base["batch_stats"] = {"backbone": v["batch_stats"]["backbone"]}
  Bank.create(path, base, train.arch(config))


def _launch(run: Path, out: Path, env: dict, umask: int) -> subprocess.Popen:
  with open(out.with_suffix(".log"), "w") as log:  # the child keeps its own descriptor
    return subprocess.Popen([sys.executable, str(WORKER), str(run / "bank"), str(run / "work"),
                             str(out)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            umask=umask)


def _last_state(workdir: Path, like: dict | None = None) -> dict:
  """The final checkpoint's state; ``like`` gives shapes and dtypes for restoring on one
  device what two processes saved (Orbax wants a target when the topology differs)."""
  import orbax.checkpoint as ocp
  step = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  path = workdir / "checkpoints" / str(step) / "default"
  one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = None if like is None else jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one_device), like)
  return jax.tree.map(np.asarray, ocp.StandardCheckpointer().restore(path, target))


def _tree(root: Path) -> dict[str, int]:
  """Relative path -> permission bits, for everything under root."""
  return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in root.rglob("*")}


def test_two_processes_train_like_one(tmp_path):
  one, two = tmp_path / "one", tmp_path / "two"
  for run in (one, two):
    _make_bank(run / "bank")
  bank_before = _tree(two / "bank")
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  env.pop("PIGGYJAX_MULTIHOST", None)
  port = _free_port()
  procs = {"one": _launch(one, tmp_path / "one.json", env, 0o022)}
  for i in range(2):
    env_i = dict(env, PIGGYJAX_MULTIHOST="1", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                 PIGGYJAX_NUM_PROCESSES="2", PIGGYJAX_PROCESS_ID=str(i))
    # What process 1 creates is told apart by its mode: its umask leaves no group/other bits.
    procs[f"two_{i}"] = _launch(two, tmp_path / f"two_{i}.json", env_i, 0o077 if i else 0o022)
  try:
    for name, p in procs.items():
      rc = p.wait(timeout=240)
      log = (tmp_path / f"{name}.log").read_text()
      assert rc == 0, f"{name} exited {rc}:\n{log[-4000:]}"
  finally:
    for p in procs.values():
      if p.poll() is None:
        p.kill()
  out = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in procs}
  assert [(out[n]["process"], out[n]["processes"], out[n]["devices"]) for n in procs] == [
      (0, 1, 1), (0, 2, 2), (1, 2, 2)]

  # The same scores: the piggyback mask scores and head after the last step (from the final
  # Orbax checkpoints), the stored mask and head, the final training loss and the eval metrics.
  a = _last_state(one / "work")
  b = _last_state(two / "work", like=a)
  assert int(a["step"]) == int(b["step"]) == 4
  flat_a, flat_b = jax.tree.leaves_with_path(a), jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b)
  worst = 0.0
  for (path, x), y in zip(flat_a, flat_b):
    np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    worst = max(worst, float(np.max(np.abs(y - x), initial=0)))
  print("largest state difference:", worst)
  arrays_a, mask_a, meta_a = Bank.open(one / "bank").load_payload(TASK)
  arrays_b, mask_b, meta_b = Bank.open(two / "bank").load_payload(TASK)
  for x, y in zip(jax.tree.leaves(arrays_a), jax.tree.leaves(arrays_b)):
    np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-6)
  bits_a = np.concatenate([np.ravel(m) for m in jax.tree.leaves(mask_a)])
  bits_b = np.concatenate([np.ravel(m) for m in jax.tree.leaves(mask_b)])
  assert 0 < bits_a.mean() < 1, "the test should flip some mask bits"
  assert (bits_a == bits_b).mean() >= 0.999
  print(f"mask: {bits_a.mean():.3f} of {bits_a.size} bits kept, {int((bits_a != bits_b).sum())} "
        "differ between the runs")
  rows = {r: [json.loads(line) for line in (run / "work" / "metrics.jsonl").read_text().split("\n")
              if line] for r, run in (("one", one), ("two", two))}
  assert [r["step"] for r in rows["one"]] == [r["step"] for r in rows["two"]]
  for x, y in zip(rows["one"], rows["two"]):
    for k in x:
      if k != "time":
        np.testing.assert_allclose(y[k], x[k], rtol=1e-4, atol=1e-4, err_msg=k)
  assert out["two_0"]["meta"] == out["two_1"]["meta"] == meta_b  # process 1 read process 0's
  for k, v in meta_a["metrics"].items():
    np.testing.assert_allclose(meta_b["metrics"][k], v, rtol=1e-4, atol=1e-4, err_msg=k)
  print("final:", rows["one"][-2], rows["two"][-2], meta_a["metrics"], meta_b["metrics"])

  # Only process 0 wrote the bank; process 1 created nothing but Orbax's own per-process files.
  created_by_1 = sorted(p for p, mode in _tree(two).items() if not mode & 0o077)
  assert created_by_1, "process 1's umask should mark the Orbax files it writes"
  for path in created_by_1:
    assert re.fullmatch(r"work/checkpoints/\d+/default/(array_metadatas/process_1|"
                        r"ocdbt\.process_1(/.*)?)", path), path
  task_files = {"tasks", f"tasks/{TASK}", *(f"tasks/{TASK}/{f}" for f in
                                           ("arrays.bin", "mask.bin", "meta.json"))}
  assert set(_tree(two / "bank")) == set(bank_before) | task_files  # no partial or duplicate
  assert len(list((two / "work" / "tb").iterdir())) == 1


GATHER = r"""
import json, sys
import jax, numpy as np
jax.config.update("jax_cpu_collectives_implementation", "gloo")
from piggyjax import sharding
sharding.maybe_initialize_distributed(False)
m = sharding.mesh()
rows = np.arange(6, dtype=np.float32).reshape(2, 3) + 10 * jax.process_index()
batch = sharding.put_batch({"image": rows, "id": ["dropped"]}, m)
host = sharding.to_host({"sharded": batch["image"], "replicated": sharding.put_replicated(
    np.full(3, 7.0), m)})
sharding.barrier("done")
print(json.dumps({k: v.tolist() for k, v in host.items()}))
"""


def test_process_rows_in_order_and_to_host_gathers(tmp_path):
  """Process p's rows are rows [p*b, (p+1)*b) of the global batch; to_host gives every process
  the whole of a sharded array and a copy of a replicated one."""
  port, procs = _free_port(), []
  for i in range(2):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", PIGGYJAX_MULTIHOST="1",
               JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", PIGGYJAX_NUM_PROCESSES="2",
               PIGGYJAX_PROCESS_ID=str(i))
    procs.append(subprocess.Popen([sys.executable, "-c", GATHER], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  try:
    outs = [p.communicate(timeout=120) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (stdout, stderr) in zip(procs, outs):
    assert p.returncode == 0, stderr[-3000:]
    got = json.loads(stdout.strip().splitlines()[-1])
    assert got == {"sharded": [[0, 1, 2], [3, 4, 5], [10, 11, 12], [13, 14, 15]],
                   "replicated": [7, 7, 7]}
