"""experiments/configs/real.py end to end at tiny sizes over ../shared/data/camvid."""
import json

from piggyjax import continual, tasks

TASKS = ("seg_camvid", "colorize_camvid", "style_starry_camvid", "style_scream_camvid")


def _tiny_real_config(data_dir):
  from experiments.configs import real
  c = real.get_config()
  c.data.data_dir = str(data_dir)
  c.model.preset, c.image_size, c.batch_size = "tiny", 32, 4
  c.steps, c.steps_for, c.checkpoint_every = 2, {}, 2
  c.eval_batches, c.figure_images, c.style.style_size = 1, 2, 32
  c.figure_size = 0
  tasks.from_config(c)  # the config's own task definitions (what main.py does)
  return c


def test_real_config_reads_camvid_and_the_paintings(shared_data):
  from piggyjax import data
  c = _tiny_real_config(shared_data)
  assert tuple(c.tasks.split(",")) == TASKS
  from experiments.configs import real
  full = real.get_config()
  assert full.image_size >= 96 and full.figure_size >= 128
  assert full.strategies.split(",") == ["scratch", "finetune", "decoder", "piggyback"]
  for task in TASKS:
    train_src, eval_src = (data.make_source(task, s, c) for s in ("train", "eval"))
    assert (len(train_src), len(eval_src)) == (367, 101), task  # CamVid's train / val


def test_real_config_runs_the_whole_sequence(shared_data, tmp_path):
  c = _tiny_real_config(shared_data)
  c.strategies = "decoder,piggyback"  # the two that promise no forgetting; keeps the test short
  results = continual.run(c, tmp_path)
  saved = json.loads((tmp_path / "results.json").read_text())
  assert set(saved["strategies"]) == {"decoder", "piggyback"}
  for s in ("decoder", "piggyback"):  # old tasks never change under these two
    assert all(results["strategies"][s]["bit_identical"].values()), s
  pb = saved["strategies"]["piggyback"]["after_training"]
  for task in TASKS[2:]:  # the style number this config reports
    assert "style_closed_pct" in pb[task] and "style_loss_photo" in pb[task]
  assert "miou" in pb["seg_camvid"] and "mse" in pb["colorize_camvid"]
  assert list((tmp_path / "figures").glob("*.png"))
