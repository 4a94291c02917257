"""Piggyback masks: real-valued scores, a straight-through threshold, bit packing.

Scores are a nested dict holding only the masked leaves of a params tree (same paths, same
shapes). A task's effective weights are ``apply_masks(params, scores)``; everything without a
score passes through untouched, so one function serves every strategy.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

Params = Mapping[str, Any]
Path = tuple[str, ...]
Spec = Callable[[Path, Any], bool] | str | None

DEFAULT_THRESHOLD = 5e-3
DEFAULT_INIT = 1e-2
# Heads are per-task and never masked: a path containing one of these names is left alone.
HEAD_PREFIX = "head"


def path_str(path: Path) -> str:
  return "/".join(str(p) for p in path)


def default_spec(path: Path, leaf: Any) -> bool:
  """Conv, transposed-conv and dense kernels of the backbone; never biases, norms or heads."""
  if path[-1] != "kernel" or any(str(p).startswith(HEAD_PREFIX) for p in path):
    return False
  return getattr(leaf, "ndim", 0) >= 2


def _as_predicate(spec: Spec) -> Callable[[Path, Any], bool]:
  if spec is None:
    return default_spec
  if isinstance(spec, str):
    pattern = re.compile(spec)
    return lambda path, leaf: pattern.search(path_str(path)) is not None
  if callable(spec):
    return spec
  raise ValueError(f"spec must be None, a regex string or a predicate, got {type(spec).__name__}")


def init_scores(params: Params, spec: Spec = None, value: float = DEFAULT_INIT,
                dtype=jnp.float32) -> dict:
  """A scores tree with one ``value``-filled array per masked leaf of ``params``."""
  predicate = _as_predicate(spec)
  flat = traverse_util.flatten_dict(_unfreeze(params))
  chosen = {p: jnp.full(np.shape(v), value, dtype) for p, v in flat.items() if predicate(p, v)}
  if not chosen:
    raise ValueError(f"spec {spec!r} matches no leaf of params; leaves are: "
                     + ", ".join(path_str(p) for p in list(flat)[:12]))
  return traverse_util.unflatten_dict(chosen)


@jax.custom_vjp
def threshold(scores: jax.Array, t: float | jax.Array = DEFAULT_THRESHOLD) -> jax.Array:
  """Forward: ``scores > t`` as 0/1 in the scores' dtype. Backward: identity (straight through)."""
  return (scores > t).astype(scores.dtype)


def _threshold_fwd(scores, t):
  return threshold(scores, t), jnp.shape(t)


def _threshold_bwd(t_shape, g):
  # t is a hyper-parameter, not something to learn: it gets a zero cotangent.
  return g, jnp.zeros(t_shape)


threshold.defvjp(_threshold_fwd, _threshold_bwd)


def validate_scores(params: Params, scores: Params) -> None:
  """Every score leaf must sit on a params leaf of the same shape, and be floating point."""
  flat_p = traverse_util.flatten_dict(_unfreeze(params))
  flat_s = traverse_util.flatten_dict(_unfreeze(scores))
  for path, s in flat_s.items():
    if path not in flat_p:
      raise ValueError(f"scores have a leaf at '{path_str(path)}' that params do not have; "
                       "were the scores made for another backbone?")
    if np.shape(s) != np.shape(flat_p[path]):
      raise ValueError(f"scores at '{path_str(path)}' have shape {np.shape(s)}, params have "
                       f"{np.shape(flat_p[path])}; the scores belong to another architecture")
    if not jnp.issubdtype(jnp.result_type(s), jnp.floating):
      raise ValueError(f"scores at '{path_str(path)}' have dtype {jnp.result_type(s)}; "
                       "scores must be floating point (use binarize() for masks)")


def apply_masks(params: Params, scores: Params, t: float | jax.Array = DEFAULT_THRESHOLD) -> dict:
  """``params`` with every scored leaf multiplied by ``threshold(score, t)``."""
  validate_scores(params, scores)
  flat_s = traverse_util.flatten_dict(_unfreeze(scores))
  flat_p = traverse_util.flatten_dict(_unfreeze(params))
  out = {p: (v * threshold(flat_s[p], t).astype(v.dtype) if p in flat_s else v)
         for p, v in flat_p.items()}
  return traverse_util.unflatten_dict(out)


def apply_binary_masks(params: Params, masks: Params) -> dict:
  """Like ``apply_masks`` for stored boolean masks (no threshold, no gradient)."""
  flat_m = traverse_util.flatten_dict(_unfreeze(masks))
  flat_p = traverse_util.flatten_dict(_unfreeze(params))
  for path, m in flat_m.items():
    if path not in flat_p or np.shape(m) != np.shape(flat_p[path]):
      raise ValueError(f"mask at '{path_str(path)}' does not fit params "
                       f"(shape {np.shape(m)}); it was made for another backbone")
  keys = [p for p in flat_p if p in flat_m]
  out = dict(flat_p)
  out.update(zip(keys, _select_all(tuple(flat_m[k] for k in keys), tuple(flat_p[k] for k in keys))))
  return traverse_util.unflatten_dict(out)


@jax.jit
def _select_all(masks_, params_):
  # One compiled call for every layer: eagerly, a task switch on the paper-size U-Net spent
  # ~30 ms dispatching a where per layer; jitted it is one parallel pass (inlined under jit).
  return tuple(jnp.where(m, p, jnp.zeros_like(p)) for m, p in zip(masks_, params_))


def binarize(scores: Params, t: float = DEFAULT_THRESHOLD) -> dict:
  """Scores → boolean numpy masks (what a bank stores)."""
  return jax.tree.map(lambda s: np.asarray(s) > t, _unfreeze(scores))


def pack(masks: Params) -> tuple[dict[str, bytes], dict[str, tuple[int, ...]]]:
  """Boolean masks → ({path: packed bytes}, {path: shape}); one bit per weight, C order."""
  flat = traverse_util.flatten_dict(_unfreeze(masks))
  packed, shapes = {}, {}
  for path, m in flat.items():
    m = np.asarray(m)
    if m.dtype != np.bool_:
      if not np.isin(m, (0, 1)).all():
        raise ValueError(f"mask at '{path_str(path)}' is not binary (dtype {m.dtype})")
      m = m.astype(bool)
    key = path_str(path)
    packed[key] = np.packbits(m.reshape(-1)).tobytes()
    shapes[key] = tuple(int(d) for d in m.shape)
  return packed, shapes


def unpack(packed: Mapping[str, bytes], shapes: Mapping[str, tuple[int, ...]]) -> dict:
  """Exact inverse of ``pack``."""
  out = {}
  for key, shape in shapes.items():
    if key not in packed:
      raise ValueError(f"packed masks have no entry for '{key}'")
    n = int(np.prod(shape))
    raw = np.frombuffer(packed[key], np.uint8)
    if raw.size != (n + 7) // 8:
      raise ValueError(f"packed mask '{key}' has {raw.size} bytes, expected {(n + 7) // 8} "
                       f"for shape {tuple(shape)}")
    out[tuple(key.split("/"))] = np.unpackbits(raw, count=n).astype(bool).reshape(shape)
  return traverse_util.unflatten_dict(out)


def density(masks: Params) -> dict[str, float]:
  """Fraction of weights kept, per leaf (by path) and ``'total'`` over all masked weights."""
  flat = traverse_util.flatten_dict(_unfreeze(masks))
  out, kept, total = {}, 0, 0
  for path, m in flat.items():
    m = np.asarray(m)
    k = int(np.count_nonzero(m))
    out[path_str(path)] = k / max(m.size, 1)
    kept, total = kept + k, total + m.size
  out["total"] = kept / max(total, 1)
  return out


def count(tree: Params) -> int:
  return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def _unfreeze(tree):
  if hasattr(tree, "unfreeze"):
    return tree.unfreeze()
  return dict(tree) if isinstance(tree, Mapping) else tree
