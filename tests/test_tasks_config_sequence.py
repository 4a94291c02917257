"""The README's own-data example, exactly as written, run through experiments/main.py
--mode=sequence: two tasks defined in a config file over ../shared/data/camvid. Only sizes are
shrunk, by flags appended after the README's (absl takes the last value of a flag)."""
import json
import os
import re
import subprocess
import sys

from conftest import ROOT

TINY = ["--config.model.preset=tiny", "--config.image_size=32", "--config.batch_size=4",
        "--config.steps=2", "--config.checkpoint_every=2", "--config.eval_batches=1",
        "--config.figure_images=2", "--config.mask.norm=frozen"]


def readme_example():
  text = (ROOT / "README.md").read_text()
  section = text[text.index("### Your own data and tasks"):]
  config = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  command = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
  return config, command.replace("\\\n", " ").split()


def test_readme_example_runs_two_config_defined_tasks(shared_data, tmp_path):
  config, command = readme_example()
  path = command[command.index("--mode=sequence") + 1].split("=", 1)[1]
  assert (ROOT / path).read_text() == config  # the README shows the file as it is
  assert command[:2] == ["python", "experiments/main.py"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PIGGYJAX_CACHE": str(tmp_path / "cache")}
  run = subprocess.run([sys.executable, *command[1:], *TINY, f"--workdir={tmp_path / 'w'}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.loads((tmp_path / "w" / "results.json").read_text())
  assert results["tasks"] == ["seg_streets", "colorize_streets"]
  assert list(results["strategies"]) == ["finetune", "piggyback"]
  piggy = results["strategies"]["piggyback"]
  assert piggy["bit_identical"]["seg_streets"]
  # per-class IoU keyed by the class names the config gave, after training and at the end
  per_class = piggy["class_iou"]["seg_streets"]
  assert set(per_class["after_training"]) <= {"sky", "building", "pole", "road", "pavement", "tree",
                                              "sign", "fence", "car", "pedestrian", "bicyclist"}
  assert per_class["after_training"] == per_class["final"]  # piggyback forgets nothing
  md = (tmp_path / "w" / "results.md").read_text()
  assert "Per-class IoU" in md and "| road |" in md
