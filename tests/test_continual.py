"""The continual runner end to end: the matrix, zero forgetting where promised, sizes, outputs."""
import json
import shutil

import pytest

from conftest import SHARED_DATA, make_tiny_config
from piggyjax import continual


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  work = tmp_path_factory.mktemp("seq")
  config = make_tiny_config(tasks="seg_coco,seg_voc,colorize_coco", steps=6,
                            **{"optim.lr": 1e-2})
  return continual.run(config, work), work


def test_writes_tables_figures_and_banks(quick_run):
  results, work = quick_run
  for name in ("results.md", "results.csv", "results.json"):
    assert (work / name).stat().st_size > 100
  figures = {p.name for p in (work / "figures").glob("*.png")}
  assert {"sparsity.png", "curves.png", "grid_seg_voc.png"} <= figures
  saved = json.loads((work / "results.json").read_text())
  assert set(saved["strategies"]) == {"scratch", "finetune", "decoder", "piggyback"}
  md = (work / "results.md").read_text()
  assert "Model size for 3 tasks (MB)" in md and "after Task 2" in md


def test_matrix_shape_and_no_forgetting(quick_run):
  results, _ = quick_run
  for name, s in results["strategies"].items():
    m = s["matrix"]
    assert len(m) == 3 and all(len(row) == 3 for row in m)
    assert all(m[j][i] is None for j in range(3) for i in range(j + 1, 3))
    if name in ("piggyback", "decoder", "scratch"):
      assert all(s["bit_identical"].values()), name
      for j in range(3):
        for i in range(j + 1):
          assert m[j][i] == m[i][i], (name, i, j)
  ft = results["strategies"]["finetune"]
  assert not ft["bit_identical"]["seg_coco"]
  assert ft["matrix"][1][0] != ft["matrix"][0][0]


def test_sizes_measured_on_disk(quick_run):
  results, work = quick_run
  sizes = {k: s["sizes"] for k, s in results["strategies"].items()}
  on_disk = sum(p.stat().st_size for p in (work / "bank_piggyback").rglob("*")
                if p.is_file() and p.name != "bank.json")
  assert sizes["piggyback"]["total"] == on_disk
  # scratch and fine-tune keep a whole network per task; piggyback a mask and a head
  assert sizes["piggyback"]["total"] < sizes["decoder"]["total"] < sizes["scratch"]["total"]
  dens = results["strategies"]["piggyback"]["density"]
  assert set(dens) == {"seg_voc", "colorize_coco"}
  assert all(0 < d["total"] <= 1 for d in dens.values())


def test_rerun_resumes_without_training_again(quick_run):
  results, work = quick_run
  config = make_tiny_config(tasks="seg_coco,seg_voc,colorize_coco", steps=6,
                            **{"optim.lr": 1e-2})
  again = continual.run(config, work)
  for name in results["strategies"]:
    assert again["strategies"][name]["matrix"] == results["strategies"][name]["matrix"]
  # the rerun's elapsed time is its own, and results.md says so
  assert results["resumed"] is False and again["resumed"] is True
  assert "in this invocation, which resumed" in (work / "results.md").read_text()


def test_a_shorter_sequence_reuses_its_rows(quick_run, tmp_path):
  """--config.tasks cut to a prefix: the finished rows are read back cut to its columns (and
  a later, longer sequence pads them again), nothing is trained."""
  results, work = quick_run
  shutil.copytree(work, tmp_path / "w")
  config = make_tiny_config(tasks="seg_coco,seg_voc", steps=6, strategies="finetune,piggyback",
                            **{"optim.lr": 1e-2})
  short = continual.run(config, tmp_path / "w")
  for name in ("finetune", "piggyback"):
    full = results["strategies"][name]["matrix"]
    assert short["strategies"][name]["matrix"] == [row[:2] for row in full[:2]], name
  assert "Task 1 (COCO seg.) after Task 2" in (tmp_path / "w" / "results.md").read_text()


def test_samples_config_on_shared_data(tmp_path):
  """Reads the real samples in ../shared/data (VOC, COCO panoptic, the two paintings)."""
  from experiments.configs import samples
  config = samples.get_config()
  config.data.data_dir = str(SHARED_DATA)
  config.steps, config.checkpoint_every, config.batch_size = 2, 2, 2
  config.strategies = "finetune,piggyback"
  config.style.style_size = 64
  config.figure_images = 2
  results = continual.run(config, tmp_path)
  assert results["tasks"] == ["seg_coco", "seg_voc", "colorize_coco", "style_starry",
                              "style_scream"]
  pig = results["strategies"]["piggyback"]
  assert all(pig["bit_identical"].values())
  assert pig["after_training"]["seg_voc"]["miou"] >= 0
  assert (tmp_path / "figures" / "grid_style_scream.png").exists()
