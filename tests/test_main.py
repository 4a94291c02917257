"""experiments/main.py as a user runs it: train, add a task, eval, apply; bad flags fail early."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import CONSTANT_RATE_FLAGS, ROOT

TINY = ["--config=experiments/configs/quickstart.py", "--config.model.preset=tiny",
        "--config.steps=3", "--config.steps_for.seg_voc=3", "--config.steps_for.colorize_coco=3",
        *CONSTANT_RATE_FLAGS,
        "--config.checkpoint_every=3", "--config.batch_size=4", "--config.eval_batches=1",
        "--config.data.quickstart_train_examples=16", "--config.data.quickstart_eval_examples=4"]


def main(*args, ok=True):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "experiments/main.py", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  if ok:
    assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


def test_train_add_eval_apply(tmp_path):
  work = tmp_path / "work"
  out = main("--task=seg_coco", f"--workdir={work}", *TINY).stdout
  assert "seg_coco (base) stored in" in out
  bank = work / "bank"
  out = main("--task=seg_voc", "--strategy=piggyback", f"--base_ckpt={bank}",
             f"--workdir={work}", *TINY).stdout
  assert "seg_voc (piggyback)" in out
  for task in ("seg_coco", "seg_voc"):
    out = main("--mode=eval", f"--task={task}", f"--base_ckpt={bank}", *TINY).stdout
    assert f"{task}: miou" in out
  photo = tmp_path / "photo.jpg"
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 255, (50, 70, 3), np.uint8)).save(photo)
  result = tmp_path / "out" / "seg.png"
  main("--mode=apply", "--task=seg_voc", f"--base_ckpt={bank}", f"--input={photo}",
       f"--output={result}", *TINY)
  with Image.open(result) as im:
    assert im.size == (70, 50) and im.mode == "RGB"


@pytest.mark.parametrize("args, message", [
    (["--task=nope"], "--task='nope' is not a known task"),
    (["--task=seg_voc", "--strategy=magic"], "--strategy='magic' is not known"),
    (["--task=seg_voc", "--base_ckpt=/no/such/bank"], "--base_ckpt=/no/such/bank does not exist"),
    (["--task=seg_voc", "--workdir=/proc/nope"], "--workdir=/proc/nope is not writable"),
    (["--mode=eval", "--task=seg_voc"], "--base_ckpt is required"),
])
def test_bad_flags_fail_before_training(args, message, tmp_path):
  if not any(a.startswith("--workdir") for a in args):
    args = args + [f"--workdir={tmp_path}"]
  proc = main(*args, *TINY, ok=False)
  assert proc.returncode == 2 and message in proc.stderr
  assert "step 1/" not in proc.stderr  # nothing trained


def test_apply_refuses_a_non_image_and_another_architecture(tmp_path):
  work = tmp_path / "work"
  main("--task=seg_coco", f"--workdir={work}", *TINY)
  bank = work / "bank"
  text = tmp_path / "notes.txt"
  text.write_text("not an image")
  proc = main("--mode=apply", "--task=seg_coco", f"--base_ckpt={bank}", f"--input={text}",
              f"--output={tmp_path / 'o.png'}", *TINY, ok=False)
  assert proc.returncode == 2 and "is not a readable image" in proc.stderr
  proc = main("--task=seg_voc", f"--base_ckpt={bank}", f"--workdir={work}", *TINY,
              "--config.model.preset=small", ok=False)
  assert proc.returncode == 2 and "was made for architecture" in proc.stderr
