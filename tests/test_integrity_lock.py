"""Two writers: the second is refused, naming the first; a killed writer's lock blocks nobody;
readers need no lock; with several processes all stop together when process 0 cannot lock."""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import ROOT, make_tiny_config
from piggyjax import cli, locking, tasks, train
from piggyjax.bank import Bank
from piggyjax.models import unet

HOLDER = r"""
import sys, time
from piggyjax import locking
locking.hold(sys.argv[1], "workdir")
locking.hold(sys.argv[2], "bank")
print("held", flush=True)
time.sleep(600)
"""


def make_bank(path: Path) -> None:
  """A bank with a base and a first task, fresh from init (no training needed here)."""
  config, n = make_tiny_config(), tasks.get("seg_coco").head_channels
  v = jax.tree.map(np.asarray, unet.init(train.model_config(config), (("seg_coco", n),), 0, 32))
  base = {"params": {"backbone": v["params"]["backbone"]},
          "batch_stats": {"backbone": v["batch_stats"]["backbone"]}}
  bank = Bank.create(path, base, train.arch(config))
  bank.add("seg_coco", "base", {"params": {"head_seg_coco": v["params"]["head_seg_coco"]}},
           metadata={"metrics": {}, "head_channels": n})


def start_holder(workdir: Path, bank: Path) -> subprocess.Popen:
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir), str(bank)], cwd=ROOT,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"), stdout=subprocess.PIPE,
                            text=True)
  assert holder.stdout.readline().strip() == "held"
  return holder


def main_py(*args, env_extra=None):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **(env_extra or {}))
  return subprocess.run([sys.executable, str(ROOT / "experiments" / "main.py"), *args],
                        env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)


def test_second_writer_is_refused_readers_are_not_and_a_killed_writer_blocks_nobody(tmp_path):
  work, bank = tmp_path / "work", tmp_path / "bank"
  make_bank(bank)
  holder = start_holder(work, bank)
  try:
    # 1. A second writer of the same workdir: the real command, refused before any work.
    out = main_py("--mode=sequence", f"--workdir={work}", "--config.model.preset=tiny",
                  "--config.tasks=seg_coco,seg_voc", "--config.strategies=piggyback")
    assert out.returncode == 2, out.stderr[-2000:]
    msg = out.stderr
    assert (f"the workdir {work} is being written by another process: pid {holder.pid} on "
            f"host {socket.gethostname()}, running since 20") in msg, msg
    assert "-c " in msg and "pass another --workdir" in msg  # its command line, what to do
    assert sorted(p.name for p in work.iterdir()) == [locking.LOCK_NAME]  # nothing written
    # 2. A writer of the same bank from another workdir: refused too, naming the holder.
    config = make_tiny_config()
    with pytest.raises(locking.LockHeld, match=rf"the bank {bank} is being written by another "
                                               rf"process: pid {holder.pid} on host"):
      cli.train(config, "seg_voc", "piggyback", str(bank), tmp_path / "other")
    # 3. Readers need no lock: evaluate the bank while it is held.
    metrics = cli.evaluate(make_tiny_config(), "seg_coco", str(bank))
    assert set(metrics) >= {"miou", "pixel_acc"}
    assert Bank.open(bank).tasks() == ["seg_coco"]
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # 4. The holder was killed -9: its lock file is still there, naming it, and blocks nothing.
  lock = locking.lock_file(work.absolute(), "workdir")
  assert json.loads(lock.read_text())["pid"] == holder.pid
  locking.hold(work, "workdir")
  locking.hold(bank, "bank")
  try:
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    locking.hold(work, "workdir")  # the same process again: re-entrant
  finally:
    locking.release(work)
    locking.release(bank)
  assert not locking.holds(work)


WORKER = r"""
import sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
from piggyjax import locking, sharding
sharding.maybe_initialize_distributed(False)
try:
  locking.hold(sys.argv[1], "workdir")
  print("locked")
except locking.LockHeld as err:
  print("refused:", err)
sharding.barrier("after the lock")  # a process left waiting here would hang the test
"""


def test_all_processes_stop_together_when_process_0_cannot_lock(tmp_path):
  work, bank = tmp_path / "work", tmp_path / "bank"
  holder = start_holder(work, bank)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = []
  try:
    for i in range(2):
      env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", PIGGYJAX_MULTIHOST="1",
                 JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", PIGGYJAX_NUM_PROCESSES="2",
                 PIGGYJAX_PROCESS_ID=str(i))
      procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(work)], env=env, cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=120) for p in procs]
  finally:
    for p in procs + [holder]:
      if p.poll() is None:
        p.kill()
    holder.wait()
  for p, (stdout, stderr) in zip(procs, outs):
    assert p.returncode == 0, stderr[-2000:]
  said = [[l for l in stdout.splitlines() if l.startswith(("refused", "locked"))]
          for stdout, _ in outs]  # gloo prints to stdout too
  assert said[0][0].startswith(f"refused: the workdir {work} is being written by another "
                               f"process: pid {holder.pid}"), said
  assert said[1] == [f"refused: process 0 could not lock the workdir {work} (see its log)"], said
