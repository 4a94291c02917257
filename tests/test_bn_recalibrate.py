"""BatchNorm recalibration after training (config.bn_recalibrate): the stored statistics become
the mean of the final network's batch statistics, only for the norms the strategy trains."""
import jax
import numpy as np
from flax import traverse_util

from conftest import make_tiny_config
from piggyjax import data, sharding, tasks, train


def _runner(strategy):
  c = make_tiny_config()
  task = "seg_voc"
  variables = train.initial_variables(c, task, tasks.get(task).head_channels, "base", None)
  runner = train.Runner(c, task, strategy, variables)
  source = data.make_source(task, "train", c)
  batch = next(iter(data.batches(source, batch_size=c.batch_size, image_size=c.image_size,
                                 train=True, seed=0)))
  fixed = {"params": runner.frozen, "stats": runner.base_stats}
  return runner, fixed, batch


def _outputs(runner, fixed, state, batch, train_mode):
  v = runner.variables(fixed["params"], state.trainable, state.batch_stats)
  x = runner.task.model_input(sharding.put_batch(batch, runner.mesh))
  if train_mode:
    return np.asarray(runner.model.apply(v, x, runner.task_id, train_mode,
                                         mutable=["batch_stats"])[0])
  return np.asarray(runner.model.apply(v, x, runner.task_id, False))


def test_one_batch_recalibrated_eval_equals_train_mode_on_it():
  runner, fixed, batch = _runner("scratch")
  state = runner.recalibrate(fixed, runner.init_state, iter([batch]), 1)
  before = _outputs(runner, fixed, runner.init_state, batch, False)
  after = _outputs(runner, fixed, state, batch, False)
  target = _outputs(runner, fixed, state, batch, True)
  np.testing.assert_allclose(after, target, atol=2e-4, rtol=2e-4)
  assert np.abs(before - target).max() > 1e-2  # the init's statistics were not those


def test_mean_over_batches_and_only_owned_norms_change():
  runner, fixed, batch = _runner("decoder")
  other = jax.tree.map(lambda x: x[::-1].copy(), batch)  # the same rows, reversed, flipped
  other["image"] = other["image"] * 0.5
  one = runner.recalibrate(fixed, runner.init_state, iter([batch]), 1).batch_stats
  two = runner.recalibrate(fixed, runner.init_state, iter([other]), 1).batch_stats
  both = runner.recalibrate(fixed, runner.init_state, iter([batch, other]), 2).batch_stats
  init = traverse_util.flatten_dict(runner.init_state.batch_stats)
  f1, f2, fb = (traverse_util.flatten_dict(t) for t in (one, two, both))
  for path, value in fb.items():
    if path[1].startswith("enc_") or path[1] == "mid":  # the frozen encoder keeps the base's
      np.testing.assert_array_equal(value, init[path])
    else:
      np.testing.assert_allclose(value, (f1[path] + f2[path]) / 2, rtol=1e-5, atol=1e-6)
  assert any(not np.allclose(fb[p], init[p]) for p in fb if p[1].startswith("dec_"))


def test_zero_batches_or_frozen_norms_change_nothing():
  runner, fixed, batch = _runner("scratch")
  state = runner.recalibrate(fixed, runner.init_state, iter([batch]), 0)
  assert state is runner.init_state
  runner, fixed, batch = _runner("piggyback")  # make_tiny_config: mask.norm = frozen
  assert runner.recalibrate(fixed, runner.init_state, iter([batch]), 3) is runner.init_state
