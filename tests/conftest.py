"""Shared test set-up: the repo root on sys.path (configs live in experiments/) and a tiny config."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"  # the real samples beside the checkout
sys.path.insert(0, str(ROOT))


# The quickstart decays its rates and recalibrates BatchNorm after each task; runs of a few
# steps in tests keep constant rates and no recalibration (tests of either set it themselves).
CONSTANT_RATE_FLAGS = ("--config.optim.schedule=constant", "--config.bn_recalibrate=0")


def make_tiny_config(**overrides):
  """The quickstart config shrunk for CPU tests: tiny U-Net, 32x32, a few steps."""
  from experiments.configs import quickstart
  c = quickstart.get_config()
  c.model.preset, c.optim.lr, c.optim.lr_head = "tiny", 1e-3, 1e-3
  c.optim.lr_scores, c.mask.norm = 1e-3, "frozen"
  c.optim.schedule, c.bn_recalibrate = "constant", 0  # as CONSTANT_RATE_FLAGS
  c.steps, c.checkpoint_every, c.batch_size, c.eval_batches = 4, 2, 4, 1
  c.steps_for = {}
  c.data.quickstart_train_examples, c.data.quickstart_eval_examples = 32, 8
  c.style.style_size = 64
  for key, value in overrides.items():
    target = c
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return c


@pytest.fixture
def shared_data():
  """The real samples: a missing ../shared/data is a failure, never a skip."""
  if not SHARED_DATA.is_dir():
    pytest.fail(f"{SHARED_DATA} is missing: the tests read the sample data in ../shared/data "
                "beside the checkout (VOC, COCO panoptic, the paintings)")
  return SHARED_DATA


@pytest.fixture
def tiny_config():
  return make_tiny_config
