"""The training recipe's knobs: learning-rate schedules, norm modes, the regression heads' init."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from conftest import make_tiny_config
from piggyjax import strategies, tasks, train
from piggyjax.models import unet


def _lrs(config, lr, steps):
  sched = train.schedule(lr, steps, config.optim)
  return np.array([float(sched(i)) if callable(sched) else sched for i in range(steps)])


def test_step_schedule_drops_tenfold_halfway_like_piggyback():
  c = make_tiny_config(**{"optim.schedule": "step"})
  lrs = _lrs(c, 1e-3, 100)
  np.testing.assert_allclose(lrs[:50], 1e-3)
  np.testing.assert_allclose(lrs[50:], 1e-4)


def test_step_schedule_several_boundaries_and_factor():
  c = make_tiny_config(**{"optim.schedule": "step", "optim.decay_at": (0.25, 0.75),
                          "optim.decay_factor": 0.5})
  lrs = _lrs(c, 1.0, 8)
  np.testing.assert_allclose(lrs, [1, 1, .5, .5, .5, .5, .25, .25])


def test_cosine_schedule_starts_at_lr_and_ends_near_zero():
  lrs = _lrs(make_tiny_config(**{"optim.schedule": "cosine"}), 2e-3, 50)
  assert lrs[0] == pytest.approx(2e-3)
  assert np.all(np.diff(lrs) <= 0) and lrs[-1] < 2e-3 * 0.01


def test_constant_is_the_default():
  c = make_tiny_config()
  assert c.optim.schedule == "constant"
  np.testing.assert_allclose(_lrs(c, 3e-3, 10), 3e-3)


@pytest.mark.parametrize("field,value,match", [("optim.schedule", "linear", "schedule"),
                                                ("optim.decay_at", (1.5,), "decay_at")])
def test_bad_schedule_fields_name_the_field(field, value, match):
  c = make_tiny_config(**{"optim.schedule": "step", field: value})
  with pytest.raises(ValueError, match=match):
    train.schedule(1e-3, 10, c.optim)


def test_optimizer_applies_the_schedule_per_group():
  """Adam's first update is ~lr per weight: after the halfway step it is ~lr/10, per group."""
  c = make_tiny_config(**{"optim.schedule": "step", "optim.lr_scores": 1e-2,
                          "optim.lr_head": 1e-3})
  params = {"scores": {"w": jnp.zeros(3)}, "head_x": {"kernel": jnp.zeros(3)}}
  tx = train.optimizer(c, params, steps=4)
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  sizes = []
  for _ in range(4):
    updates, state = tx.update(grads, state, params)
    sizes.append({k: float(jnp.abs(v[next(iter(v))]).max()) for k, v in updates.items()})
  assert sizes[0]["scores"] == pytest.approx(1e-2, rel=1e-3)
  assert sizes[0]["head_x"] == pytest.approx(1e-3, rel=1e-3)
  assert sizes[3]["scores"] == pytest.approx(1e-3, rel=1e-3)
  assert sizes[3]["head_x"] == pytest.approx(1e-4, rel=1e-3)


def test_encoder_rate_applies_to_the_encoder_only():
  """optim.lr_encoder (real_imagenet.py): enc_*/mid move at it, the decoder and head at lr."""
  c = make_tiny_config(**{"optim.lr": 3e-3, "optim.lr_head": 2e-3})
  params = {"backbone": {n: {"kernel": jnp.zeros(2)} for n in ("enc_0", "mid", "up_0", "dec_0")},
            "head_x": {"kernel": jnp.zeros(2)}}
  grads = jax.tree.map(jnp.ones_like, params)

  def first_step():
    tx = train.optimizer(c, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    return jax.tree.map(lambda u: float(jnp.abs(u).max()), updates)
  assert jax.tree.leaves(first_step()["backbone"]) == pytest.approx([3e-3] * 4, rel=1e-3)
  c.optim.lr_encoder = 1e-4
  got = first_step()
  for name, lr in (("enc_0", 1e-4), ("mid", 1e-4), ("up_0", 3e-3), ("dec_0", 3e-3)):
    assert got["backbone"][name]["kernel"] == pytest.approx(lr, rel=1e-3), name
  assert got["head_x"]["kernel"] == pytest.approx(2e-3, rel=1e-3)


def _variables(config, task_id="seg_voc"):
  cfg = train.model_config(config)
  return jax.tree.map(np.asarray, unet.init(cfg, ((task_id, 21),), 0, 32))


@pytest.mark.parametrize("norm,trains_norms", [("frozen", False), ("per_task", True)])
def test_norm_modes_decide_what_piggyback_trains(norm, trains_norms):
  c = make_tiny_config(**{"mask.norm": norm})
  strategy = strategies.get("piggyback", c)
  frozen, trainable = strategy.split_params(_variables(c)["params"], c)
  flat = traverse_util.flatten_dict(trainable)
  norm_leaves = [p for p in flat if p[0] == "backbone" and "Norm" in "/".join(map(str, p))]
  assert bool(norm_leaves) == trains_norms
  assert bool(strategy.norms_train) == trains_norms  # batch statistics only with own norms
  assert "scores" in trainable and any(k.startswith("head_") for k in trainable)
  kernels = [p for p in traverse_util.flatten_dict(frozen) if p[-1] == "kernel"]
  assert kernels and all(p[0] == "backbone" for p in kernels)


@pytest.mark.parametrize("task_id,zero", [("colorize_coco", True), ("style_starry", True),
                                          ("seg_voc", False)])
def test_regression_heads_start_at_zero_classifiers_random(task_id, zero):
  c = make_tiny_config()
  task = tasks.get(task_id)
  v = train.initial_variables(c, task_id, task.head_channels, "piggyback", None)
  kernel = v["params"][unet.head_name(task_id)]["kernel"]
  assert (not np.any(kernel)) == zero
  assert np.any(v["params"]["backbone"]["enc_0"]["Conv_0"]["kernel"])  # the rest is random


def test_paper_config_keeps_the_original_piggyback_recipe():
  from experiments.configs import paper
  c = paper.get_config()
  assert (c.optim.lr_scores, c.optim.lr_head, c.mask.norm) == (1e-4, 1e-4, "frozen")
  assert (c.mask.init, c.mask.threshold) == (1e-2, 5e-3)
  lrs = _lrs(c, c.optim.lr_scores, 100)
  np.testing.assert_allclose([lrs[49], lrs[50]], [1e-4, 1e-5])
