"""The benchmark's setting: U-Net base 32, depth 4 (`small`), 64x64, batch 8, seg_voc's 21 classes.

  python experiments/benchmark.py --config=experiments/configs/benchmark.py \
      --json=runs/bench.json --md=runs/bench.md --peer

Override any field, e.g. --config.model.preset=tiny --config.image_size=32 --config.bench.steps=2.

Piggyback's own network (the ImageNet VGG-16 step against the PyTorch peer; not in the default
sections, it adds minutes on a CPU):

  python experiments/benchmark.py --config.bench.sections=vgg_step --peer \
      --config.bench.vgg_image_size=128 --json=runs/bench_vgg.json
"""
import ml_collections

from experiments.configs import common


def get_config():
  c = common.base_config()
  c.model.preset = "small"
  c.image_size = 64
  c.batch_size = 8
  # Fields and defaults: piggyjax.bench.common.DEFAULTS.
  c.bench = ml_collections.ConfigDict({
      "task": "seg_voc", "strategies": "scratch,finetune,decoder,piggyback",
      "steps": 10, "warmup": 2, "inference_steps": 10, "mask_density": 0.9,
      "switch_preset": "paper", "switch_image_size": 64, "switch_repeats": 5,
      "storage_preset": "quick", "storage_image_size": 32, "storage_steps": 120,
      "storage_lr_scores": 2e-3, "storage_norm": "per_task",
      "peer_threads": 0,
      "sections": "train_step,inference,task_switch,storage,input_pipeline",
      "flops": True, "matmul_size": 2048,
      "input_sources": "voc,coco,camvid,folder,quickstart", "input_image_size": 256,
      "input_batch_size": 8, "input_batches": 20, "input_threads": 2, "input_cores": 16,
      "input_encodings": "raw,jpeg", "input_data_dir": "../shared/data", "input_workers": 0,
      "input_device_augment": "voc,coco", "input_rounds": 3,
      # Piggyback's own size is 224 px, batch 32: set these on an accelerator.
      "vgg_image_size": 64, "vgg_batch_size": 8, "vgg_classes": 200,
      "vgg_strategies": "piggyback,finetune", "vgg_steps": 5})
  return c
