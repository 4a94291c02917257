"""The bank's files: checksums, sealed JSON, atomic writes, and the raw array and mask formats.

Everything read back is validated before use: dtypes are plain numbers, offsets and shapes fit
the bytes on disk, names are single path parts. Nothing here unpickles.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from pathlib import Path
from typing import Any

import jax
import numpy as np
import zstandard
from flax import traverse_util

from piggyjax import diskfull, maskcode, masks

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
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def _sha256_dir(root: Path) -> dict[str, str]:
  return {str(p.relative_to(root)): _sha256_file(p)
          for p in sorted(root.rglob("*")) if p.is_file()}


def _write_json_atomic(path: Path, obj: Any) -> None:
  tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
  text = json.dumps(obj, indent=1, sort_keys=True)
  with diskfull.guard(path, len(text)), open(tmp, "w") as f:  # full: the old file stays
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  _fsync_dir(path.parent)


def _write_bytes(path: Path, data: bytes) -> None:
  with diskfull.guard(path, len(data)), open(path, "wb") as f:
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
