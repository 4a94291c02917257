"""The task bank on disk: the base once, then one small item per task.

    bank/
      bank.json               format, architecture, base fingerprint, task order, base checksums
      base/                   Orbax checkpoint of {'params': {'backbone'}, 'batch_stats': ...}
      tasks/<id>/meta.json    strategy, threshold, densities, metrics, sizes, per-file sha256
      tasks/<id>/arrays.bin   the task's arrays, raw little-endian, indexed in meta.json
      tasks/<id>/mask.bin     piggyback only: per layer the smallest of packed bits, zstd of
                              them, or a Golomb-Rice code of the gaps (piggyjax/maskcode.py)

Nothing here unpickles: the base goes through Orbax, everything else is JSON plus raw bytes
described by JSON (the formats are in ``bank_files.py``). Both JSON files carry the sha256 of
their own canonical form, and every other file is listed with its sha256, so a damaged byte
anywhere is an error naming the file. Names read back from JSON are plain names: nothing can
point outside the bank directory.

A task is written to ``tasks/.partial-<id>-<rand>`` and renamed into place, then ``bank.json`` is
replaced atomically: killed at any point, the bank reopens with its previous tasks intact; the
task being written is absent, or (when it replaced an older copy of itself) reported missing,
and adding it again works. Leftovers of a killed write are removed by the next write. One
writer at a time.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import jax
import numpy as np

from piggyjax import diskfull, masks, strategies
from piggyjax.bank_files import (  # noqa: F401  (BankError and _sealed are imported from here)
    BankError, _fsync_dir, _plain_relpath, _read_json, _seal_ok, _sealed, _sha256_dir,
    _sha256_file, _write_bytes, _write_json_atomic, decode_arrays, decode_mask, encode_arrays,
    encode_mask, fingerprint)

FORMAT = 2  # 1: no checksums over bank.json and meta.json
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# ---- the bank --------------------------------------------------------------------------------

def _checkpointer():
  """Orbax on this process alone: only process 0 writes a bank and any process may read one,
  so no save or restore of the base may wait on the other processes (a default checkpointer
  does, and hangs when only process 0 creates the bank)."""
  import orbax.checkpoint as ocp
  me = jax.process_index()
  return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
      primary_host=me, active_processes={me}))


class Bank:
  """A base network plus tasks. ``Bank.create`` starts one, ``Bank.open`` reads one."""

  def __init__(self, root: Path, info: dict):
    self.root, self.info = root, info
    self._base = None

  # creation and opening

  @classmethod
  def create(cls, path, base: dict, arch: dict) -> "Bank":
    """A new bank at ``path`` holding ``base`` = {'params': {'backbone'}, 'batch_stats'?}.

    If ``path`` already holds a bank of this very base and architecture (a first task rerun
    after it was killed between writing the base and storing the task), that bank is returned.
    """
    root = Path(path).absolute()
    base = jax.device_get(base)
    if (root / "bank.json").exists():
      existing = cls.open(root)
      if existing.fingerprint == fingerprint(base) and existing.arch == arch:
        return existing
      raise BankError(f"{root} already holds a bank; open it with Bank.open or pick a new path")
    root.mkdir(parents=True, exist_ok=True)
    # No bank.json: a create killed before its last step may have left its base behind.
    for stale in [root / "base", *root.glob(".base.*")]:
      if stale.exists():
        if not (stale / "_CHECKPOINT_METADATA").exists() and any(stale.iterdir()):
          raise BankError(f"{stale} exists and is not a base this bank wrote; pick a new path")
        shutil.rmtree(stale)
    tmp = root / f".base.{uuid.uuid4().hex}"
    ckptr = _checkpointer()
    with diskfull.guard(root / "base", sum(np.asarray(v).nbytes for v in jax.tree.leaves(base))):
      ckptr.save(tmp, base)
      ckptr.wait_until_finished()
    os.replace(tmp, root / "base")
    (root / "tasks").mkdir(exist_ok=True)
    info = _sealed({"format": FORMAT, "arch": arch, "fingerprint": fingerprint(base), "tasks": [],
                    "base_files": _sha256_dir(root / "base")})
    _write_json_atomic(root / "bank.json", info)
    bank = cls(root, info)
    bank._base = base
    return bank

  @classmethod
  def open(cls, path) -> "Bank":
    root = Path(path).absolute()
    if not (root / "bank.json").is_file():
      raise BankError(f"no bank at {root} (no bank.json); pass a directory made by a training "
                      "run (<workdir>/bank_<strategy>) or train a first task without --base_ckpt")
    fix = "the bank is damaged: restore it from a copy or re-create it by training its tasks again"
    info = _read_json(root / "bank.json", "bank", fix)
    if "sha256" in info and not _seal_ok(info):
      raise BankError(f"bank: {root / 'bank.json'} fails its checksum (truncated or modified); "
                      f"{fix}")
    fmt = info.get("format")
    if type(fmt) is not int:
      raise BankError(f"{root / 'bank.json'} has no format number; it is not a piggyjax bank")
    if fmt < FORMAT:
      raise BankError(f"{root} is a bank of format {fmt}, written by an older piggyjax; this "
                      f"version reads format {FORMAT} only (every file checksummed). Re-create "
                      "it: train its first task into a new --workdir and add the others again "
                      "(or read it with the piggyjax version that wrote it)")
    if fmt > FORMAT:
      raise BankError(f"{root} is a bank of format {fmt}, newer than this piggyjax (format "
                      f"{FORMAT}); upgrade piggyjax to read it")
    if "sha256" not in info:
      raise BankError(f"bank: {root / 'bank.json'} has no checksum; {fix}")
    tasks, files = info.get("tasks"), info.get("base_files")
    if not (isinstance(info.get("arch"), dict) and isinstance(info.get("fingerprint"), str)
            and isinstance(tasks, list) and isinstance(files, dict)):
      raise BankError(f"bank: {root / 'bank.json'} lacks arch, fingerprint, tasks or base_files; "
                      f"{fix}")
    bad = [t for t in tasks if not isinstance(t, str) or not TASK_ID.match(t)]
    if bad or len(set(tasks)) != len(tasks):
      raise BankError(f"bank: {root / 'bank.json'} lists task names {bad or tasks} that are not "
                      f"plain, distinct names; refusing them (they could point outside the bank)")
    bad = [f for f in files if not _plain_relpath(f)]
    if bad:
      raise BankError(f"bank: {root / 'bank.json'} lists base files {bad[:3]} that are not plain "
                      "relative names; refusing them (they could point outside the bank)")
    return cls(root, info)

  # reading

  @property
  def arch(self) -> dict:
    return self.info["arch"]

  @property
  def fingerprint(self) -> str:
    return self.info["fingerprint"]

  def tasks(self) -> list[str]:
    return list(self.info["tasks"])

  def check_arch(self, arch: dict) -> None:
    if arch != self.arch:
      from piggyjax.models import unet
      presets = [n for n, c in unet.PRESETS.items() if list(c.widths) == self.arch.get("widths")]
      if self.arch.get("backbone"):  # a pretrained network's bank
        presets = [self.arch["backbone"]]
      flags = (f"--config.model.preset={presets[0]} " if presets else "widths "
               f"{self.arch.get('widths')} ") + f"--config.model.norm={self.arch.get('norm')}"
      raise BankError(f"the bank at {self.root} was made for architecture {self.arch}, but the "
                      f"run uses {arch}; run with the bank's model settings ({flags}) or pass "
                      "another --base_ckpt")

  def base(self) -> dict:
    if self._base is None:
      self._verify(self.root / "base", self.info["base_files"], "base",
                   "restore the bank from a copy or re-create it", exact=True)
      restored = _checkpointer().restore(self.root / "base")
      base = jax.tree.map(np.asarray, restored)
      if fingerprint(base) != self.fingerprint:
        raise BankError(f"{self.root}/base does not match the bank's fingerprint; the base "
                        "was changed or damaged")
      self._base = base
    return self._base

  def meta(self, task: str) -> dict:
    self._check_task(task)
    tdir = self.root / "tasks" / task
    fix = ("the task is incomplete or damaged (an interrupted write?); add it again (rerun its "
           "training with the same workdir)")
    if tdir.is_symlink():
      raise BankError(f"task {task!r}: {tdir} is a symlink; a bank holds its own files, refusing it")
    meta = _read_json(tdir / "meta.json", f"task {task!r}", fix)
    if not _seal_ok(meta):
      raise BankError(f"task {task!r}: {tdir / 'meta.json'} fails its checksum (truncated or "
                      f"modified); {fix}")
    if (meta.get("task") != task or meta.get("strategy") not in ("base", *strategies.NAMES)
        or not isinstance(meta.get("files"), dict)):
      raise BankError(f"task {task!r}: {tdir / 'meta.json'} does not describe task {task!r} "
                      f"(task {meta.get('task')!r}, strategy {meta.get('strategy')!r}); {fix}")
    return meta

  def load_payload(self, task: str) -> tuple[dict, dict | None, dict]:
    """(arrays, masks or None, metadata) of one task, checked against its checksums."""
    meta = self.meta(task)
    tdir = self.root / "tasks" / task
    if meta.get("base_fingerprint") != self.fingerprint:
      raise BankError(f"task {task!r} was trained on base {meta.get('base_fingerprint')}, this "
                      f"bank's base is {self.fingerprint}; a mask only means something on its "
                      "own base: add the task to the bank it came from, or train it again on "
                      "this one (--base_ckpt=this bank)")
    need = {"arrays.bin"} | ({"mask.bin"} if meta.get("mask") else set())
    if not need <= set(meta["files"]):
      raise BankError(f"task {task!r}: meta.json lists no checksum for {sorted(need - set(meta['files']))}"
                      "; the task is damaged, add it again")
    self._verify(tdir, meta["files"], f"task {task!r}",
                 "add the task again (rerun its training) or restore the file")
    arrays = decode_arrays((tdir / "arrays.bin").read_bytes(), meta["arrays"],
                           f"task {task!r} arrays.bin")
    mask = None
    if meta.get("mask"):
      mask = decode_mask((tdir / "mask.bin").read_bytes(), meta["mask"], f"task {task!r} mask.bin")
    return arrays, mask, meta

  def load(self, task: str) -> dict:
    """The task's variables ({'params', 'batch_stats'?}), ready for ``UNet.apply``."""
    # The strategy assembles it: fine-tuned tasks (and the first) run on the latest fine-tuned
    # backbone, which is how fine-tuning forgets; PackNet joins the weights of earlier tasks.
    return strategies.load_stored(self, task)

  def sizes(self) -> dict:
    """Bytes on disk: the base, each task, and the total."""
    size = lambda d: sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
    tasks = {t: size(self.root / "tasks" / t) for t in self.tasks()}
    base = size(self.root / "base")
    return {"base": base, "tasks": tasks, "total": base + sum(tasks.values())}

  # writing

  def add(self, task: str, strategy: str, arrays: dict, mask: dict | None = None,
          metadata: dict | None = None, overwrite: bool = False) -> dict:
    """Store one task atomically; returns its metadata."""
    if not TASK_ID.match(task):
      raise BankError(f"task id {task!r} is not a plain name (letters, digits, _ . -)")
    if task in self.tasks() and not overwrite:
      raise BankError(f"the bank at {self.root} already has task {task!r}; pass overwrite=True "
                      "or use another workdir")
    self._remove_leftovers()
    tmp = self.root / "tasks" / f".partial-{task}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    data, index = encode_arrays(jax.device_get(arrays))
    _write_bytes(tmp / "arrays.bin", data)
    meta = {"task": task, "strategy": strategy, "base_fingerprint": self.fingerprint,
            "arrays": index, "mask": None, **(metadata or {})}
    if mask is not None:
      mdata, mindex = encode_mask(mask)
      _write_bytes(tmp / "mask.bin", mdata)
      n = masks.count(mask)
      meta.update(mask=mindex, masked_weights=n, mask_bytes=len(mdata),
                  bits_per_weight=8 * len(mdata) / max(n, 1), density=masks.density(mask))
    meta["files"] = {name: _sha256_file(tmp / name) for name in ("arrays.bin", "mask.bin")
                     if (tmp / name).exists()}
    meta = _sealed(meta)
    _write_json_atomic(tmp / "meta.json", meta)
    final = self.root / "tasks" / task
    old = None
    if final.exists():  # an older copy of this task, or one whose add died before bank.json
      old = final.with_name(f".trash-{task}-{uuid.uuid4().hex[:8]}")
      os.replace(final, old)  # killed right here, the task reads as missing: add it again
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    info = _sealed(dict(self.info, tasks=[t for t in self.tasks() if t != task] + [task]))
    _write_json_atomic(self.root / "bank.json", info)  # the commit point
    self.info = info
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
    return meta

  def _remove_leftovers(self) -> None:
    """What writes killed half-way left behind: unfinished task dirs and temporary JSON files."""
    for p in [*(self.root / "tasks").glob(".partial-*"), *(self.root / "tasks").glob(".trash-*")]:
      shutil.rmtree(p, ignore_errors=True)
    for p in self.root.glob(".bank.json.*.tmp"):
      p.unlink(missing_ok=True)

  # checks

  def _check_task(self, task: str) -> None:
    if task not in self.tasks():
      raise BankError(f"the bank at {self.root} has no task {task!r}; it has "
                      f"{self.tasks() or 'none'}")

  def _verify(self, root: Path, expected: dict, what: str, fix: str, exact: bool = False) -> None:
    """Every file in ``expected`` is a plain file inside ``root`` with its sha256; ``exact``:
    and nothing else is there (Orbax reads what it finds)."""
    if root.is_symlink() or not root.is_dir():
      raise BankError(f"{what}: {root} is missing or a symlink; {fix}")
    for name, digest in expected.items():
      path = root / name
      if not _plain_relpath(name) or not path.resolve().is_relative_to(root.resolve()):
        raise BankError(f"{what}: file name {name!r} leaves the bank directory; refusing it")
      if path.is_symlink():
        raise BankError(f"{what}: {path} is a symlink; a bank holds its own files, refusing it")
      if not path.is_file():
        raise BankError(f"{what}: {path} is missing; the bank is incomplete: {fix}")
      if _sha256_file(path) != digest:
        raise BankError(f"{what}: {path} fails its checksum (truncated or modified); {fix}")
    if exact:
      found = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}
      extra = sorted(found - set(expected))
      if extra:
        raise BankError(f"{what}: {root} holds files the bank does not list ({extra[:3]}); {fix}")
