"""Bad settings fail before the first step, each with a message naming the config field."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from piggyjax import cli, continual, validate

ROOT = Path(__file__).resolve().parents[1]

# (override, the field the message must name, a word of the reason)
BAD = [
    ({"image_size": 30}, "config.image_size=30", "divisible by 4"),
    ({"image_size": 0}, "config.image_size=0", "positive integer"),
    ({"model.preset": "huge"}, "config.model.preset='huge'", "tiny"),
    ({"model.norm": "layer"}, "config.model.norm='layer'", "batch"),
    ({"model.dtype": "float16"}, "config.model.dtype='float16'", "bfloat16"),
    ({"batch_size": 6}, "config.batch_size=6", "divisible by the 4 devices"),
    ({"batch_size": 0}, "config.batch_size=0", "positive integer"),
    ({"steps": 0}, "config.steps=0", "positive integer"),
    ({"steps": -5}, "config.steps=-5", "positive integer"),
    ({"steps_for": {"seg_voc": 0}}, "config.steps_for.seg_voc=0", "positive integer"),
    ({"checkpoint_every": 0}, "config.checkpoint_every=0", "positive integer"),
    ({"eval_every": -1}, "config.eval_every=-1", ">= 0"),
    ({"bn_recalibrate": -2}, "config.bn_recalibrate=-2", ">= 0"),
    ({"optim.lr": 0.0}, "config.optim.lr=0.0", "positive"),
    ({"optim.lr_head": -1e-3}, "config.optim.lr_head=-0.001", "positive"),
    ({"optim.lr_scores": float("nan")}, "config.optim.lr_scores=nan", "finite"),
    ({"mask.threshold": 1e-2}, "config.mask.threshold=0.01", "mask would start empty"),
    ({"mask.threshold": 0.5}, "config.mask.threshold=0.5", "mask would start empty"),
    ({"mask.threshold": -0.1}, "config.mask.threshold=-0.1", "starts at 0"),
    ({"mask.init": 0.0}, "config.mask.init=0.0", "positive"),
    ({"mask.norm": "sometimes"}, "config.mask.norm='sometimes'", "per_task"),
]


@pytest.mark.parametrize("override,field,why", BAD, ids=[b[1] for b in BAD])
def test_each_bad_setting_is_named(tiny_config, override, field, why):
  config = tiny_config(**override)
  with pytest.raises(validate.ConfigError) as err:
    validate.check(config, ["piggyback", "finetune"], device_count=4)
  msg = str(err.value)
  assert field in msg and why in msg, msg
  assert msg.count("\n") == 1, msg  # that one field and nothing else


def test_good_settings_pass_and_several_bad_ones_are_all_listed(tiny_config):
  validate.check(tiny_config(), ["piggyback"], device_count=4)
  # Without piggyback the mask settings do not matter.
  validate.check(tiny_config(**{"mask.threshold": 1.0}), ["finetune"], device_count=1)
  config = tiny_config(image_size=30, steps=0, **{"optim.lr": -1.0})
  found = validate.problems(config, ["finetune"], device_count=1)
  assert [f.split("=")[0] for f in found] == ["config.image_size", "config.steps",
                                              "config.optim.lr"]


def test_library_entry_points_check_before_training(tiny_config, tmp_path):
  config = tiny_config(**{"mask.threshold": 0.02})
  with pytest.raises(validate.ConfigError, match="config.mask.threshold=0.02"):
    cli.train(config, "seg_coco", "piggyback", None, tmp_path)
  config = tiny_config(steps=0, tasks="seg_coco,seg_voc", strategies="piggyback")
  with pytest.raises(validate.ConfigError, match="config.steps=0"):
    continual.run(config, tmp_path)
  assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


def test_main_exits_with_the_message_before_any_step(tmp_path):
  """The real command, 8 host devices: a global batch of 12 does not split over them."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
  cmd = [sys.executable, str(ROOT / "experiments" / "main.py"), "--mode=sequence",
         f"--workdir={tmp_path}", "--config.batch_size=12", "--config.image_size=34",
         "--config.model.preset=tiny"]
  out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 2, out.stderr[-2000:]
  assert "config.batch_size=12 (the global batch) is not divisible by the 8 devices" in out.stderr
  assert "config.image_size=34 is not divisible by 4" in out.stderr
  assert list(tmp_path.iterdir()) == []
