"""The benchmark end to end on the tiny U-Net: every figure present and sane (never a timing
threshold: numbers on a shared machine are reported, not asserted)."""
import json
import math

import jax
import numpy as np
import pytest

from experiments.configs import benchmark as bench_config
from piggyjax import masks
from piggyjax.bench import bank as bench_bank
from piggyjax.bench import common, suite
from piggyjax.bench import report as bench_report
from piggyjax.bank import Bank
from piggyjax.models import unet


def _positive_timing(row):
  assert row["median_ms"] > 0 and row["min_ms"] > 0 and row["min_ms"] <= row["median_ms"]
  assert all(t > 0 for t in row["times_ms"])


@pytest.fixture(scope="module")
def tiny_bank(tmp_path_factory):
  """A bank with one piggyback task whose mask is mostly ones, like a short Piggyback run."""
  cfg = unet.preset("tiny")
  v = jax.tree.map(np.asarray, unet.init(cfg, (("seg_voc", 21),), 0, 16))
  base = {"params": {"backbone": v["params"]["backbone"]}, "batch_stats": v["batch_stats"]}
  bank = Bank.create(tmp_path_factory.mktemp("b") / "bank", base,
                     {"widths": list(cfg.widths), "norm": cfg.norm})
  bank.add("seg_coco", "base", {"params": {"head_seg_voc": v["params"]["head_seg_voc"]}})
  mask = common.random_masks(base["params"], 0.97, seed=3)
  bank.add("seg_voc", "piggyback", {"params": {"head_seg_voc": v["params"]["head_seg_voc"]}},
           mask, {"metrics": {}})
  return bank.root


@pytest.fixture(scope="module")
def result(tiny_bank, tmp_path_factory):
  c = bench_config.get_config()
  c.model.preset, c.image_size, c.batch_size = "tiny", 32, 4
  c.bench.update({"steps": 2, "warmup": 1, "inference_steps": 2, "strategies": "finetune,piggyback",
                  "switch_preset": "tiny", "switch_image_size": 32, "switch_repeats": 2,
                  "matmul_size": 128, "input_sources": "quickstart,voc", "input_image_size": 32,
                  "input_batches": 2, "input_encodings": "raw", "input_data_dir": "/nonexistent",
                  "input_workers": 1, "input_device_augment": "quickstart", "input_rounds": 1})
  r = suite.run(c, peer=False, bank=str(tiny_bank), workdir=tmp_path_factory.mktemp("w"))
  return json.loads(json.dumps(r))   # what the JSON file holds


def test_train_step_figures(result):
  ts = result["train_step"]
  parts = {f"conv_{p}{k}" for p in ("forward", "input_grad", "weight_grad")
           for k in ("", "_ynnpack")}
  assert set(ts["strategies"]) == {"finetune", "piggyback", "matmul_peak", "forward",
                                   "convolutions"} | parts
  for name, row in ts["strategies"].items():
    if name not in ("finetune", "piggyback"):
      continue
    _positive_timing(row)
    assert len(row["times_ms"]) == 2
    assert row["first_call_s"] > 0 and row["compile_s"] >= 0
    assert row["compiled_programs"] == 1          # no recompilation inside the timed loop
    assert math.isfinite(row["loss_first"]) and math.isfinite(row["loss_last"])
  r = ts["ratios"]["piggyback/finetune"]
  assert all(v > 0 for v in r.values())
  assert ts["masked_weights"] == masks.count(masks.init_scores(
      unet.init(unet.preset("tiny"), (("seg_voc", 21),), 0, 16)["params"]))


def test_inference_and_switch_figures(result):
  inf = result["inference"]
  for k in ("on_the_fly", "materialised"):
    _positive_timing(inf[k])
    assert inf[k]["images_per_s"] > 0
  sw = result["task_switch"]
  assert sw["preset"] == "tiny" and sw["backbone_params"] > 0
  for k in ("from_disk_to_first_output", "in_memory_to_weights_ready", "in_memory_to_first_output"):
    _positive_timing(sw[k])
  assert set(sw["from_disk_parts"]) == {"load_payload", "assemble", "first_output"}
  sizes = sw["bytes_per_task"]
  assert set(sizes) == {"scratch", "finetune", "decoder", "piggyback"}
  # Piggyback stores a mask and a head: far less than a whole network.
  assert 0 < sizes["piggyback"]["bytes"] < sizes["decoder"]["bytes"] < sizes["scratch"]["bytes"]
  assert 0 < sizes["piggyback"]["bits_per_weight"] <= 1.01
  m = sw["masks"]["task_a"]
  assert 0 < m["entropy_bound"] <= 1 and 0 < m["bits_per_weight"] <= m["packed_bits_per_weight"]


def test_storage_figures(result):
  st = result["storage"]
  row = st["tasks"]["seg_voc"]
  assert row["strategy"] == "piggyback" and row["bytes_on_disk"] > 0
  assert 0 < row["bits_per_weight"] < 1           # a 97%-dense mask compresses below a bit
  assert 0 <= row["entropy_bound"] <= 1
  assert 0.9 < row["density"] < 1
  assert sum(ly["weights"] for ly in row["layers"]) == row["masked_weights"]
  for ly in row["layers"]:
    assert ly["codec"] in ("zstd", "packbits", "rice") and ly["bits_per_weight"] >= 0
    assert 0 <= ly["entropy_bound"] <= 1
  assert "bits_per_weight" not in st["tasks"]["seg_coco"]


def test_machine_memory_and_markdown(result):
  assert result["peak_host_memory_mb"] > 0
  assert result["machine"]["cpu_count"] >= 1 and result["machine"]["jax"]
  md = bench_report.markdown(result)
  for heading in ("## Train step", "## Inference", "## Task switch", "## Mask storage"):
    assert heading in md
  assert "piggyback/finetune" in md
  assert "| quickstart | prepared_raw | 1 |" in md   # the worker-process table


def test_entropy_bits():
  assert bench_bank.entropy_bits(0.5) == pytest.approx(1.0)
  assert bench_bank.entropy_bits(0.0) == 0 and bench_bank.entropy_bits(1.0) == 0
  assert bench_bank.entropy_bits(0.9) == pytest.approx(0.4690, abs=1e-4)


def test_settings_reject_unknown_fields():
  c = bench_config.get_config()
  c.bench.steps = 3
  assert common.settings(c)["steps"] == 3
  c.bench.nonsense = 1
  with pytest.raises(ValueError, match="nonsense"):
    common.settings(c)


def test_flops_against_matmul_peak(result):
  vp = result["train_step"]["vs_matmul_peak"]
  assert vp["matmul_size"] == 128
  for name in ("finetune", "piggyback", "forward"):
    row = vp[name]
    assert row["gflop_per_step"] > 0 and row["matmul_peak_gflops_median"] > 0
    assert row["fraction_of_peak_median_paired"] > 0 and row["floor_ms_at_peak"] > 0
    times = result["train_step"]["strategies"][name]["times_ms"]
    assert row["achieved_gflops_median"] == pytest.approx(
        row["gflop_per_step"] / (np.median(times) / 1e3), rel=1e-3)
  # a forward pass is about a third of a step's work
  assert vp["forward"]["gflop_per_step"] < 0.6 * vp["piggyback"]["gflop_per_step"]
  # The convolutions alone are most of a step's work but not all of it (up-convolutions, heads,
  # losses); their three parts add up to them, and each part is the same work on either kernel.
  g = {k: v["gflop_per_step"] for k, v in vp.items() if isinstance(v, dict)}
  assert 0.5 * g["piggyback"] < g["convolutions"] < g["piggyback"]
  parts = [g[f"conv_{p}"] for p in ("forward", "input_grad", "weight_grad")]
  assert sum(parts) == pytest.approx(g["convolutions"], rel=1e-6)
  for p in ("forward", "input_grad", "weight_grad"):
    assert g[f"conv_{p}_ynnpack"] == pytest.approx(g[f"conv_{p}"], rel=1e-6)
  # the first layer's input gradient (with respect to the image) is not computed
  assert g["conv_input_grad"] < g["conv_forward"]


def test_conv_layers_are_the_backbones_3x3_convolutions():
  from piggyjax.bench import flops
  c = bench_config.get_config()
  c.model.preset, c.image_size = "tiny", 32
  v = unet.init(unet.preset("tiny"), (("seg_voc", 21),), 0, 32)
  layers = flops.conv_layers(c, v)
  widths = unet.preset("tiny").widths
  depth = unet.preset("tiny").depth
  assert len(layers) == 2 * (2 * depth + 1)     # two per encoder level, middle, decoder level
  assert [first for *_, first in layers].count(True) == 1
  assert (32, (3, 3, 3, widths[0]), True) in layers
  assert (32 // 2**depth, (3, 3, widths[depth], widths[depth]), False) in layers


def test_input_pipeline_figures(result):
  ip = result["input_pipeline"]
  assert ip["image_size"] == 32
  q = ip["sources"]["quickstart"]
  for form in ("raw", "prepared_raw"):
    row = q[form]
    assert row["images"] == 2 * 8 and row["images_per_cpu_s"] > 0
    assert row["stages"]["decode_ms"] > 0 and row["stages"]["resize_crop_flip_ms"] > 0
    assert row["images_per_s_at_cores"] == pytest.approx(16 * row["images_per_cpu_s"])
  assert q["prepared_raw"]["bytes_per_image"] > 0 and q["prepared_raw"]["speedup_per_core"] > 0
  for form in ("raw", "prepared_raw"):   # the same read by a grain worker process
    w = q[form]["worker_processes"]
    assert w["workers"] == 1 and w["images"] == 2 * 8 and w["per_core_vs_threads"] > 0
  assert "/nonexistent" in ip["sources"]["voc"]["error"]   # no data: said, not a crash


def test_input_device_augment_rows(result):
  # config.bench.input_device_augment: the host share of config.data.device_augment against
  # today's views, one row per round, in the suite's JSON (issue 14's VOC target lives here).
  r = result["input_pipeline"]["device_augment"]["quickstart"]
  assert len(r["rounds"]) == 1 and r["median_device_prepared_images_per_cpu_s"] > 0
  assert r["rounds"][0]["vs_host_raw"]["host_raw"] == 1.0
  assert r["rounds"][0]["device_views"]["cpu_ms_per_batch"] > 0
