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


@pytest.fixture(scope="session")
def serving_bank(tmp_path_factory):
  """A bank of three tasks on the tiny U-Net, written without training (seconds, not a
  minute): seg_coco stores its head on the base, seg_voc and colorize_coco random masks that
  drop ~30 % of the weights, plus their heads. Returns (bank path, config)."""
  import numpy as np
  from flax import traverse_util
  from piggyjax import cli, masks, tasks, train
  from piggyjax.bank import Bank
  from piggyjax.models import unet
  config = make_tiny_config(tasks="seg_coco,seg_voc,colorize_coco")
  cli.define_tasks(config)
  ids = ("seg_coco", "seg_voc", "colorize_coco")
  rng = np.random.default_rng(0)
  v = unet.init(train.model_config(config), [(t, tasks.get(t).head_channels) for t in ids], 0)
  v = {k: {n: {p: np.asarray(x) for p, x in traverse_util.flatten_dict(t).items()}
           for n, t in v[k].items()} for k in v}
  # BatchNorm statistics away from (0, 1), so a wrong one would show in the outputs.
  stats = {p: (rng.uniform(0.5, 2.0, x.shape) if p[-1] == "var" else rng.normal(0, 0.1, x.shape))
           for p, x in v["batch_stats"]["backbone"].items()}
  nest = lambda flat: traverse_util.unflatten_dict({p: np.float32(x) for p, x in flat.items()})
  base = {"params": {"backbone": nest(v["params"]["backbone"])},
          "batch_stats": {"backbone": nest(stats)}}
  bank = Bank.create(tmp_path_factory.mktemp("serving_bank") / "bank", base, train.arch(config))
  scores = masks.init_scores(base["params"])
  for t in ids:
    head = {"params": {unet.head_name(t): nest(v["params"][unet.head_name(t)])}}
    mask = None if t == "seg_coco" else random_mask(scores, rng)
    bank.add(t, "base" if mask is None else "piggyback", head, mask,
             {"metrics": {}, "threshold": 5e-3, "norm": "frozen"})
  return bank.root, config


def random_mask(scores, rng):
  import numpy as np
  from flax import traverse_util
  flat = traverse_util.flatten_dict(scores)
  return traverse_util.unflatten_dict({p: rng.random(np.shape(x)) < 0.7 for p, x in flat.items()})
