"""Training checkpoints verified: never resume from a truncated or bit-flipped one.

Orbax finalises a checkpoint by renaming it into place, which survives a kill, but nothing
checks its bytes when it is read back. So once a save has finished, ``seal`` records the sha256
of every file of it in ``<run>/checkpoint_sha256/<step>.json`` (sealed JSON, written
atomically), and ``resume_step`` checks the newest checkpoint against it before it is restored:

- it matches: resume there;
- it does not (a damaged file): move it aside to ``<run>/damaged_checkpoints/`` and try the one
  before, with a warning naming both; if none is good, stop with an error naming them;
- it has no manifest (killed between Orbax's rename and ``seal``): remove it, try the one
  before (resuming from an older checkpoint gives the same result, only later).

Checkpoints written before manifests existed (no manifest at all) are used as before, with a
warning that they cannot be verified. Only process 0 writes or moves; every process reads the
same files and so reaches the same step.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from absl import logging

from piggyjax import diskfull, sharding
from piggyjax.bank_files import _read_json, _seal_ok, _sealed, _sha256_dir, _write_json_atomic

MANIFESTS = "checkpoint_sha256"
DAMAGED = "damaged_checkpoints"
_saving: dict[Path, tuple[int, int]] = {}  # checkpoints dir -> (step, bytes) of its last save


class CheckpointError(RuntimeError):
  """No training checkpoint of a run can be trusted; the message names them and what to do."""


def _manifest(ckpt_root: Path, step: int) -> Path:
  return ckpt_root.parent / MANIFESTS / f"{step}.json"


def save(mgr, step: int, state, ckpt_root: Path) -> None:
  """``mgr.save`` of ``state`` at ``step``; a full disk is a ``DiskFull`` naming the checkpoint
  (the ones before it stay as they were: Orbax writes into a temporary directory first)."""
  import orbax.checkpoint as ocp
  _saving[ckpt_root] = (step, _nbytes(state))  # an async failure is reported by ``seal``
  with diskfull.guard(ckpt_root / str(step), _saving[ckpt_root][1]):
    mgr.save(step, args=ocp.args.StandardSave(state))


def _nbytes(tree) -> int:
  import jax
  return sum(int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(tree))


def seal_if_done(mgr, ckpt_root: Path, since: int = 0) -> None:
  """``seal`` once the last asynchronous save has landed (cheap to call every step): the window
  in which a kill finds a finished checkpoint without its manifest stays about one step."""
  import jax
  if jax.process_count() > 1:
    return  # processes would see the save land at different steps: they seal at the next save
  if ckpt_root in _saving and not mgr.is_saving_in_progress():
    seal(mgr, ckpt_root, since)


def seal(mgr, ckpt_root: Path, since: int = 0) -> None:
  """Wait for Orbax's saves, then record the sha256 of every checkpoint after ``since`` that
  has none yet; drop the manifests of checkpoints Orbax has deleted."""
  step, nbytes = _saving.get(ckpt_root, (None, None))
  with diskfull.guard(ckpt_root / str(step) if step else ckpt_root, nbytes):
    mgr.wait_until_finished()  # raises what an asynchronous save met
  _saving.pop(ckpt_root, None)
  if not sharding.is_writer():
    return
  steps = set(mgr.all_steps())
  (ckpt_root.parent / MANIFESTS).mkdir(parents=True, exist_ok=True)
  for step in sorted(steps):
    path = _manifest(ckpt_root, step)
    if step > since and not path.exists() and (ckpt_root / str(step)).is_dir():
      _write_json_atomic(path, _sealed({"step": step,
                                        "files": _sha256_dir(ckpt_root / str(step))}))
  for path in (ckpt_root.parent / MANIFESTS).glob("*.json"):
    if path.stem.isdigit() and int(path.stem) not in steps:
      path.unlink(missing_ok=True)


def problem(ckpt_root: Path, step: int) -> str | None:
  """Why checkpoint ``step`` cannot be trusted, or None when every byte is as sealed."""
  path = _manifest(ckpt_root, step)
  if not path.exists():
    return "unsealed"
  try:
    manifest = _read_json(path, f"checkpoint {step}", "")
  except ValueError as err:
    return f"its manifest is unreadable ({err})"
  if not _seal_ok(manifest) or not isinstance(manifest.get("files"), dict):
    return f"its manifest {path} fails its own checksum"
  found = _sha256_dir(ckpt_root / str(step))
  missing = sorted(set(manifest["files"]) - set(found))
  changed = sorted(f for f in manifest["files"] if f in found and found[f] != manifest["files"][f])
  extra = sorted(set(found) - set(manifest["files"]))
  if missing or changed or extra:
    what = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
            f"{len(changed)} changed (e.g. {changed[0]})" if changed else "",
            f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else ""]
    return "files " + ", ".join(w for w in what if w) + " against " + str(path)
  return None


def resume_step(mgr, ckpt_root: Path) -> int:
  """The newest checkpoint whose bytes are verified (0: none, start from the beginning).

  Newer ones that are damaged are moved aside, unsealed ones removed; a warning names them and
  the step used. Raises ``CheckpointError`` when checkpoints exist and none is good."""
  steps = sorted(mgr.all_steps(), reverse=True)
  if not steps:
    return 0
  if not any(_manifest(ckpt_root, s).exists() for s in steps):
    logging.warning("checkpoints %s in %s have no sha256 manifest (written by an older piggyjax "
                    "or killed before it was written); resuming from step %d unverified",
                    sorted(steps), ckpt_root, steps[0])
    return steps[0]
  good, bad = 0, []
  for step in steps:
    why = problem(ckpt_root, step)
    if why is None:
      good = step
      break
    bad.append((step, why))
  damaged = [(s, w) for s, w in bad if w != "unsealed"]
  if sharding.is_writer():
    for step, why in bad:
      src = ckpt_root / str(step)
      if why == "unsealed":
        shutil.rmtree(src, ignore_errors=True)
      else:
        dest = ckpt_root.parent / DAMAGED / f"{step}-{uuid.uuid4().hex[:6]}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
      _manifest(ckpt_root, step).unlink(missing_ok=True)
  sharding.barrier(f"piggyjax verified {ckpt_root}")
  mgr.reload()
  named = "; ".join(f"step {s}: {'killed before it was sealed, removed' if w == 'unsealed' else w}"
                    for s, w in bad)
  if not good and damaged:
    raise CheckpointError(
        f"no training checkpoint in {ckpt_root} can be trusted ({named}); the damaged ones were "
        f"moved to {ckpt_root.parent / DAMAGED}. Rerun to train this task from the start, or "
        "restore the checkpoints from a copy")
  if damaged:
    logging.warning("checkpoint(s) in %s failed verification (%s); resuming from step %d "
                    "instead, the last good one", ckpt_root, named, good)
  elif bad:
    logging.info("checkpoints in %s: %s; resuming from step %d", ckpt_root, named, good)
  return good
