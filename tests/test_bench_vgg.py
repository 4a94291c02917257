"""The vgg_step benchmark section (piggyjax/bench/vgg.py) on a tiny size: its figures, and the
checks that make the PyTorch peer the same network. The peer itself needs torch, which the test
extra leaves out (~800 MB); its half is run by hand (docs/BENCHMARKS.md has the numbers), while
everything it relies on here — the weight layout, the logit and mask-count comparison — is
tested without it."""
import json

import jax
import numpy as np
import pytest

from experiments.configs import benchmark as bench_config
from piggyjax import models
from piggyjax.bench import common, suite, vgg
from piggyjax.bench import report as bench_report
from piggyjax.models import vgg as vgg_model

# VGG-16's 13 conv kernels (biases are not masked): what both nets must mask.
KERNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
           (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
MASKED = sum(9 * i * o for i, o in KERNELS)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
  c = bench_config.get_config()
  c.bench.update({"sections": "vgg_step", "vgg_image_size": 32, "vgg_batch_size": 2,
                  "vgg_classes": 5, "vgg_steps": 2, "warmup": 1})
  r = suite.run(c, peer=False, workdir=tmp_path_factory.mktemp("w"))
  return json.loads(json.dumps(r))   # what the JSON file holds


def test_vgg_step_figures(result):
  v = result["vgg_step"]
  assert (v["image_size"], v["batch_size"], v["classes"]) == (32, 2, 5)
  assert MASKED == 14_710_464 and v["masked_weights"] == MASKED
  assert set(v["strategies"]) == {"piggyback", "finetune"}
  for row in v["strategies"].values():
    assert len(row["times_ms"]) == 2 and 0 < row["min_ms"] <= row["median_ms"]
    assert row["images_per_s"] == pytest.approx(2 / (row["median_ms"] / 1e3))
    assert row["gflop_per_step"] > 0
    assert row["achieved_gflops"] == pytest.approx(row["gflop_per_step"] / (row["median_ms"] / 1e3))
    assert row["compiled_programs"] == 1     # no recompilation inside the timed loop
    assert np.isfinite(row["loss_first"]) and np.isfinite(row["loss_last"])
  # VGG-16's convolutions at 32 px: 0.63 GFLOP an image forward; a step adds the input and
  # weight gradients (none for the image), so a batch of 2 costs ~2.6-3.8 GFLOP.
  assert 2.5 < v["strategies"]["piggyback"]["gflop_per_step"] < 4.0
  assert set(v["ratios"]) == {"piggyback/finetune"}
  assert "peer" not in v and "self_check" not in v   # asked for with peer=True only
  md = bench_report.markdown(result)
  assert "## VGG-16 Piggyback step (32 px, batch 2, 5 classes, 14,710,464 masked weights)" in md
  assert "| piggyback |" in md and "| piggyback/finetune |" in md and "No peer" in md


def test_torch_layout_computes_the_same_convolutions():
  cfg = models.config_of({"preset": "vgg16"})
  params = jax.tree.map(np.asarray, models.init(cfg, ((vgg.TASK, 7),), 0, 32))["params"]
  tl = vgg.torch_layout(params)
  assert len(tl["convs"]) == vgg_model.NUM_CONVS
  assert [w.shape for w, _ in tl["convs"]] == [(o, i, 3, 3) for i, o in KERNELS]
  x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
  for i in (0, 1):   # the peer's NCHW/OIHW conv of the converted kernel is flax's NHWC/HWIO one
    k = params["backbone"][f"Conv_{i}"]["kernel"]
    ours = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    theirs = jax.lax.conv_general_dilated(x.transpose(0, 3, 1, 2), tl["convs"][i][0], (1, 1),
                                          "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"))
    np.testing.assert_allclose(np.asarray(theirs).transpose(0, 2, 3, 1), ours, rtol=1e-5,
                               atol=1e-5)
    x = np.asarray(ours)
  w, b = tl["linear"]
  head = params[f"head_{vgg.TASK}"]
  feats = np.random.default_rng(1).standard_normal((3, 512)).astype(np.float32)
  np.testing.assert_allclose(feats @ w.T + b, feats @ head["kernel"][0, 0] + head["bias"],
                             rtol=1e-5, atol=1e-5)


def test_compare_accepts_the_same_function_only():
  j = np.random.default_rng(0).standard_normal((4, 10)) * 3
  ok = vgg.compare(j * (1 + 1e-6), j, MASKED, MASKED)
  assert ok["logits"] == "match" and ok["max_abs_logit_diff"] < 1e-4
  with pytest.raises(RuntimeError, match="masks 14,710,400 weights, piggyjax 14,710,464"):
    vgg.compare(j, j, MASKED - 64, MASKED)
  off = j.copy()
  off[1, 2] += 1e-2                           # one logit off: not the same network
  with pytest.raises(RuntimeError, match="differ"):
    vgg.compare(off, j, MASKED, MASKED)
  with pytest.raises(RuntimeError, match="shape"):
    vgg.compare(j[:2], j, MASKED, MASKED)
  with pytest.raises(RuntimeError, match="differ"):
    vgg.compare(np.full_like(j, np.nan), j, MASKED, MASKED)


def test_bench_config_is_piggybacks_recipe():
  c = bench_config.get_config()
  s = common.settings(c)
  vc = vgg.bench_config(c, {**s, "vgg_image_size": 48, "vgg_batch_size": 3})
  assert (vc.model.preset, vc.image_size, vc.batch_size) == ("vgg16", 48, 3)
  assert vc.optim.lr_scores == vc.optim.lr_head == 1e-4 and vc.optim.schedule == "constant"
  assert (vc.mask.init, vc.mask.threshold) == (1e-2, 5e-3)
  assert c.model.preset == "small" and c.image_size == 64    # the caller's config untouched


def test_vgg_strategies_must_include_piggyback():
  c = bench_config.get_config()
  with pytest.raises(ValueError, match="must hold piggyback"):
    vgg.vgg_step(c, {**common.settings(c), "vgg_strategies": "finetune"})
