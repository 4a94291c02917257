"""The task bank: round trips per strategy, sizes on disk, fingerprints, refusals."""
import json
import math

import jax
import numpy as np
import pytest
from flax import traverse_util

from piggyjax import masks, strategies
from piggyjax.bank import Bank, BankError, _sealed
from piggyjax.models import unet

CFG = unet.preset("tiny")
ARCH = {"widths": list(CFG.widths), "norm": CFG.norm}


def _variables(seed, task="a", channels=3):
  v = unet.init(CFG, ((task, channels),), seed, 16)
  return jax.tree.map(np.asarray, v)


@pytest.fixture
def bank(tmp_path):
  v = _variables(0)
  base = {"params": {"backbone": v["params"]["backbone"]}, "batch_stats": v["batch_stats"]}
  b = Bank.create(tmp_path / "bank", base, ARCH)
  b.add("a", "base", {"params": {"head_a": v["params"]["head_a"]}}, metadata={"metrics": {}})
  return b


def _eq(t1, t2):
  f1, f2 = traverse_util.flatten_dict(t1), traverse_util.flatten_dict(t2)
  assert f1.keys() == f2.keys()
  for k in f1:
    np.testing.assert_array_equal(np.asarray(f1[k]), np.asarray(f2[k]), err_msg=str(k))


def test_base_task_round_trip(bank):
  v = _variables(0)
  again = Bank.open(bank.root)
  _eq(again.load("a"), v)
  assert again.tasks() == ["a"]


def test_piggyback_mask_round_trip_and_size(bank):
  v = _variables(0)
  rng = np.random.default_rng(0)
  scores = jax.tree.map(lambda s: rng.uniform(0, 1e-2, s.shape).astype(np.float32),
                        masks.init_scores(v["params"]))
  mask = masks.binarize(scores)
  head = {"head_b": _variables(1, "b", 5)["params"]["head_b"]}
  meta = bank.add("b", "piggyback", {"params": head}, mask, {"metrics": {"x": 1.0}})
  loaded = Bank.open(bank.root).load("b")
  expect = masks.apply_binary_masks({"backbone": v["params"]["backbone"]}, mask)
  _eq(loaded["params"], {**expect, **head})
  n = masks.count(mask)
  raw = sum(math.ceil(np.size(m) / 8) for m in jax.tree.leaves(mask))
  # A random half-dense mask does not compress: every layer is stored as raw packed bits.
  assert meta["mask_bytes"] == raw and raw <= math.ceil(n / 8) + len(jax.tree.leaves(mask))
  assert (bank.root / "tasks" / "b" / "mask.bin").stat().st_size == raw
  assert abs(meta["bits_per_weight"] - 8 * raw / n) < 1e-9
  assert 0.3 < meta["density"]["total"] < 0.7


def test_sparse_mask_is_entropy_coded(bank):
  v = _variables(0)
  rng = np.random.default_rng(1)
  mask = jax.tree.map(lambda s: rng.random(s.shape) < 0.03, masks.init_scores(v["params"]))
  meta = bank.add("c", "piggyback", {"params": {}}, mask)
  assert any(e["codec"] in ("zstd", "rice") for e in meta["mask"])
  assert meta["bits_per_weight"] < 1.0
  _, back, _ = Bank.open(bank.root).load_payload("c")
  _eq(back, mask)


def test_finetune_uses_latest_backbone(bank):
  v1, v2 = _variables(1, "b"), _variables(2, "c")
  bank.add("b", "finetune", {"params": v1["params"], "batch_stats": v1["batch_stats"]})
  _eq(bank.load("b")["params"]["backbone"], v1["params"]["backbone"])
  bank.add("c", "finetune", {"params": v2["params"], "batch_stats": v2["batch_stats"]})
  b = bank.load("b")
  _eq(b["params"]["backbone"], v2["params"]["backbone"])  # fine-tuning forgets
  _eq(b["params"]["head_b"], v1["params"]["head_b"])


def test_decoder_keeps_base_encoder(bank):
  v0, v1 = _variables(0), _variables(1, "b")
  dec, _ = strategies.split(v1["params"], lambda p: p[0] != "backbone" or
                            str(p[1]).startswith(("up_", "dec_")))
  bank.add("b", "decoder", {"params": dec})
  got = bank.load("b")["params"]["backbone"]
  _eq(got["enc_0"], v0["params"]["backbone"]["enc_0"])
  _eq(got["dec_0"], v1["params"]["backbone"]["dec_0"])


def test_sizes_are_bytes_on_disk(bank):
  s = bank.sizes()
  on_disk = sum(p.stat().st_size for p in bank.root.rglob("*") if p.is_file()
                and "bank.json" not in p.name)
  assert s["total"] == s["base"] + sum(s["tasks"].values()) == on_disk
  assert s["base"] >= 4 * unet.parameter_count(_variables(0)["params"]["backbone"])


def test_refusals(bank, tmp_path):
  with pytest.raises(BankError, match="no bank at"):
    Bank.open(tmp_path / "nothing")
  with pytest.raises(BankError, match="has no task 'zz'"):
    bank.load("zz")
  with pytest.raises(BankError, match="architecture"):
    bank.check_arch({"widths": [8, 16], "norm": "batch"})
  with pytest.raises(BankError, match="already has task 'a'"):
    bank.add("a", "base", {"params": {}})
  with pytest.raises(BankError, match="not a plain name"):
    bank.add("../evil", "base", {"params": {}})
  # A task from another base is refused.
  other = Bank.create(tmp_path / "other", {"params": {"backbone": _variables(5)["params"]
                                                      ["backbone"]}}, ARCH)
  meta_path = bank.root / "tasks" / "a" / "meta.json"
  meta = json.loads(meta_path.read_text())
  meta["base_fingerprint"] = other.fingerprint
  meta_path.write_text(json.dumps(_sealed(meta)))  # resealed: a consistent file, wrong base
  with pytest.raises(BankError, match="trained on base"):
    Bank.open(bank.root).load("a")


def test_corrupt_task_file_is_named(bank):
  path = bank.root / "tasks" / "a" / "arrays.bin"
  data = bytearray(path.read_bytes())
  data[3] ^= 0x10
  path.write_bytes(bytes(data))
  with pytest.raises(BankError, match=r"task 'a'.*arrays.bin.*checksum"):
    Bank.open(bank.root).load("a")


def test_finetune_changes_the_first_task_too(bank):
  v1 = _variables(1, "b")
  bank.add("b", "finetune", {"params": v1["params"], "batch_stats": v1["batch_stats"]})
  a = bank.load("a")
  _eq(a["params"]["backbone"], v1["params"]["backbone"])
  _eq(a["params"]["head_a"], _variables(0)["params"]["head_a"])
