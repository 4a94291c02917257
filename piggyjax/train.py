"""Train one task under one strategy: a jitted, sharded step, evaluation, checkpoints, the bank.

The first task of a bank (no base given) trains the whole U-Net and becomes the bank's base.
Killed and rerun with the same workdir, training continues from the last checkpoint.
"""
from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from piggyjax import ckpt_verify, data, models, sharding, strategies, tasks
from piggyjax.data import device_augment
from piggyjax.bank import Bank
from piggyjax.models import unet
from piggyjax.progress import Reporter


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  trainable: Any
  opt_state: Any
  batch_stats: Any


def model_config(config) -> models.ModelConfig:
  """The backbone ``config.model.preset`` names: a U-Net preset or a pretrained network."""
  return models.config_of(config.model)


def compiler_options() -> dict:
  """XLA options for the train step on this backend (docs/BENCHMARKS.md has the measurements)."""
  if jax.default_backend() != "cpu":
    return {}
  # XLA:CPU hands convolutions to YNNPACK by default, whose weight-gradient convolutions (a
  # window as large as the image) ran 2-3x slower than Eigen's at U-Net shapes. Keep YNNPACK
  # for the dots only.
  return {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def arch(config) -> dict:
  return models.arch(model_config(config))


def _task_seed(config, task_id: str) -> int:
  return (int(config.seed) * 1_000_003 + sum(map(ord, task_id)) * 7919) % (2**31)


def initial_variables(config, task_id: str, head_channels: int, strategy: str,
                      bank: Bank | None) -> dict:
  """Random init, then the backbone (and its BN stats) from the bank where the strategy says."""
  cfg = model_config(config)
  fresh = models.init(cfg, ((task_id, head_channels),), _task_seed(config, task_id),
                      config.image_size)
  fresh = jax.tree.map(np.asarray, fresh)
  if getattr(tasks.get(task_id), "zero_head_init", False):
    # A random 1x1 head adds a random projection of the frozen features to every output, an
    # offset Piggyback cannot train away (its masks only remove weights): on CamVid it left
    # piggyback's predicted chroma nearly uninformative (docs/ABLATIONS.md). Zero is gray.
    name = unet.head_name(task_id)
    fresh["params"][name] = {k: np.zeros_like(v) for k, v in fresh["params"][name].items()}
  strat = strategies.get(strategy, config)
  source = None if bank is None else strat.start_from(bank)
  if source is None:  # a random start (a bank's first task, scratch) gets the ImageNet encoder
    pretrained = (unet.pretrained_encoder(cfg, config.model.get("encoder_weights") or None)
                  if isinstance(cfg, unet.UNetConfig) else None)
    if pretrained is not None:
      fresh["params"]["backbone"].update(pretrained["backbone"])
    return fresh
  out = {"params": {**fresh["params"], **strat.start_params(source, task_id)}}
  if "batch_stats" in fresh:
    out["batch_stats"] = {"backbone": source["batch_stats"]["backbone"]}
  return out


def task_steps(config, task_id: str) -> int:
  """``config.steps``, unless ``config.steps_for`` names this task (e.g. shorter style runs)."""
  per_task = config.get("steps_for") or {}
  return int(per_task.get(task_id, config.steps))


SCHEDULES = ("constant", "step", "cosine")


def schedule(lr: float, steps: int | None, optim) -> optax.Schedule | float:
  """``config.optim.schedule``: constant | step (x ``decay_factor`` at each fraction of
  ``decay_at``, Piggyback's x0.1 halfway by default) | cosine (to 0 at the last step)."""
  kind = (optim.get("schedule") or "constant") if optim is not None else "constant"
  if kind not in SCHEDULES:
    raise ValueError(f"config.optim.schedule={kind!r}; choose one of {', '.join(SCHEDULES)}")
  if kind == "constant" or not steps:
    return lr
  if kind == "cosine":
    return optax.cosine_decay_schedule(lr, decay_steps=int(steps))
  fractions = optim.get("decay_at", (0.5,))
  if isinstance(fractions, (int, float)):
    fractions = (fractions,)
  if any(not 0 < float(f) < 1 for f in fractions):
    raise ValueError(f"config.optim.decay_at={tuple(fractions)}: fractions of the run, each "
                     "strictly between 0 and 1")
  factor = float(optim.get("decay_factor", 0.1))
  # Steps count from 0: with 100 steps and decay_at 0.5, steps 0..49 use lr, 50..99 lr*factor.
  boundaries = {int(round(float(f) * steps)): factor for f in fractions}
  return optax.piecewise_constant_schedule(lr, boundaries)


def optimizer(config, trainable: dict, steps: int | None = None) -> optax.GradientTransformation:
  """Adam; Piggyback's scores, heads and whole-network weights each get their own rate (and a
  backbone's encoder ``optim.lr_encoder`` if set), all on ``config.optim.schedule`` over
  ``steps`` (constant when ``steps`` is None)."""
  o = config.optim
  lr_encoder = o.get("lr_encoder")  # an ImageNet encoder fine-tunes gently (real_imagenet.py)

  def label(path, _):
    keys = tuple(p.key for p in path)
    if keys[0] == "scores" or keys[0].startswith("head_"):
      return "scores" if keys[0] == "scores" else "head"
    encoder = lr_encoder and keys[0] == "backbone" and not strategies.is_decoder(keys)
    return "encoder" if encoder else "net"
  labels = jax.tree_util.tree_map_with_path(label, trainable)
  txs = {"scores": optax.adam(schedule(o.lr_scores, steps, o)),
         "head": optax.adam(schedule(o.lr_head, steps, o)),
         "net": optax.adam(schedule(o.lr, steps, o))}
  if lr_encoder:
    txs["encoder"] = optax.adam(schedule(lr_encoder, steps, o))
  return optax.multi_transform(txs, labels)


class Evaluator:
  """Jitted prediction and metrics for one task on one model config (cached: see ``evaluator``)."""

  def __init__(self, task_id: str, model_cfg: models.ModelConfig):
    self.task_id, self.task = task_id, tasks.get(task_id)
    self.model = models.build(model_cfg, ((task_id, self.task.head_channels),))
    self.mesh = sharding.mesh()
    self.predict = jax.jit(self._predict)
    self.eval_step = jax.jit(self._eval_step, donate_argnums=(0,))

  def _predict(self, variables, batch):
    return self.model.apply(variables, self.task.model_input(batch), self.task_id, False)

  def _eval_step(self, mstate, variables, consts, batch):
    return self.task.metrics_update(consts, mstate, self._predict(variables, batch), batch)

  def put(self, tree):
    return sharding.put_replicated(tree, self.mesh)

  def evaluate(self, variables: dict, consts, config) -> dict[str, float]:
    """One pass over the task's eval split; ``variables`` as from ``Bank.load``."""
    source = data.make_source(self.task_id, "eval", config)
    per_process = sharding.check_batch_size(config.batch_size)
    batches = data.batches(source, batch_size=per_process, image_size=config.image_size,
                           train=False, seed=config.seed)
    variables, consts = self.put(variables), self.put(consts)
    mstate = self.put(self.task.metrics_init())
    for i, batch in enumerate(batches):
      if config.get("eval_batches") and i >= config.eval_batches:
        break
      mstate = self.eval_step(mstate, variables, consts, sharding.put_batch(batch, self.mesh))
    self.last_state = sharding.to_host(mstate)  # continual reads per-class IoU from it
    self.last_class_names = tuple(getattr(source, "class_names", ()) or ())
    return self.task.metrics_finalize(self.last_state)


@functools.lru_cache(maxsize=64)
def evaluator(task_id: str, model_cfg: models.ModelConfig) -> Evaluator:
  return Evaluator(task_id, model_cfg)


class Runner:
  """The jitted train step for one (task, strategy) and the split of its variables."""

  def __init__(self, config, task_id: str, strategy_name: str, variables: dict):
    self.config, self.task_id = config, task_id
    self.task = tasks.get(task_id)
    self.strategy = strategies.get(strategy_name, config)
    self.evaluator = evaluator(task_id, model_config(config))
    self.model, self.mesh = self.evaluator.model, self.evaluator.mesh
    self.frozen, trainable = self.strategy.split_params(variables["params"], config)
    self.base_stats = variables.get("batch_stats", {})
    self.tx = optimizer(config, trainable, task_steps(config, task_id))
    self.threshold = float(config.mask.threshold)
    self.init_state = TrainState(step=jnp.zeros((), jnp.int32), trainable=trainable,
                                 opt_state=self.tx.init(trainable),
                                 batch_stats=self.base_stats)
    rep = sharding.replicated(self.mesh)
    self.train_step = jax.jit(self._train_step, donate_argnums=(0,), out_shardings=(rep, rep),
                              compiler_options=compiler_options())
    self.stats_step = jax.jit(self._batch_stats)  # compiled only if recalibrating
    # config.data.device_augment: batches arrive as canvases; the views are made in the step.
    self.device_augment = device_augment.enabled(config)
    self.augment_seed = _task_seed(config, task_id)
    self.augment_step = jax.jit(self._augmented)  # for recalibration's batches

  def variables(self, frozen, trainable, batch_stats) -> dict:
    out = {"params": self.strategy.assemble(frozen, trainable, self.threshold)}
    if batch_stats:
      out["batch_stats"] = batch_stats
    return out

  def _train_step(self, state: TrainState, fixed, consts, batch):
    frozen, base_stats = fixed["params"], fixed["stats"]
    extra = fixed.get("extra", {})  # the strategy's constants (teacher, Fisher, buffer, owners)
    trainable_in = self.strategy.before_step(state.trainable, extra, state.step)
    if self.device_augment:  # the step's own key: a resumed run draws the same views
      batch = self._augmented(batch, state.step)
    x = self.task.model_input(batch)
    norms_train = self.strategy.norms_train and bool(state.batch_stats)

    def loss_fn(trainable):
      v = self.variables(frozen, trainable, state.batch_stats)
      if norms_train:
        out, upd = self.model.apply(v, x, self.task_id, self.strategy.norms_train,
                                    mutable=["batch_stats"])
        stats = upd["batch_stats"]
      else:
        out, stats = self.model.apply(v, x, self.task_id, False), state.batch_stats
      loss, aux = self.task.loss(consts, out, batch)
      loss, aux = self.strategy.add_loss(self, loss, aux, trainable, v, extra, batch,
                                         state.step)
      return loss, (aux, stats)

    (loss, (aux, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable_in)
    updates, opt_state = self.tx.update(grads, state.opt_state, trainable_in)
    updates = self.strategy.mask_updates(updates, trainable_in, extra, state.step)
    stats = self.strategy.keep_stats(base_stats, stats) if norms_train else stats
    new = state.replace(step=state.step + 1, trainable=optax.apply_updates(trainable_in, updates),
                        opt_state=opt_state, batch_stats=stats)
    return new, {"loss": loss, **aux}

  def put(self, tree):
    return sharding.put_replicated(tree, self.mesh)

  def _augmented(self, batch, step):
    """The canvases of training step ``step`` made into its views (config.data.device_augment)."""
    return device_augment.augment(batch, device_augment.step_key(self.augment_seed, step),
                                  self.config.image_size)

  def _batch_stats(self, frozen, trainable, stats, batch):
    """This batch's BatchNorm statistics for the norms the strategy trains, via Flax's update
    ``new = m * old + (1 - m) * batch`` from ``old = 0``; the others as in ``stats``."""
    zeros = jax.tree.map(jnp.zeros_like, stats)
    stats_in = self.strategy.keep_stats(stats, zeros)
    v = self.variables(frozen, trainable, stats_in)
    _, upd = self.model.apply(v, self.task.model_input(batch), self.task_id,
                              self.strategy.norms_train, mutable=["batch_stats"])
    own = jax.tree.map(lambda x: x / (1.0 - unet.BN_MOMENTUM), upd["batch_stats"])
    return self.strategy.keep_stats(stats, own)

  def recalibrate(self, fixed, state: TrainState, batches, n: int) -> TrainState:
    """BatchNorm running statistics re-estimated as the mean over ``n`` training batches of the
    final network's batch statistics (weights unchanged).

    The running averages (momentum 0.9: about the last 10 batches) describe networks from the
    last steps, and a mask still flipping weights moves them more than an optimizer step does
    (docs/ABLATIONS.md); a plain mean over more images also has less noise."""
    if n <= 0 or not self.strategy.norms_train or not state.batch_stats:
      return state
    total = None
    for i in range(n):
      batch = sharding.put_batch(next(batches), self.mesh)
      if self.device_augment:  # keys after the last training step's
        batch = self.augment_step(batch, state.step + i)
      stats = self.stats_step(fixed["params"], state.trainable, state.batch_stats, batch)
      total = stats if total is None else jax.tree.map(jnp.add, total, stats)
    return state.replace(batch_stats=jax.tree.map(lambda x: x / n, total))


def _checkpoint_manager(path: Path, config):
  import orbax.checkpoint as ocp
  opts = ocp.CheckpointManagerOptions(max_to_keep=2, save_interval_steps=1, create=True)
  return ocp.CheckpointManager(path.absolute(), options=opts)


def train_task(config, task_id: str, strategy: str, workdir, bank: Bank | None = None,
               bank_path=None, consts=None) -> dict:
  """Train ``task_id``; store it in ``bank`` (or a new bank at ``bank_path``). Returns metadata.

  ``consts``: the task's ``load(config)``, when the caller already has it (VGG for style tasks).
  """
  import orbax.checkpoint as ocp
  workdir = Path(workdir)
  task = tasks.get(task_id)
  if bank is None and models.is_pretrained(model_config(config)):
    bank = pretrained_bank(config, Path(bank_path or workdir / "bank"))
  if bank is not None:
    bank.check_arch(arch(config))
  stored_as = "base" if bank is None else strategy
  variables = initial_variables(config, task_id, task.head_channels, strategy, bank)
  runner = Runner(config, task_id, stored_as, variables)
  consts = runner.put(task.load(config) if consts is None else consts)
  extra = runner.strategy.prepare(config, task_id, bank, variables)  # host arrays
  fixed = runner.put({"params": runner.frozen, "stats": runner.base_stats, "extra": extra})
  state = runner.put(runner.init_state)

  steps = runner.strategy.total_steps(task_steps(config, task_id), extra)
  mgr = _checkpoint_manager(workdir / "checkpoints", config)
  start = ckpt_verify.resume_step(mgr, workdir / "checkpoints")  # the newest with good bytes
  if start:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    state = mgr.restore(start, args=ocp.args.StandardRestore(abstract))
    logging.info("%s/%s: resumed from checkpoint step %d", strategy, task_id, start)

  per_process = sharding.check_batch_size(config.batch_size)
  source = data.make_source(task_id, "train", config)
  batches = data.batches(source, batch_size=per_process, image_size=config.image_size,
                         train=True, seed=_task_seed(config, task_id),
                         worker_count=int(config.data.get("worker_count", 0) or 0),
                         device_augment=runner.device_augment)
  batches = itertools.islice(batches, start, None)  # the same batches an unbroken run sees
  reporter = Reporter(workdir if sharding.is_writer() else None, steps, start,
                      desc=f"{stored_as}/{task_id}")
  if start:  # metrics.jsonl says where the rows of this run begin
    reporter.scalars(start, {"resumed_from_step": start}, prefix="checkpoint")
  # A checkpoint is good once the loss computed from it (the next step's) is finite; the one
  # restored above is not known to be until then.
  pending, unchecked = None, start or None
  last_good = max([s for s in mgr.all_steps() if s < start], default=0)

  def report(step, metrics):
    nonlocal last_good, unchecked
    _report(reporter, step, metrics, last_good, workdir)
    if unchecked == step - 1:
      last_good, unchecked = unchecked, None

  stop_after = config.get("stop_after") or None
  try:
    for step in range(start + 1, steps + 1):
      batch = sharding.put_batch(next(batches), runner.mesh)
      state, metrics = runner.train_step(state, fixed, consts, batch)
      ckpt_verify.seal_if_done(mgr, workdir / "checkpoints", start)  # a save landed: seal it
      if pending is not None:  # read the previous step's metrics: the device never waits
        report(*pending)
      pending = (step, metrics)
      if step % config.checkpoint_every == 0 or step == steps or step == stop_after:
        report(*pending)  # never persist a state whose loss was not finite
        pending = None
        ckpt_verify.seal(mgr, workdir / "checkpoints", start)  # the previous save, finished
        ckpt_verify.save(mgr, step, state, workdir / "checkpoints")  # DiskFull when full
        unchecked = step
      eval_every = config.get("eval_every") or 0
      if eval_every and step % eval_every == 0 and step < steps:  # the last step is evaluated below
        mid = runner.evaluator.evaluate(runner.variables(fixed["params"], state.trainable,
                                                         state.batch_stats), consts, config)
        reporter.scalars(step, mid, prefix="eval")
        logging.info("%s/%s step %d eval: %s", stored_as, task_id, step, mid)
      if stop_after and step >= stop_after and step < steps:
        ckpt_verify.seal(mgr, workdir / "checkpoints", start)
        reporter.close()
        raise Interrupted(f"stopped after step {step} as asked (config.stop_after); rerun with "
                          f"the same workdir to continue")
  except FloatingPointError:
    ckpt_verify.seal(mgr, workdir / "checkpoints", start)
    if unchecked is not None:  # its very next loss was not finite: a rerun must not start there
      mgr.delete(unchecked)
    raise
  except BaseException:  # a bad batch, Ctrl-C: the last checkpoint must land before we go
    ckpt_verify.seal(mgr, workdir / "checkpoints", start)
    raise
  if pending is not None:
    report(*pending)
  ckpt_verify.seal(mgr, workdir / "checkpoints", start)

  state = runner.recalibrate(fixed, state, batches, int(config.get("bn_recalibrate", 0) or 0))
  final = runner.variables(fixed["params"], state.trainable, state.batch_stats)
  eval_metrics = runner.evaluator.evaluate(final, consts, config)
  reporter.scalars(steps, eval_metrics, prefix="eval")
  reporter.close()
  logging.info("%s/%s: %s", stored_as, task_id, eval_metrics)

  trained = sharding.to_host(state)
  arrays, mask = strategies.payload(runner.strategy, task_id, runner.frozen, trained.trainable,
                                    trained.batch_stats, config)
  arrays, mask = runner.strategy.after_task(runner, trained, fixed, consts, extra, arrays, mask)
  meta = {"metrics": eval_metrics, "threshold": float(config.mask.threshold),
          "norm": config.mask.norm, "steps": steps, "head_channels": task.head_channels,
          "trained_as": strategy}
  if task.kind == "classification":  # so apply, export and the demo can name the classes
    meta["class_names"] = list(getattr(source, "class_names", ()) or task.class_names)
  bank_root = bank.root if bank is not None else Path(bank_path or workdir / "bank")
  if sharding.is_writer():
    if bank is None:
      # merged: a pretrained encoder is frozen during the first task (strategies.base.Base)
      backbone = strategies.merge(runner.frozen, trained.trainable)["backbone"]
      base = {"params": {"backbone": backbone}}
      if trained.batch_stats:
        base["batch_stats"] = trained.batch_stats
      bank = Bank.create(bank_root, base, arch(config))
    meta = bank.add(task_id, stored_as, arrays, mask, meta, overwrite=True)
  # Only process 0 writes the bank; the others read it once it is complete.
  sharding.barrier(f"piggyjax bank {bank_root} {task_id}")
  return meta if sharding.is_writer() else Bank.open(bank_root).meta(task_id)


def pretrained_bank(config, path) -> Bank:
  """A bank whose base is the pretrained backbone ``config.model`` names, with no task yet (an
  existing bank of that very base is reopened)."""
  base = models.pretrained(model_config(config))
  if base is None:
    raise ValueError(f"config.model.preset={config.model.preset!r} is not a pretrained network")
  if sharding.is_writer():
    Bank.create(path, base, arch(config))
  sharding.barrier(f"piggyjax pretrained bank {path}")
  return Bank.open(path)


class Interrupted(RuntimeError):
  """Training stopped early on purpose; rerun with the same workdir to continue."""


def _report(reporter: Reporter, step: int, metrics: dict, last_good: int, workdir: Path):
  values = {k: float(v) for k, v in sharding.to_host(metrics).items()}
  if not math.isfinite(values["loss"]):
    raise FloatingPointError(
        f"loss became {values['loss']} at step {step}; "
        + (f"the last good checkpoint is step {last_good} in {workdir / 'checkpoints'}"
           if last_good else f"no good checkpoint yet in {workdir / 'checkpoints'}")
        + "; lower the learning rate and rerun with the same workdir to continue from there")
  reporter.advance(step, values)
  if step % reporter.log_every == 0 or step == reporter.total:
    reporter.scalars(step, values)
