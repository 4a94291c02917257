"""One 1-D ``('data',)`` mesh over every device of every process.

The batch is split along it, everything else is replicated. Each process feeds its own slice
of the global batch (``jax.make_array_from_process_local_data``), so the global batch is
``config.batch_size`` and each process reads ``batch_size / process_count`` examples per step.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

_initialized = False


def maybe_initialize_distributed(multihost: bool) -> None:
  """``jax.distributed.initialize()`` once, when asked by flag or by PIGGYJAX_MULTIHOST=1.

  TPU slices, SLURM and Open MPI tell JAX the coordinator, process count and id. Elsewhere
  set JAX_COORDINATOR_ADDRESS=host:port, PIGGYJAX_NUM_PROCESSES and PIGGYJAX_PROCESS_ID on
  every process (tests/multihost_worker.py runs two processes on one CPU that way).
  """
  global _initialized
  if _initialized or not (multihost or os.environ.get("PIGGYJAX_MULTIHOST") == "1"):
    return
  given = {k: int(os.environ[v]) for k, v in (("num_processes", "PIGGYJAX_NUM_PROCESSES"),
                                              ("process_id", "PIGGYJAX_PROCESS_ID"))
           if os.environ.get(v)}
  jax.distributed.initialize(**given)
  _initialized = True
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def mesh() -> jax.sharding.Mesh:
  # Auto axes: XLA propagates the batch sharding through the U-Net (jax's default for
  # make_mesh is Explicit, which asks every reshape to name its output sharding).
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(m) -> NamedSharding:
  return NamedSharding(m, P())


def batch_sharded(m) -> NamedSharding:
  return NamedSharding(m, P("data"))


def check_batch_size(global_batch: int) -> int:
  """The per-process batch; the global batch must split evenly over devices."""
  if global_batch % jax.device_count():
    raise ValueError(f"batch_size {global_batch} must be divisible by the {jax.device_count()} "
                     "devices; set --config.batch_size to a multiple of the device count")
  return global_batch // jax.process_count()


def put_batch(batch: dict, m) -> dict:
  """This process's slice of the batch → global arrays sharded over ``'data'``."""
  sh = batch_sharded(m)
  return {k: jax.make_array_from_process_local_data(sh, np.asarray(v)) for k, v in batch.items()
          if k != "id"}


def put_replicated(tree, m):
  return jax.device_put(tree, replicated(m))


def to_host(tree):
  """numpy copies of global arrays, on every process (call it on all of them together: an
  array sharded across processes is gathered, a replicated one is read from a local copy)."""
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.is_fully_replicated:
        x = x.addressable_data(0)
      else:
        from jax.experimental import multihost_utils
        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(x)
  return jax.tree.map(one, tree)


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (a no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def is_writer() -> bool:
  """Only process 0 writes banks, logs, figures and tables."""
  return jax.process_index() == 0
