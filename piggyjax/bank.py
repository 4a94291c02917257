"""The task bank on disk: the base once, then one small item per task.

    bank/
      bank.json               format, architecture, base fingerprint, task order, base checksums
      base/                   Orbax checkpoint of {'params': {'backbone'}, 'batch_stats': ...}
      tasks/<id>/meta.json    strategy, threshold, densities, metrics, sizes, per-file sha256
      tasks/<id>/arrays.bin   the task's arrays, raw little-endian, indexed in meta.json
      tasks/<id>/mask.bin     piggyback only: per layer the packed bits or zstd of them

Nothing here unpickles: the base goes through Orbax, everything else is JSON plus raw bytes
described by JSON. A task is written to a temporary directory and renamed into place, and
``bank.json`` is replaced atomically, so a crash leaves the previous bank loadable.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import jax
import numpy as np
import zstandard
from flax import traverse_util

from piggyjax import masks, strategies

FORMAT = 1
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ZSTD_LEVEL = 10


class BankError(ValueError):
  """A bank, or a task in it, cannot be used as asked; the message says what to do."""


def fingerprint(tree) -> str:
  """sha256 over paths, dtypes, shapes and bytes: equal iff the base is bit-identical."""
  h = hashlib.sha256()
  for path, v in sorted(traverse_util.flatten_dict(jax.device_get(tree)).items()):
    v = np.ascontiguousarray(v)
    h.update(f"{'/'.join(path)}|{v.dtype.str}|{v.shape}".encode())
    h.update(v.tobytes())
  return h.hexdigest()[:32]


def _sha256_file(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _sha256_dir(root: Path) -> dict[str, str]:
  return {str(p.relative_to(root)): _sha256_file(p)
          for p in sorted(root.rglob("*")) if p.is_file()}


def _write_json_atomic(path: Path, obj: Any) -> None:
  tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _write_bytes(path: Path, data: bytes) -> None:
  with open(path, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


# ---- raw array files -------------------------------------------------------------------------

def encode_arrays(tree: dict) -> tuple[bytes, list[dict]]:
  chunks, index, offset = [], [], 0
  for path, v in sorted(traverse_util.flatten_dict(tree).items()):
    v = np.ascontiguousarray(np.asarray(v))
    dtype = v.dtype.newbyteorder("<")
    raw = v.astype(dtype).tobytes()
    index.append({"path": "/".join(path), "dtype": dtype.str, "shape": list(v.shape),
                  "offset": offset, "nbytes": len(raw)})
    chunks.append(raw)
    offset += len(raw)
  return b"".join(chunks), index


def decode_arrays(data: bytes, index: list[dict], where: str) -> dict:
  flat = {}
  for e in index:
    try:
      dtype = np.dtype(e["dtype"])
      if dtype.hasobject:
        raise ValueError("object dtype")
      shape = tuple(int(d) for d in e["shape"])
      arr = np.frombuffer(data, dtype, count=int(np.prod(shape)), offset=int(e["offset"]))
    except (ValueError, TypeError, KeyError) as err:
      raise BankError(f"{where}: array entry {e.get('path')!r} is malformed ({err}); "
                      "the file is damaged, re-add the task") from None
    flat[tuple(e["path"].split("/"))] = arr.reshape(shape)
  return traverse_util.unflatten_dict(flat)


def encode_mask(mask: dict) -> tuple[bytes, list[dict]]:
  """Per layer the smaller of the packed bits and zstd over them (decided per layer)."""
  packed, shapes = masks.pack(mask)
  cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
  chunks, index, offset = [], [], 0
  for key in sorted(packed):
    raw = packed[key]
    z = cctx.compress(raw)
    codec, data = ("zstd", z) if len(z) < len(raw) else ("packbits", raw)
    index.append({"path": key, "shape": list(shapes[key]), "codec": codec,
                  "offset": offset, "nbytes": len(data)})
    chunks.append(data)
    offset += len(data)
  return b"".join(chunks), index


def decode_mask(data: bytes, index: list[dict], where: str) -> dict:
  dctx = zstandard.ZstdDecompressor()
  packed, shapes = {}, {}
  for e in index:
    chunk = data[e["offset"]:e["offset"] + e["nbytes"]]
    nbits = int(np.prod(e["shape"]))
    if e["codec"] == "zstd":
      chunk = dctx.decompress(chunk, max_output_size=(nbits + 7) // 8)
    elif e["codec"] != "packbits":
      raise BankError(f"{where}: unknown mask codec {e['codec']!r} for {e['path']}")
    packed[e["path"]], shapes[e["path"]] = chunk, tuple(e["shape"])
  try:
    return masks.unpack(packed, shapes)
  except ValueError as err:
    raise BankError(f"{where}: {err}") from None


# ---- the bank --------------------------------------------------------------------------------

class Bank:
  """A base network plus tasks. ``Bank.create`` starts one, ``Bank.open`` reads one."""

  def __init__(self, root: Path, info: dict):
    self.root, self.info = root, info
    self._base = None

  # creation and opening

  @classmethod
  def create(cls, path, base: dict, arch: dict) -> "Bank":
    """A new bank at ``path`` holding ``base`` = {'params': {'backbone'}, 'batch_stats'?}."""
    import orbax.checkpoint as ocp
    root = Path(path).absolute()
    if (root / "bank.json").exists():
      raise BankError(f"{root} already holds a bank; open it with Bank.open or pick a new path")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".base.{uuid.uuid4().hex}"
    base = jax.device_get(base)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(tmp, base)
    ckptr.wait_until_finished()
    os.replace(tmp, root / "base")
    (root / "tasks").mkdir(exist_ok=True)
    info = {"format": FORMAT, "arch": arch, "fingerprint": fingerprint(base), "tasks": [],
            "base_files": _sha256_dir(root / "base")}
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
    try:
      info = json.loads((root / "bank.json").read_text())
    except json.JSONDecodeError as err:
      raise BankError(f"{root}/bank.json is not valid JSON ({err}); the bank is damaged") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
      raise BankError(f"{root} is a bank of format {info.get('format') if isinstance(info, dict) else '?'}"
                      f", this piggyjax reads format {FORMAT}; re-create it with this version")
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
      raise BankError(f"the bank at {self.root} was made for architecture {self.arch}, but the "
                      f"run uses {arch}; use the bank's model settings or another --base_ckpt")

  def base(self) -> dict:
    if self._base is None:
      import orbax.checkpoint as ocp
      self._verify(self.root / "base", self.info.get("base_files", {}), "base")
      restored = ocp.StandardCheckpointer().restore(self.root / "base")
      base = jax.tree.map(np.asarray, restored)
      if fingerprint(base) != self.fingerprint:
        raise BankError(f"{self.root}/base does not match the bank's fingerprint; the base "
                        "was changed or damaged")
      self._base = base
    return self._base

  def meta(self, task: str) -> dict:
    self._check_task(task)
    path = self.root / "tasks" / task / "meta.json"
    try:
      return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
      raise BankError(f"task {task!r}: {path} cannot be read ({err}); re-add the task") from None

  def load_payload(self, task: str) -> tuple[dict, dict | None, dict]:
    """(arrays, masks or None, metadata) of one task, checked against its checksums."""
    meta = self.meta(task)
    tdir = self.root / "tasks" / task
    if meta.get("base_fingerprint") != self.fingerprint:
      raise BankError(f"task {task!r} was trained on base {meta.get('base_fingerprint')}, this "
                      f"bank's base is {self.fingerprint}; add it to the bank it came from")
    self._verify(tdir, meta["files"], f"task {task!r}")
    arrays = decode_arrays((tdir / "arrays.bin").read_bytes(), meta["arrays"],
                           f"task {task!r} arrays.bin")
    mask = None
    if meta.get("mask"):
      mask = decode_mask((tdir / "mask.bin").read_bytes(), meta["mask"], f"task {task!r} mask.bin")
    return arrays, mask, meta

  def load(self, task: str) -> dict:
    """The task's variables ({'params', 'batch_stats'?}), ready for ``UNet.apply``."""
    arrays, mask, meta = self.load_payload(task)
    latest = None
    if meta["strategy"] in ("base", "finetune"):
      # Fine-tuning keeps one network: the first task and every fine-tuned one run on the
      # backbone of the latest fine-tuned task (which is how fine-tuning forgets).
      tuned = [t for t in self.tasks() if self.meta(t)["strategy"] == "finetune"]
      if tuned:
        latest = arrays if tuned[-1] == task else self.load_payload(tuned[-1])[0]
    return strategies.assemble_stored(meta["strategy"], self.base(), arrays, mask, latest)

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
    _write_json_atomic(tmp / "meta.json", meta)
    final = self.root / "tasks" / task
    if final.exists():  # an older copy of this task or a leftover of a crashed add
      shutil.rmtree(final)
    os.replace(tmp, final)
    info = dict(self.info, tasks=[t for t in self.tasks() if t != task] + [task])
    _write_json_atomic(self.root / "bank.json", info)
    self.info = info
    return meta

  # checks

  def _check_task(self, task: str) -> None:
    if task not in self.tasks():
      raise BankError(f"the bank at {self.root} has no task {task!r}; it has "
                      f"{self.tasks() or 'none'}")

  def _verify(self, root: Path, expected: dict, what: str) -> None:
    for name, digest in expected.items():
      path = root / name
      if not path.resolve().is_relative_to(root.resolve()):
        raise BankError(f"{what}: file name {name!r} leaves the bank directory; refusing it")
      if not path.is_file():
        raise BankError(f"{what}: {path} is missing; the bank is incomplete, re-add the task")
      if _sha256_file(path) != digest:
        raise BankError(f"{what}: {path} fails its checksum (truncated or modified); "
                        "re-add the task or restore the file")
