"""experiments/configs/real.py end to end at tiny sizes over ../shared/data (CamVid, MSRC and the
paintings: these tests read the real data beside the checkout)."""
import json

from piggyjax import continual, report, tasks

TASKS = ("seg_camvid", "seg_msrc", "colorize_camvid", "style_starry_camvid",
         "style_scream_camvid")
SIZES = {"seg_msrc": (295, 57)}  # MSRC's train / val; every other task reads CamVid's 367 / 101


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


def test_real_config_reads_camvid_msrc_and_the_paintings(shared_data):
  from piggyjax import data
  c = _tiny_real_config(shared_data)
  assert tuple(c.tasks.split(",")) == TASKS
  from experiments.configs import real
  full = real.get_config()
  assert full.image_size >= 96 and full.figure_size >= 128 and full.figure_spread
  assert full.strategies.split(",") == ["scratch", "finetune", "decoder", "piggyback"]
  for task in TASKS:
    train_src, eval_src = (data.make_source(task, s, c) for s in ("train", "eval"))
    assert (len(train_src), len(eval_src)) == SIZES.get(task, (367, 101)), task


def test_figure_images_are_spread_over_the_split(shared_data):
  from piggyjax import data
  c = _tiny_real_config(shared_data)
  c.figure_images, c.image_size = 4, 32
  val = data.make_source("seg_camvid", "eval", c)
  spread = continual.figure_batch(c, "seg_camvid")["image"]
  for k, i in enumerate((0, 25, 50, 75)):  # 101 frames, four images: every 25th
    one = next(data.batches(continual._Picked(val, [i]), batch_size=1, image_size=32,
                            train=False, seed=0, shard_index=0, shard_count=1))
    assert (spread[k] == one["image"][0]).all(), i
  c.figure_spread = False  # the first four: consecutive frames, nearly the same picture
  first = continual.figure_batch(c, "seg_camvid")["image"]
  assert (first[0] == spread[0]).all() and not (first[1] == spread[1]).all()


def test_later_tasks_draw_their_figures_from_msrc(shared_data):
  import pytest
  from piggyjax import validate
  c = _tiny_real_config(shared_data)
  assert dict(c.figure_from) == {t: "seg_msrc" for t in TASKS[2:]}
  msrc = continual.figure_batch(c, "seg_msrc")["image"]
  camvid = continual.figure_batch(c, "seg_camvid")["image"]
  for task in TASKS[2:]:  # MSRC's val scenes, not the one CamVid street
    assert (continual.figure_batch(c, task)["image"] == msrc).all(), task
  c.figure_from = {}  # the default: a task's own eval photos
  own = continual.figure_batch(c, "colorize_camvid")["image"].astype(float)
  # the same frames (an unlabelled reader may decode a JPEG at reduced scale: a level or two)
  assert abs(own - camvid).mean() < 3 and abs(own - msrc).mean() > 30
  c.figure_from = {"seg_camvid": "seg_msrc"}  # CamVid's labels cannot come from MSRC
  with pytest.raises(validate.ConfigError, match="need their own labels"):
    continual.figure_batch(c, "seg_camvid")
  c.figure_from = {"colorize_camvid": "seg_nowhere"}
  with pytest.raises(validate.ConfigError, match="not a task of this config"):
    continual.figure_batch(c, "colorize_camvid")


def test_real_config_runs_the_whole_sequence_and_repeats_itself(shared_data, tmp_path):
  c = _tiny_real_config(shared_data)
  c.strategies = "piggyback"  # all five tasks; fine-tune's forgetting is checked below
  results = continual.run(c, tmp_path / "a")
  saved = json.loads((tmp_path / "a" / "results.json").read_text())
  assert saved["tasks"] == list(TASKS) and set(saved["strategies"]) == {"piggyback"}
  assert all(results["strategies"]["piggyback"]["bit_identical"].values())
  # one network on disk: a task's mask, head and own norms (mask.norm=per_task) are not one
  assert saved["strategies"]["piggyback"]["networks"] == 1
  pb = saved["strategies"]["piggyback"]["after_training"]
  for task in TASKS[3:]:  # the style number this config reports
    assert "style_closed_pct" in pb[task] and "style_loss_photo" in pb[task]
  assert "miou" in pb["seg_camvid"] and "miou" in pb["seg_msrc"] and "mse" in pb["colorize_camvid"]
  assert len(list((tmp_path / "a" / "figures").glob("grid_*.png"))) == len(TASKS)
  # same seed, same numbers: the two segmentations again in a fresh workdir (the base trained
  # again), now beside fine-tune, whose CamVid after MSRC is the seed's forgetting row
  c.strategies, c.tasks = "finetune,piggyback", ",".join(TASKS[:2])
  continual.run(c, tmp_path / "b")
  again = json.loads((tmp_path / "b" / "results.json").read_text())
  first = saved["strategies"]["piggyback"]["matrix"]
  assert again["strategies"]["piggyback"]["matrix"] == [first[0][:2], first[1][:2]]
  assert not again["strategies"]["finetune"]["bit_identical"]["seg_camvid"]  # it forgets
  assert again["strategies"]["finetune"]["networks"] == 2
  labels = [row[0] for row in report.table(again)]
  assert "MSRC mIoU (%)" in labels and "Task 1 (CamVid) after Task 2, mIoU (%)" in labels
  ft = again["strategies"]["finetune"]["matrix"]
  assert ft[1][0]["miou"] == report.forgetting(again, "finetune")["k_after_k1"]["seg_camvid"]["miou"]
  assert "Task 2 (MSRC) after Task 3, mIoU (%)" in [row[0] for row in report.table(saved)]
