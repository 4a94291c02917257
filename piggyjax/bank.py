"""The task bank on disk: the base once, then one small item per task.

    bank/
      bank.json               format, architecture, base fingerprint, task order, base checksums
      base/                   Orbax checkpoint of {'params': {'backbone'}, 'batch_stats': ...}
      tasks/<id>/meta.json    strategy, threshold, densities, metrics, sizes, per-file sha256
      tasks/<id>/arrays.bin   the task's arrays, raw little-endian, indexed in meta.json
      tasks/<id>/mask.bin     piggyback only: per layer the packed bits or zstd of them

Nothing here unpickles: the base goes through Orbax, everything else is JSON plus raw bytes
described by JSON. Both JSON files carry the sha256 of their own canonical form, and every other
file is listed with its sha256, so a damaged byte anywhere is an error naming the file. Names read
back from JSON are plain names: nothing can point outside the bank directory.

A task is written to ``tasks/.partial-<id>-<rand>`` and renamed into place, then ``bank.json`` is
replaced atomically: killed at any point, the bank reopens with its previous tasks intact; the
task being written is absent, or (when it replaced an older copy of itself) reported missing,
and adding it again works. Leftovers of a killed write are removed by the next write. One
writer at a time.
"""
from __future__ import annotations

import hashlib
import json
import math
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

from piggyjax import maskcode, masks, strategies

FORMAT = 2  # 1: no checksums over bank.json and meta.json
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # one path part, never '..'
ZSTD_LEVEL = 10
ARRAY_KINDS = "biufc"  # bool, ints, floats, complex: never object, void or strings


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
  _fsync_dir(path.parent)


def _write_bytes(path: Path, data: bytes) -> None:
  with open(path, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
  """Make a rename in ``path`` durable (a power cut, not only a kill, keeps it)."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _json_digest(obj: dict) -> str:
  body = {k: v for k, v in obj.items() if k != "sha256"}
  return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _sealed(obj: dict) -> dict:
  """``obj`` plus the sha256 of its canonical JSON: a flipped bit in a JSON file is caught too."""
  obj = json.loads(json.dumps(obj))  # digest what reading it back gives (int keys, tuples)
  return {**obj, "sha256": _json_digest(obj)}


def _read_json(path: Path, what: str, fix: str) -> dict:
  try:
    obj = json.loads(path.read_bytes())
  except FileNotFoundError:
    raise BankError(f"{what}: {path} is missing; {fix}") from None
  except (OSError, ValueError) as err:  # ValueError: bad JSON or bad UTF-8
    raise BankError(f"{what}: {path} cannot be read ({type(err).__name__}: {err}); the file is "
                    f"damaged; {fix}") from None
  if not isinstance(obj, dict):
    raise BankError(f"{what}: {path} holds a JSON {type(obj).__name__}, not an object; the file "
                    f"is damaged; {fix}")
  return obj


def _seal_ok(obj: dict) -> bool:
  return isinstance(obj.get("sha256"), str) and obj["sha256"] == _json_digest(obj)


def _plain_relpath(name: Any) -> bool:
  """A relative path of plain parts ('d/abc', 'arrays.bin'): no '..', no absolute, no '\\'."""
  return isinstance(name, str) and all(FILE_NAME.match(p) for p in name.split("/"))


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


def _index_entry(e: Any, size: int, where: str) -> tuple[str, tuple[int, ...], int, int]:
  """(path, shape, offset, nbytes) of one index entry, each checked against the file's size."""
  def bad(why: str):
    name = e.get("path") if isinstance(e, dict) else None
    raise BankError(f"{where}: index entry {name!r} {why}; the task is damaged or was not "
                    "written by piggyjax, re-add it")
  if not isinstance(e, dict):
    bad("is not a JSON object")
  path, shape = e.get("path"), e.get("shape")
  if not isinstance(path, str) or not all(path.split("/")):
    bad("has no valid path")
  if not isinstance(shape, list) or len(shape) > 32 or not all(
      type(d) is int and d >= 0 for d in shape):
    bad(f"has shape {shape!r}, not a list of sizes >= 0")
  offset, nbytes = e.get("offset"), e.get("nbytes")
  if not (type(offset) is int and type(nbytes) is int and offset >= 0 and nbytes >= 0):
    bad(f"has offset {offset!r} and nbytes {nbytes!r}, not sizes >= 0")
  if offset + nbytes > size:
    bad(f"reaches byte {offset + nbytes} of a {size}-byte file")
  return path, tuple(shape), offset, nbytes


def decode_arrays(data: bytes, index: list[dict], where: str) -> dict:
  if not isinstance(index, list):
    raise BankError(f"{where}: the array index is not a list; the task is damaged, re-add it")
  flat = {}
  for e in index:
    path, shape, offset, nbytes = _index_entry(e, len(data), where)
    try:
      if not isinstance(e.get("dtype"), str):
        raise TypeError(f"dtype {e.get('dtype')!r} is not a string")
      dtype = np.dtype(e["dtype"])
    except TypeError as err:
      raise BankError(f"{where}: array {path!r} has an unusable dtype ({err}); the task is "
                      "damaged, re-add it") from None
    if dtype.kind not in ARRAY_KINDS or dtype.shape or dtype.itemsize > 16:
      raise BankError(f"{where}: array {path!r} has dtype {dtype.str!r}; a bank stores numbers "
                      "only (bool, int, float, complex), refusing it")
    if math.prod(shape) * dtype.itemsize != nbytes:
      raise BankError(f"{where}: array {path!r} of shape {shape} and dtype {dtype.str} needs "
                      f"{math.prod(shape) * dtype.itemsize} bytes, the index says {nbytes}; "
                      "the task is damaged, re-add it")
    key = tuple(path.split("/"))
    if key in flat:
      raise BankError(f"{where}: array {path!r} is listed twice; the task is damaged, re-add it")
    flat[key] = np.frombuffer(data, dtype, count=math.prod(shape), offset=offset).reshape(shape)
  try:
    return traverse_util.unflatten_dict(flat)
  except (ValueError, TypeError, KeyError) as err:  # 'a' and 'a/b' both listed
    raise BankError(f"{where}: array paths do not form a tree ({err}); re-add the task") from None


def encode_mask(mask: dict) -> tuple[bytes, list[dict]]:
  """Per layer the smallest of the packed bits, zstd over them and Golomb-Rice coded gaps
  between the minority bits (``maskcode``: within a few % of H(density) on learned masks)."""
  packed, shapes = masks.pack(mask)
  flat = {masks.path_str(p): m for p, m in traverse_util.flatten_dict(mask).items()}
  cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
  chunks, index, offset = [], [], 0
  for key in sorted(packed):
    raw = packed[key]
    z = cctx.compress(raw)
    codec, data, extra = ("zstd", z, {}) if len(z) < len(raw) else ("packbits", raw, {})
    rice, fields = maskcode.encode(flat[key])
    if len(rice) < len(data):
      codec, data, extra = "rice", rice, fields
    index.append({"path": key, "shape": list(shapes[key]), "codec": codec,
                  "offset": offset, "nbytes": len(data), **extra})
    chunks.append(data)
    offset += len(data)
  return b"".join(chunks), index


def decode_mask(data: bytes, index: list[dict], where: str) -> dict:
  if not isinstance(index, list):
    raise BankError(f"{where}: the mask index is not a list; the task is damaged, re-add it")
  dctx = zstandard.ZstdDecompressor()
  packed, shapes, decoded = {}, {}, {}
  for e in index:
    path, shape, offset, nbytes = _index_entry(e, len(data), where)
    chunk = data[offset:offset + nbytes]
    nbits = math.prod(shape)
    if e.get("codec") == "rice":
      if path in decoded:
        raise BankError(f"{where}: mask {path!r} is listed twice; the task is damaged, re-add it")
      try:
        decoded[path] = maskcode.decode(chunk, nbits, *(e.get(f) for f in maskcode.FIELDS))
      except ValueError as err:
        raise BankError(f"{where}: mask {path!r} does not decode ({err}); the task is "
                        "damaged, re-add it") from None
      decoded[path] = decoded[path].reshape(shape)
      continue
    if e.get("codec") == "zstd":
      try:  # a frame that claims another size is refused before anything is allocated
        if zstandard.frame_content_size(chunk) not in (-1, (nbits + 7) // 8):
          raise zstandard.ZstdError(f"frame says {zstandard.frame_content_size(chunk)} bytes")
        chunk = dctx.decompress(chunk, max_output_size=(nbits + 7) // 8)
      except zstandard.ZstdError as err:
        raise BankError(f"{where}: mask {path!r} does not decompress ({err}); the task is "
                        "damaged, re-add it") from None
    elif e.get("codec") != "packbits":
      raise BankError(f"{where}: unknown mask codec {e.get('codec')!r} for {path!r}")
    if path in packed or path in decoded:
      raise BankError(f"{where}: mask {path!r} is listed twice; the task is damaged, re-add it")
    packed[path], shapes[path] = chunk, shape
  try:
    out = traverse_util.flatten_dict(masks.unpack(packed, shapes)) if packed else {}
  except (ValueError, TypeError, KeyError) as err:
    raise BankError(f"{where}: {err}") from None
  out.update({tuple(p.split("/")): m for p, m in decoded.items()})
  return traverse_util.unflatten_dict(out)


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
