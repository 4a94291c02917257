"""A full disk (ENOSPC), a quota (EDQUOT) or a file size limit (EFBIG) is an error naming the
path that could not be written and how much space it needed, never a half-written file.

``write_atomic`` writes a whole file beside its destination and renames it into place, so the
previous version stays intact when the write fails. ``guard`` turns the same failures raised by
any writer (Python, Orbax/TensorStore, ArrayRecord, which report them as ValueError or
RuntimeError carrying the OS message) into ``DiskFull``.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import shutil
import uuid
from pathlib import Path

CODES = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
         errno.EFBIG: "file too large"}
_TEXT = re.compile(r"No space left on device|Disk quota exceeded|File too large|"
                   rf"os_error_code='({'|'.join(str(c) for c in CODES)})'")


class DiskFull(OSError):
  """Writing ``path`` failed for want of space; ``needed`` bytes (about) were to be written."""

  def __init__(self, path, needed: int | None, cause: str):
    self.path, self.needed = Path(path), needed
    super().__init__(errno.ENOSPC, explain(path, needed, cause))

  def __str__(self) -> str:
    return self.strerror


def _fmt(n: int) -> str:
  for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
    if n < 1024 or unit == "TiB":
      return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
    n /= 1024
  return str(n)


def explain(path, needed: int | None, cause: str) -> str:
  path = Path(path)
  where = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
  free = shutil.disk_usage(where).free
  need = f"it needs about {_fmt(needed)}" if needed else "its size is not known in advance"
  limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
  limit_text = (f"; this process may write files of at most {_fmt(limit)} (ulimit -f)"
                if limit != resource.RLIM_INFINITY else "")
  return (f"could not write {path} ({cause}): {need}, {_fmt(free)} are free on that filesystem"
          f"{limit_text}. Everything written before it is intact: free some space (or pass "
          "another --workdir) and rerun the same command to continue")


def is_disk_full(err: BaseException) -> bool:
  if isinstance(err, DiskFull):
    return False  # already explained
  if isinstance(err, OSError) and err.errno in CODES:
    return True
  # Orbax/TensorStore raise ValueError, ArrayRecord RuntimeError, shutil.copytree a list of
  # each file's error: all carry the OS's message.
  return (isinstance(err, (ValueError, RuntimeError, shutil.Error))
          and bool(_TEXT.search(str(err))))


def _cause(err: BaseException) -> str:
  if isinstance(err, OSError) and err.errno in CODES:
    return CODES[err.errno]
  m = _TEXT.search(str(err))
  text = m.group(0) if m else str(err)
  code = re.search(r"\d+", text) if text.startswith("os_error") else None
  return CODES.get(int(code.group(0)), text) if code else text.lower()


@contextlib.contextmanager
def guard(path, needed: int | None = None):
  """Raise ``DiskFull(path, needed)`` for a full disk met inside the block."""
  try:
    yield
  except BaseException as err:
    if is_disk_full(err):
      raise DiskFull(path, needed, _cause(err)) from err
    raise


def write_atomic(path, data: bytes | str, fsync: bool = True) -> None:
  """``path`` holds ``data`` afterwards, or (killed, disk full) what it held before."""
  write_all_atomic({path: data}, fsync)


def write_all_atomic(files: dict, fsync: bool = True) -> None:
  """Every file written beside its destination first, then each renamed into place: a full
  disk leaves all of them as they were (a kill in the renames, each one whole)."""
  blobs = {Path(p): d.encode() if isinstance(d, str) else d for p, d in files.items()}
  tmps = {p: p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp") for p in blobs}
  try:
    for path, data in blobs.items():
      with guard(path, len(data)), open(tmps[path], "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
          os.fsync(f.fileno())
    for path, tmp in tmps.items():
      os.replace(tmp, path)
  finally:
    for tmp in tmps.values():
      with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
