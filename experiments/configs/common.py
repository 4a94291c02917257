"""Fields every config shares; each config file overrides what differs."""
import copy

import ml_collections

from piggyjax.tasks.builtin import BUILTIN_DEFS

TASKS = "seg_coco,seg_voc,colorize_coco,style_starry,style_scream"
STRATEGIES = "scratch,finetune,decoder,piggyback"


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.tasks = TASKS                 # the continual sequence, in order (--config.tasks=a,b)
  # Every task a run may use: kind, classes, ignore/remap, style image, data spec
  # (piggyjax/tasks/definitions.py). A config file adds its own with add_task(c, ...).
  c.task_defs = ml_collections.ConfigDict(copy.deepcopy(BUILTIN_DEFS))
  c.strategies = STRATEGIES       # compared side by side by --mode=sequence
  c.model = ml_collections.ConfigDict({"preset": "tiny", "norm": "batch", "dtype": "float32"})
  c.image_size = 32
  c.batch_size = 8                # global: per-device batch = batch_size / device count
  c.steps = 100                   # per task
  c.steps_for = ml_collections.ConfigDict()  # per-task overrides, e.g. {"style_scream": 50}
  c.checkpoint_every = 50
  c.eval_every = 0                # also evaluate every this many steps (0: only at the end)
  c.eval_batches = 0              # 0 = the whole eval split
  # Piggyback (Mallya et al.): Adam 1e-4 on the scores; heads and baselines learn faster.
  # schedule: constant | step (x decay_factor at each fraction in decay_at) | cosine; see
  # piggyjax.train.schedule. Piggyback's original recipe is step, x0.1 halfway.
  c.optim = ml_collections.ConfigDict({"lr_scores": 1e-4, "lr_head": 1e-3, "lr": 1e-3,
                                       "schedule": "constant", "decay_at": (0.5,),
                                       "decay_factor": 0.1})
  c.mask = ml_collections.ConfigDict(
      {"threshold": 5e-3, "init": 1e-2, "norm": "frozen", "spec": ""})
  # Where data comes from: quickstart (offline, pip-shipped photos) | samples | dirs | tfds.
  # See piggyjax/data/factory.py for how each field is used; '' means "derive from data_dir".
  c.data = ml_collections.ConfigDict({
      "source": "quickstart", "data_dir": "", "voc_dir": "", "coco_dir": "", "image_dir": "",
      "camvid_dir": "",  # overrides seg_camvid's data_dir/camvid
      "tfds_data_dir": "", "coco_things_only": False, "coco_train_split": "",
      "coco_eval_split": "", "voc_train_split": "train", "voc_eval_split": "val",
      "on_label_size_mismatch": "skip", "strict": False, "quickstart_image_size": 96,
      "quickstart_train_examples": 512, "quickstart_eval_examples": 64, "seed": 0,
      # Read examples prepared once for this crop size (experiments/prepare.py) from here.
      "prepared_dir": "",
      # Training input in this many grain worker processes (0: threads in this process);
      # the batches are the same either way.
      "worker_count": 0,
      # Random scale, crop and flip on the accelerator, in the train step: the host only cuts
      # a square of each record into a fixed canvas (piggyjax/data/device_augment.py).
      "device_augment": False})
  # Johnson et al.'s perceptual loss; see piggyjax/tasks/style.py for how the ratios were chosen.
  c.style = ml_collections.ConfigDict(
      {"content_weight": 1.0, "style_weight": 1e5, "tv_weight": 2.0, "style_size": 256})
  c.style_image = ""              # an explicit painting for a style task, else data_dir/styles
  c.stop_after = 0                # stop (resumably) after this many steps; 0 = never
  c.figure_images = 4             # evaluation images per task in the comparison grids
  c.figure_size = 0               # their size in pixels; 0 = image_size
  c.figure_spread = False         # spread them evenly over the eval split (else the first ones)
  # A task's grid images from another task's eval split ({"colorize_camvid": "seg_msrc"}): for
  # tasks that read no labels (colorization, style), when their own split is one scene.
  c.figure_from = ml_collections.ConfigDict()
  # After a task's last step, re-estimate BatchNorm statistics as the mean over this many
  # training batches (0 = keep the running averages); train.Runner.recalibrate says why.
  c.bn_recalibrate = 0
  # The baselines (docs/BASELINES.md says where each default comes from).
  c.packnet = ml_collections.ConfigDict({"first_prune": 0.5, "prune": 0.75, "retrain_steps": 0})
  c.lwf = ml_collections.ConfigDict({"lam": 1.0, "temperature": 2.0})
  c.ewc = ml_collections.ConfigDict({"lam": 100.0, "gamma": 1.0, "batches": 8})
  c.replay = ml_collections.ConfigDict({"per_task": 16, "batch_size": 4, "weight": 1.0})
  c.joint = ml_collections.ConfigDict({"max_examples": 0})
  return c


def add_task(c: ml_collections.ConfigDict, task_id: str, **definition) -> None:
  """Adds ``config.task_defs.<task_id>``; an id defined twice is an error, not a silent overwrite."""
  if task_id in c.task_defs:
    raise ValueError(f"task {task_id!r} is defined twice: config.task_defs.{task_id} exists "
                     "already; pick another id, or change its fields in place")
  c.task_defs[task_id] = definition
