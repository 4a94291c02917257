"""The Task interface (docs/CONTRACTS.md): metadata fields plus the methods a trainer calls.

A task is a frozen dataclass, so it is hashable and can be a static argument of ``jax.jit``.
Everything that depends on the run's config (VGG weights, style targets, loss weights) comes
from ``load(config)`` as ``consts``, a pytree of arrays passed *into* jitted functions: closing
over it would bake 60 MB of weights into every compiled program.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

Batch = dict[str, Any]
Consts = Any
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  kind: str                 # segmentation | colorization | style (or your own)
  head_channels: int        # K of the model's outputs_BHWK
  primary_metric: str       # the key of metrics_finalize() that tables and forgetting use
  higher_is_better: bool
  # Regression heads start at zero (the output's neutral value: gray ab, mid-gray sigmoid);
  # classifiers keep the layer's random init, which trained segmentation faster (ABLATIONS.md).
  zero_head_init: ClassVar[bool] = False

  def load(self, config: Any) -> Consts:
    """Host-side constants the loss needs; none by default."""
    return {}

  def model_input(self, batch: Batch) -> jax.Array:
    """float32 BHW3 in [0, 1]: what the backbone sees."""
    return jnp.asarray(batch["image"]).astype(jnp.float32) / 255.0

  def loss(self, consts: Consts, outputs_BHWK: jax.Array,
           batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    raise NotImplementedError

  def metrics_init(self) -> Metrics:
    raise NotImplementedError

  def metrics_update(self, consts: Consts, state: Metrics, outputs_BHWK: jax.Array,
                     batch: Batch) -> Metrics:
    raise NotImplementedError

  def metrics_finalize(self, state: Metrics) -> dict[str, float]:
    raise NotImplementedError

  def to_image(self, outputs_HWK: jax.Array, image_HW3: np.ndarray) -> np.ndarray:
    raise NotImplementedError

  def visualize(self, image_HW3: np.ndarray, outputs_HWK: jax.Array) -> np.ndarray:
    return self.to_image(outputs_HWK, image_HW3)


def summed_metrics(keys: tuple[str, ...]) -> Metrics:
  """A state of per-key sums over valid rows plus their count, all float32 on device."""
  state = {k: jnp.zeros((), jnp.float32) for k in keys}
  state["count"] = jnp.zeros((), jnp.float32)
  return state


def add_rows(state: Metrics, per_row: dict[str, jax.Array], valid_B: jax.Array) -> Metrics:
  w = valid_B.astype(jnp.float32)
  out = {k: state[k] + jnp.sum(v * w) for k, v in per_row.items()}
  out["count"] = state["count"] + jnp.sum(w)
  return out


def finalize_means(state: Metrics) -> dict[str, float]:
  """Per-key means over every valid row seen; NaN if none was (an empty eval is not a 0)."""
  count = float(state["count"])
  return {k: (float(v) / count if count else float("nan"))
          for k, v in state.items() if k != "count"}
