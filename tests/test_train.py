"""Training under every strategy: no forgetting where promised, resume, mask size, sharding."""
import json
import math
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, make_tiny_config
from piggyjax import data, train
from piggyjax.bank import Bank

A, B = "seg_coco", "seg_voc"


@pytest.fixture(scope="module")
def base_bank(tmp_path_factory):
  """A bank holding task A, trained once for this module."""
  root = tmp_path_factory.mktemp("base")
  train.train_task(make_tiny_config(), A, "base", root / "run", bank_path=root / "bank")
  return root / "bank"


def _outputs(bank_path, task, config):
  ev = train.evaluator(task, train.model_config(config))
  batch = next(iter(data.batches(data.make_source(task, "eval", config), batch_size=4,
                                 image_size=config.image_size, train=False, seed=0)))
  batch = {k: v for k, v in batch.items() if k != "id"}
  return np.asarray(ev.predict(ev.put(Bank.open(bank_path).load(task)), ev.put(batch)))


@pytest.mark.parametrize("strategy", ["piggyback", "piggyback/per_task", "decoder", "scratch",
                                      "finetune"])
def test_old_task_outputs_after_learning_a_new_one(base_bank, tmp_path, strategy):
  strategy, _, norm = strategy.partition("/")
  config = make_tiny_config(**{"mask.norm": norm or "frozen"})
  bank_path = tmp_path / "bank"
  shutil.copytree(base_bank, bank_path)
  before = _outputs(bank_path, A, config)
  meta = train.train_task(config, B, strategy, tmp_path / "run", bank=Bank.open(bank_path))
  assert meta["strategy"] == strategy and Bank.open(bank_path).tasks() == [A, B]
  after = _outputs(bank_path, A, config)
  if strategy == "finetune":
    assert not np.array_equal(before, after)  # one shared network: it forgets
  else:
    assert before.tobytes() == after.tobytes()
  assert np.isfinite(_outputs(bank_path, B, config)).all()
  arrays, _, _ = Bank.open(bank_path).load_payload(B)
  if strategy == "piggyback":  # per-task norms are stored with the task, frozen ones are not
    assert ("batch_stats" in arrays) == (norm == "per_task")


def test_piggyback_mask_size_on_disk_and_periodic_eval(base_bank, tmp_path):
  config = make_tiny_config(eval_every=2)
  bank_path = tmp_path / "bank"
  shutil.copytree(base_bank, bank_path)
  meta = train.train_task(config, B, "piggyback", tmp_path / "run", bank=Bank.open(bank_path))
  n, layers = meta["masked_weights"], len(meta["mask"])
  on_disk = (bank_path / "tasks" / B / "mask.bin").stat().st_size
  # Stated overhead: at most one padding byte per layer (each layer is packed on its own);
  # zstd only ever replaces a layer by something smaller.
  assert on_disk == meta["mask_bytes"] <= math.ceil(n / 8) + layers
  assert n == sum(int(np.prod(e["shape"])) for e in meta["mask"])
  assert 0 < meta["density"]["total"] <= 1
  rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "eval/miou" in r] == [2, 4]


def test_resumed_run_equals_uninterrupted(base_bank, tmp_path):
  config = make_tiny_config(steps=6, checkpoint_every=2)
  full, split = tmp_path / "full", tmp_path / "split"
  for d in (full, split):
    shutil.copytree(base_bank, d / "bank")
  train.train_task(config, B, "piggyback", full / "run", bank=Bank.open(full / "bank"))
  stopped = make_tiny_config(steps=6, checkpoint_every=2, stop_after=3)
  with pytest.raises(train.Interrupted, match="rerun"):
    train.train_task(stopped, B, "piggyback", split / "run", bank=Bank.open(split / "bank"))
  assert B not in Bank.open(split / "bank").tasks()
  train.train_task(config, B, "piggyback", split / "run", bank=Bank.open(split / "bank"))
  a = Bank.open(full / "bank").load_payload(B)
  b = Bank.open(split / "bank").load_payload(B)
  for x, y in zip(jax.tree.leaves(a[:2]), jax.tree.leaves(b[:2])):
    np.testing.assert_array_equal(x, y)
  rows = [json.loads(line) for line in (split / "run" / "metrics.jsonl").read_text().split("\n")
          if line]
  assert max(r["step"] for r in rows) == 6


SHARDED_LOSSES = r"""
import json, sys
import jax, numpy as np
sys.path.insert(0, sys.argv[1])
from conftest import make_tiny_config
from piggyjax import data, sharding, train
from piggyjax.models import unet
config = make_tiny_config(batch_size=8)
v = jax.tree.map(np.asarray, unet.init(train.model_config(config), (("seg_voc", 21),), 3, 32))
runner = train.Runner(config, "seg_voc", "piggyback", v)
state = runner.put(runner.init_state)
fixed = runner.put({"params": runner.frozen, "stats": runner.base_stats})
consts = runner.put({})
it = data.batches(data.make_source("seg_voc", "train", config), batch_size=8, image_size=32,
                  train=True, seed=1, shard_index=0, shard_count=1)
losses = []
for _ in range(3):
  state, m = runner.train_step(state, fixed, consts, sharding.put_batch(next(it), runner.mesh))
  losses.append(float(m["loss"]))
print(json.dumps({"devices": jax.device_count(), "losses": losses}))
"""


def test_one_and_eight_devices_give_the_same_loss():
  out = {}
  for n in (1, 8):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED_LOSSES, str(ROOT / "tests")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["devices"] == n
    out[n] = res["losses"]
  np.testing.assert_allclose(out[8], out[1], rtol=1e-5)
  assert out[1][0] != out[1][-1]  # the steps really trained
