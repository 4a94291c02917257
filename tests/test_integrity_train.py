"""Training survives a kill -9 and refuses to go on from a NaN.

Tiny U-Net, 32x32, the offline quickstart data cut down to a few dozen images.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CONSTANT_RATE_FLAGS
from experiments.configs import quickstart
from piggyjax import train
from piggyjax.bank import Bank

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--config.data.quickstart_train_examples=32", "--config.data.quickstart_eval_examples=8",
         "--config.eval_batches=1"]


def rows(run_dir):
  return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_killed_run_resumes_and_a_nan_names_the_last_good_checkpoint(tmp_path):
  """Three runs on one workdir: main.py killed; resumed, then NaN; main.py resumed to the end."""
  workdir = tmp_path / "w"
  cmd = [sys.executable, str(ROOT / "experiments" / "main.py"), "--task=seg_coco",
         f"--workdir={workdir}", "--config.steps=48", "--config.checkpoint_every=4",
         *CONSTANT_RATE_FLAGS, *SMALL]
  # Later runs find the first one's compiled steps here and start faster.
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  run_dir = workdir / "base" / "seg_coco"
  ckpts = run_dir / "checkpoints"
  saved = lambda: sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
  # A checkpoint is resumed from once its sha256 manifest is written (piggyjax/ckpt_verify.py).
  sealed = lambda: [s for s in saved() if (run_dir / "checkpoint_sha256" / f"{s}.json").exists()]

  # 1. kill -9 once a step-8 checkpoint is complete: somewhere in steps 9..48 or in a save.
  first = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 240
  while not (run_dir / "checkpoint_sha256" / "8.json").exists():
    assert first.poll() is None, first.stdout.read()[-3000:]
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.02)
  first.send_signal(signal.SIGKILL)
  first.wait()
  last = sealed()[-1]
  assert first.returncode == -signal.SIGKILL and 8 <= last < 48, saved()
  assert not (workdir / "bank").exists()
  # As if the kill had landed inside a save: a half-written later checkpoint.
  torn = ckpts / f"{last + 4}.orbax-checkpoint-tmp-1234"
  torn.mkdir(exist_ok=True)
  (torn / "_CHECKPOINT_METADATA").write_text('{"truncat')

  # 2. rerun (here, in-process: one interpreter start less) with a learning rate that blows up:
  # Adam moves every weight by about lr in its first step, so the loss from step last+1's
  # weights (step last+2's loss) is not finite.
  config = quickstart.get_config()
  config.optim.schedule, config.bn_recalibrate = "constant", 0  # CONSTANT_RATE_FLAGS, as above
  config.steps, config.checkpoint_every, config.eval_batches, config.optim.lr = 48, 1, 1, 1e30
  config.data.quickstart_train_examples, config.data.quickstart_eval_examples = 32, 8
  with pytest.raises(FloatingPointError) as error:
    train.train_task(config, "seg_coco", "base", run_dir, bank_path=workdir / "bank")
  assert re.fullmatch(
      rf"loss became (nan|inf) at step {last + 2}; the last good checkpoint is step {last} in "
      rf"{ckpts}; lower the learning rate and rerun .*", str(error.value)), error.value
  assert saved()[-1] == last  # step last+1 was saved, then removed: its next loss was not finite
  assert [r["step"] for r in rows(run_dir) if "checkpoint/resumed_from_step" in r] == [last]

  # 3. rerun as at first: it continues from that checkpoint, not from scratch, to the end.
  third = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
  assert third.returncode == 0, third.stderr[-3000:]
  assert f"resumed from checkpoint step {last}" in third.stderr
  marks = [r["step"] for r in rows(run_dir) if "checkpoint/resumed_from_step" in r]
  assert marks == [last, last]
  bank = Bank.open(workdir / "bank")
  assert bank.tasks() == ["seg_coco"] and bank.meta("seg_coco")["steps"] == 48
  assert saved()[-1] == 48
