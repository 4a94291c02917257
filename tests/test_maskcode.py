"""Golomb-Rice mask coding: exact round trips, near H(density), damaged input refused."""
import math

import jax
import numpy as np
import pytest

from piggyjax import maskcode, masks
from piggyjax.bench import bank as bench_bank
from piggyjax.bank import Bank, BankError
from piggyjax.models import unet


@pytest.mark.parametrize("n,density", [(0, 1.0), (1, 1.0), (1, 0.0), (7, 0.5), (100, 0.5),
                                       (432, 0.98), (9216, 0.997), (10000, 0.02),
                                       (10000, 1.0), (10000, 0.0), (300_000, 0.9)])
def test_round_trip(n, density):
  bits = np.random.default_rng(n).random(n) < density
  data, fields = maskcode.encode(bits)
  np.testing.assert_array_equal(maskcode.decode(data, n, **fields), bits)


def test_near_the_entropy_bound():
  for density in (0.9, 0.97, 0.995, 0.05):
    bits = np.random.default_rng(1).random(200_000) < density
    data, _ = maskcode.encode(bits)
    h = bench_bank.entropy_bits(bits.mean())
    assert h <= 8 * len(data) / bits.size <= 1.04 * h + 1e-3


@pytest.mark.parametrize("change", [{"count": 5}, {"qbits": 3}, {"k": 99}, {"minority": 2},
                                    {"count": -1}, {"k": 1.5}, {"qbits": True}])
def test_damaged_fields_are_refused(change):
  bits = np.random.default_rng(0).random(5000) < 0.95
  data, fields = maskcode.encode(bits)
  with pytest.raises(ValueError):
    maskcode.decode(data, bits.size, **{**fields, **change})
  with pytest.raises(ValueError):
    maskcode.decode(data[:-1], bits.size, **fields)


def test_bank_stores_skewed_masks_as_rice(tmp_path):
  cfg = unet.preset("tiny")
  v = jax.tree.map(np.asarray, unet.init(cfg, (("a", 3),), 0, 16))
  base = {"params": {"backbone": v["params"]["backbone"]}, "batch_stats": v["batch_stats"]}
  bank = Bank.create(tmp_path / "bank", base, {"widths": list(cfg.widths), "norm": cfg.norm})
  rng = np.random.default_rng(2)
  mask = jax.tree.map(lambda s: rng.random(s.shape) < 0.97, masks.init_scores(base["params"]))
  meta = bank.add("t", "piggyback", {"params": {}}, mask)
  assert {e["codec"] for e in meta["mask"]} >= {"rice"}
  n = masks.count(mask)
  assert meta["bits_per_weight"] < 0.5 and meta["mask_bytes"] < math.ceil(n / 8) / 2
  _, back, _ = Bank.open(bank.root).load_payload("t")
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(mask)):
    np.testing.assert_array_equal(a, b)
