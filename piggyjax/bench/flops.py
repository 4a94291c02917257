"""The train step against the machine's physical limit: FLOPs per step from XLA's cost analysis
over a float32 matmul's FLOP/s, the matmul timed in the same rounds as the steps (so both see
the same load on a shared machine) and the fraction reported per round, then its median."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def matmul(n: int = 2048) -> tuple[Callable[[], None], float]:
  """A timer for an n x n x n float32 matmul and its GFLOP (2 n^3)."""
  rng = np.random.default_rng(0)
  a = jax.device_put(rng.standard_normal((n, n), np.float32))
  b = jax.device_put(rng.standard_normal((n, n), np.float32))
  mm = jax.jit(jnp.dot)
  mm(a, b).block_until_ready()
  return (lambda: mm(a, b).block_until_ready()), 2.0 * n**3 / 1e9


def _gflop(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"]) / 1e9


def step_gflop(runner, state, fixed, consts, batch) -> float:
  """XLA's count for one compiled train step (lowering only: nothing runs or is donated)."""
  return _gflop(runner.train_step.lower(state, fixed, consts, batch).compile())


def forward(config, task_id: str, variables: dict, batch_np: dict) -> tuple[Callable[[], None], float]:
  """The step's forward pass alone (same network and batch, the step's compiler options), so the
  fraction of peak can be told apart between the forward and the backward pass."""
  from piggyjax import tasks, train
  from piggyjax.models import unet
  task = tasks.get(task_id)
  model = unet.UNet(train.model_config(config), ((task_id, task.head_channels),))
  v, x = jax.device_put(variables), jax.device_put(task.model_input(batch_np))
  fn = jax.jit(lambda v, x: model.apply(v, x, task_id, False),
               compiler_options=train.compiler_options())
  gflop = _gflop(fn.lower(v, x).compile())
  fn(v, x).block_until_ready()
  return (lambda: fn(v, x).block_until_ready()), gflop


def conv_layers(config, variables: dict) -> list[tuple[int, tuple, bool]]:
  """The backbone's 3x3 convolutions as (side in pixels, HWIO kernel shape, first layer?): the
  first layer's input gradient (with respect to the image) is never computed by a step."""
  from piggyjax import train
  depth = train.model_config(config).depth
  layers = []
  for block, modules in variables["params"]["backbone"].items():
    if block.startswith("up_"):
      continue                          # the up-convolutions are matmuls, not convolutions
    level = depth if block == "mid" else int(block.split("_")[1])
    for name in sorted(modules):
      kernel = modules[name].get("kernel") if isinstance(modules[name], dict) else None
      if kernel is not None and kernel.ndim == 4:
        layers.append((config.image_size // 2**level, tuple(kernel.shape),
                       block == "enc_0" and name == "Conv_0"))
  return layers


CONV_PARTS = ("forward", "input_grad", "weight_grad")


def convolutions(config, variables: dict, parts=CONV_PARTS, options: dict | None = None
                 ) -> tuple[Callable[[], None], float]:
  """The step's 3x3 convolutions alone, on random inputs with nothing around them: per layer the
  forward convolution, the input gradient (all but the first layer) and the weight gradient,
  as XLA lowers a ``jax.vjp`` of ``lax.conv_general_dilated``. Timed beside the step, it is the
  ceiling for any step built from these kernels (``options``: XLA compiler options; default the
  train step's)."""
  from piggyjax import train
  layers = conv_layers(config, variables)
  rng = np.random.default_rng(0)
  b = int(config.batch_size)
  args = [tuple(jax.device_put(rng.standard_normal(shape, np.float32))
                for shape in ((b, side, side, k[2]), k, (b, side, side, k[3])))
          for side, k, _ in layers]
  firsts = [first for _, _, first in layers]

  def conv(x, k):
    return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  def program(args):
    outs = []
    for (x, k, g), first in zip(args, firsts):
      y, vjp = jax.vjp(conv, x, k)
      dx, dk = vjp(g)   # unused outputs are dead code: XLA drops their convolutions
      outs += [y] * ("forward" in parts) + [dk] * ("weight_grad" in parts)
      outs += [dx] * ("input_grad" in parts and not first)
    return outs

  opts = train.compiler_options() if options is None else options
  fn = jax.jit(program, compiler_options=opts)
  gflop = _gflop(fn.lower(args).compile())
  jax.block_until_ready(fn(args))
  return (lambda: jax.block_until_ready(fn(args))), gflop


def vs_peak(step_times: list[float], gflop: float, mm_times: list[float],
            mm_gflop: float) -> dict:
  step_rate = gflop / np.asarray(step_times)
  peak = mm_gflop / np.asarray(mm_times)
  return {"gflop_per_step": gflop, "achieved_gflops_median": gflop / float(np.median(step_times)),
          "matmul_peak_gflops_median": mm_gflop / float(np.median(mm_times)),
          "fraction_of_peak_median_paired": float(np.median(step_rate / peak)),
          "floor_ms_at_peak": 1e3 * gflop * float(np.median(mm_times)) / mm_gflop}
