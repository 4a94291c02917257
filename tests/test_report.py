"""Tables and figures from a hand-made results dict whose forgetting numbers are known."""
import copy
import csv
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from piggyjax import report

TASKS = ["seg_voc", "colorize_coco", "style_starry"]
PRIMARY = {"seg_voc": {"metric": "miou", "higher_is_better": True, "label": "mIoU %"},
           "colorize_coco": {"metric": "mse", "higher_is_better": False, "label": "MSE"},
           "style_starry": {"metric": "total_loss", "higher_is_better": False, "label": "loss"}}


def _strategy(diag, later, total_bytes):
  """diag[i]: task i right after training; later[(j, i)]: task i after task j, if it changed."""
  R = [[None] * 3 for _ in range(3)]
  for j in range(3):
    for i in range(j + 1):
      R[j][i] = dict(later.get((j, i), diag[i]))
  rng = np.random.default_rng(int(diag[0]["miou"] * 10))
  return {"after_training": {t: dict(diag[i]) for i, t in enumerate(TASKS)}, "matrix": R,
          "sizes": {"base": total_bytes // 2, "tasks": {t: 1000 for t in TASKS},
                    "total": total_bytes},
          "curves": {t: [[s, float(10 * np.exp(-s / 20) + rng.random())] for s in range(0, 100, 5)]
                     for t in TASKS}}


def _diag(miou, mse, loss):
  return [{"miou": miou, "pixel_acc": 80.0}, {"mse": mse, "ssim": 0.91},
          {"ssim": 0.5, "total_loss": loss, "content_loss": 1234.0}]


@pytest.fixture
def results():
  fine = _strategy(_diag(60.0, 250.0, 5e5),
                   {(1, 0): {"miou": 40.0}, (2, 0): {"miou": 30.0},
                    (2, 1): {"mse": 300.0, "ssim": 0.8}}, 282_000_000)
  # Decoder gets *better* at colorization later (lower MSE): a positive BWT term.
  dec = _strategy(_diag(50.0, 250.0, 4e5), {(2, 1): {"mse": 240.0, "ssim": 0.91}}, 138_400_000)
  pig = _strategy(_diag(61.4, 242.5, 3e5), {}, 63_600_000)
  pig["density"] = {t: {"backbone/dec_0/Conv_0/kernel": 0.6 - 0.1 * k,
                        "backbone/enc_0/Conv_0/kernel": 0.9 - 0.1 * k,
                        "backbone/mid/Conv_0/kernel": 0.7, "backbone/up_0/kernel": 0.5,
                        "total": 0.66} for k, t in enumerate(TASKS[1:])}
  scratch = _strategy(_diag(58.6, 244.0, float("nan")), {}, 282_000_000)
  # Deliberately out of the table's order: columns must still come out scratch..piggyback.
  return {"tasks": TASKS, "primary": PRIMARY, "machine": "test box", "elapsed_s": 125.0,
          "config": {"steps": 3},
          "strategies": {"piggyback": pig, "finetune": fine, "scratch": scratch, "decoder": dec}}


def test_forgetting_numbers(results):
  F = {n: s["forgetting"] for n, s in report.summarize(results)["strategies"].items()}
  assert F["finetune"]["k_after_k1"] == {"seg_voc": {"miou": 40.0},
                                         "colorize_coco": {"mse": 300.0, "ssim": 0.8}}
  assert F["finetune"]["average_final"] == pytest.approx((30.0 + 300.0 + 5e5) / 3)
  # (30 - 60) on mIoU, -(300 - 250) on MSE: both forgetting, both negative.
  assert F["finetune"]["bwt"] == pytest.approx(-40.0)
  # MSE fell 250 -> 240 (better) while mIoU held: +10 / 2.
  assert F["decoder"]["bwt"] == pytest.approx(5.0)
  assert F["piggyback"]["bwt"] == 0.0
  assert F["piggyback"]["k_after_k1"]["seg_voc"]["miou"] == 61.4
  # scratch's last task is NaN: the mean skips it rather than turning NaN.
  assert F["scratch"]["average_final"] == pytest.approx((58.6 + 244.0) / 2)


def test_summarize_skips_strategy_without_matrix(results):
  del results["strategies"]["scratch"]["matrix"]
  out = report.summarize(results)
  assert "forgetting" not in out["strategies"]["scratch"]
  assert "forgetting" in out["strategies"]["decoder"]


def _md_table(text):
  lines = [l for l in text.split("\n## ")[0].splitlines() if l.startswith("|")]
  return [[c.strip() for c in l.strip("|").split("|")] for l in lines if "---" not in l]


def test_markdown_table_layout_and_values(results, tmp_path):
  paths = report.write_tables(results, str(tmp_path))
  md = open(paths["md"]).read()
  rows = _md_table(md)
  assert rows[0] == ["Task / metric", "scratch", "fine-tune", "decoder", "piggyback"]
  by_label = {r[0]: r[1:] for r in rows[1:]}
  assert by_label["VOC mIoU (%)"] == ["58.6", "60.0", "50.0", "61.4"]
  assert by_label["Colorization MSE"] == ["244.0", "250.0", "250.0", "242.5"]
  assert by_label["Colorization SSIM"] == ["0.910"] * 4
  assert by_label["Starry Night total loss"] == ["n/a", "5e+05", "4e+05", "3e+05"]
  assert by_label["Model size for 3 tasks (MB)"] == [report.fmt(b / 1e6) for b in
                                                      (282e6, 282e6, 138.4e6, 63.6e6)]
  assert by_label["Model size for 3 tasks (MB)"] == ["282.0", "282.0", "138.4", "63.6"]
  assert by_label["Task 1 (VOC) after Task 2, mIoU (%)"] == ["58.6", "40.0", "50.0", "61.4"]
  assert by_label["Task 2 (Colorization) after Task 3, MSE"] == ["244.0", "300.0", "240.0",
                                                                   "242.5"]
  assert by_label["BWT, primary metric (< 0 = forgetting)"] == ["0", "-40.0", "5.00", "0"]
  # Metric rows in the paper's order, then size, then the forgetting rows.
  labels = [r[0] for r in rows[1:]]
  assert labels.index("Colorization MSE") < labels.index("Colorization SSIM")
  assert labels.index("Starry Night SSIM") < labels.index("Starry Night total loss")
  assert labels.index("Model size for 3 tasks (MB)") < labels.index(
      "Task 1 (VOC) after Task 2, mIoU (%)")
  assert "Machine: test box" in md and "125 s" in md
  assert "## Forgetting matrix R" in md and "### fine-tune" in md
  # finetune's row 3 of R: 30 mIoU, 300 MSE, 5e5 loss.
  assert "| 3. Starry Night | 30.0 | 300.0 | 5e+05 |" in md
  assert "| 1. VOC | 60.0 |  |  |" in md  # tasks not yet learned stay blank


def test_style_terms_only_on_request(results):
  labels = lambda rows: [r[0] for r in rows]  # noqa: E731
  assert "Starry Night content loss" not in labels(report.table(results))
  full = report.table(results, all_metrics=True)
  assert full[labels(full).index("Starry Night content loss")][1:] == ["1234"] * 4


def test_missing_strategy_drops_its_column(results):
  del results["strategies"]["decoder"]
  assert report.table(results)[0] == ["Task / metric", "scratch", "fine-tune", "piggyback"]


def test_csv_parses_back_to_the_table(results, tmp_path):
  paths = report.write_tables(results, str(tmp_path))
  with open(paths["csv"], newline="") as f:
    assert list(csv.reader(f)) == report.table(results)


def test_json_round_trips_without_nan(results, tmp_path):
  paths = report.write_tables(results, str(tmp_path))
  text = open(paths["json"]).read()
  assert "NaN" not in text
  back = json.loads(text)
  assert back == report.to_jsonable(report.summarize(copy.deepcopy(results)))
  assert back["strategies"]["finetune"]["forgetting"]["bwt"] == pytest.approx(-40.0)
  assert "forgetting" not in results["strategies"]["finetune"]  # caller's dict left alone
  assert back["strategies"]["scratch"]["after_training"]["style_starry"]["total_loss"] is None
  assert back["strategies"]["finetune"]["matrix"][0][1] is None
  # The table can be remade from results.json alone.
  assert report.table(back) == report.table(results)


def test_to_jsonable_numpy():
  out = report.to_jsonable({"a": np.float32(1.5), "b": np.arange(3), "c": np.inf, 1: (True,)})
  assert out == {"a": 1.5, "b": [0, 1, 2], "c": None, "1": [True]}
  assert isinstance(out["b"][0], int)


def test_fmt():
  xs = (None, math.nan, -0.0, 244.04, 61.42, 0.9123, 3.2e5, 2e-5, 1100.4, 2.345)
  assert [report.fmt(x) for x in xs] == [
      "n/a", "n/a", "0", "244.0", "61.4", "0.912", "3.2e+05", "2e-05", "1100", "2.35"]


def _check_png(path, min_w=300, min_h=200):
  assert os.path.getsize(path) > 5000
  with Image.open(path) as im:
    assert im.format == "PNG"
    w, h = im.size
    pixels = np.asarray(im.convert("RGB"))
  assert w >= min_w and h >= min_h
  assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # not one flat colour


def test_comparison_grid(tmp_path):
  rng = np.random.default_rng(0)
  imgs = lambda: rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)  # noqa: E731
  path = report.comparison_grid("seg_voc", imgs(), {s: imgs() for s in report.STRATEGIES},
                                str(tmp_path / "g.png"), targets_NHW3=imgs())
  _check_png(path, min_w=6 * 100, min_h=3 * 100)


def test_comparison_grid_rejects_short_column(tmp_path):
  x = np.zeros((3, 8, 8, 3), np.uint8)
  with pytest.raises(ValueError, match="piggyback"):
    report.comparison_grid("t", x, {"piggyback": x[:2]}, str(tmp_path / "g.png"))


def test_network_order():
  given = ["b/dec_0/C", "b/dec_1/C", "b/enc_0/C", "b/enc_1/C", "b/mid/C", "b/up_0/k", "b/up_1/k"]
  assert report._network_order(given) == ["b/enc_0/C", "b/enc_1/C", "b/mid/C", "b/up_1/k",
                                          "b/dec_1/C", "b/up_0/k", "b/dec_0/C"]
  assert report._network_order(["z", "a"]) == ["z", "a"]


def test_write_figures_writes_every_figure(results, tmp_path):
  x = np.random.default_rng(1).integers(0, 256, (2, 12, 12, 3), dtype=np.uint8)
  grids = {"seg_voc": {"inputs": x, "outputs": {"piggyback": x, "finetune": x[..., ::-1]}}}
  paths = report.write_figures(report.summarize(copy.deepcopy(results)), str(tmp_path), grids)
  names = sorted(os.path.basename(p) for p in paths)
  assert names == ["curves.png", "forgetting.png", "grid_seg_voc.png", "sparsity.png"]
  for p in paths:
    assert os.path.dirname(p) == str(tmp_path / "figures")
    _check_png(p, min_w=250, min_h=200)


def test_write_figures_skips_what_is_missing(results, tmp_path):
  for s in results["strategies"].values():
    s.pop("density", None)
    s.pop("curves")
  assert [os.path.basename(p) for p in report.write_figures(results, str(tmp_path))] == [
      "forgetting.png"]
