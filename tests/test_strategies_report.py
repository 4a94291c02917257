"""The table's summary rows mean something across units: forgetting per task in its own units,
the final metric relative to scratch, BWT relative to each task's value."""
import pytest

from piggyjax import report


def results():
  prim = {"seg": {"metric": "miou", "higher_is_better": True},
          "col": {"metric": "mse", "higher_is_better": False}}
  scratch = {"after_training": {"seg": {"miou": 50.0}, "col": {"mse": 200.0}},
             "matrix": [[{"miou": 50.0}, None], [{"miou": 50.0}, {"mse": 200.0}]]}
  ft = {"after_training": {"seg": {"miou": 60.0}, "col": {"mse": 100.0}},
        "matrix": [[{"miou": 60.0}, None], [{"miou": 30.0}, {"mse": 100.0}]]}
  return {"tasks": ["seg", "col"], "primary": prim,
          "strategies": {"scratch": scratch, "finetune": ft}}


def test_relative_to_scratch_and_forgetting_in_units():
  r = results()
  # seg: 30 / 50 = 60 %; col: lower is better, 200 / 100 = 200 %; mean 130 %
  assert report.relative_to(r, "finetune") == pytest.approx(130.0)
  assert report.relative_to(r, "scratch") == pytest.approx(100.0)
  f = report.forgetting(r, "finetune")
  assert f["forgetting"] == {"seg": pytest.approx(30.0)}  # 60 -> 30 mIoU points
  assert f["bwt_relative_pct"] == pytest.approx(-50.0)
  rows = {row[0]: row[1:] for row in report.table(r)}
  assert rows["Final primary metric relative to scratch, mean over tasks (%)"] == ["100.0", "130.0"]
  assert not any("mixed units" in label for label in rows)
