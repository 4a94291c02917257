"""One writer per workdir and per bank: a second one is refused with a message naming the first.

``hold(path, what)`` takes an exclusive ``fcntl.flock`` on ``path/.piggyjax-writer.lock`` (for
a bank: ``.<bank>.piggyjax-writer.lock`` beside it) and writes into that file who holds it (pid,
host, command, since when). The kernel drops a flock when its holder dies, kill -9 included, so
a lock left by a killed run never blocks the rerun: the file stays, but nobody holds it. Readers (``--mode=eval``, ``--mode=apply``,
``Bank.open``) never take it.

Only process 0 writes (see ``sharding.is_writer``), so only process 0 locks; with several
processes every one calls ``hold`` at the same point and learns from process 0 whether it got
the lock, so all stop together instead of the others waiting at a barrier forever.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from absl import logging

LOCK_NAME = ".piggyjax-writer.lock"
_held: dict[Path, int] = {}  # directory -> open fd holding its flock (re-entrant per process)


class LockHeld(RuntimeError):
  """Another process is writing the same workdir or bank; the message says which one."""


def _holder_text(lock: Path) -> str:
  try:
    who = json.loads(lock.read_text() or "{}")
  except (OSError, ValueError):
    who = {}
  if not who.get("pid"):
    return "a process that has just started (it has not written its name yet)"
  text = (f"pid {who['pid']} on host {who.get('host', '?')}, running since "
          f"{who.get('since', '?')}: {who.get('command', '?')}")
  if who.get("host") == socket.gethostname():
    try:
      os.kill(int(who["pid"]), 0)
    except ProcessLookupError:  # it died; something it forked still has the file open
      text += f" (pid {who['pid']} has exited; a process it started still holds the lock)"
    except (PermissionError, ValueError):
      pass
  return text


def lock_file(root: Path, what: str) -> Path:
  """A workdir's lock lives inside it; a bank's beside it (``.bank_x.piggyjax-writer.lock``),
  so that a bank can be created, copied, replaced or removed whole while it is held."""
  return root / LOCK_NAME if what == "workdir" else root.with_name(f".{root.name}{LOCK_NAME}")


def _try_lock(root: Path, what: str) -> str | None:
  """None once this process holds root's lock, else why not (the message to raise)."""
  root = root.absolute()
  if root in _held:
    return None
  lock = lock_file(root, what)
  lock.parent.mkdir(parents=True, exist_ok=True)
  fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as err:
    os.close(fd)
    if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      return (f"the {what} {root} is being written by another process: {_holder_text(lock)}. "
              f"Two writers would mix their files: wait for that run to end (or stop it), or "
              f"pass another --workdir. Reading it (--mode=eval, --mode=apply) needs no lock")
    # A filesystem without flock (some FUSE mounts): run unguarded rather than not at all.
    logging.warning("cannot lock %s (%s); make sure no other run writes there", lock, err)
    return None
  who = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
         "command": " ".join(sys.argv)[:500],
         "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
  os.ftruncate(fd, 0)
  os.pwrite(fd, (json.dumps(who) + "\n").encode(), 0)
  _held[root] = fd
  return None


def hold(path, what: str = "workdir") -> None:
  """Become the one writer of ``path`` until ``release`` or this process ends.

  Raises ``LockHeld`` naming the process that writes there now. Call it on every process.
  """
  import jax
  why = _try_lock(Path(path), what) if jax.process_index() == 0 else None
  if jax.process_count() > 1:
    import numpy as np
    from jax.experimental import multihost_utils
    ok = multihost_utils.broadcast_one_to_all(np.int32(why is None))
    if not int(ok) and why is None:
      why = f"process 0 could not lock the {what} {Path(path).absolute()} (see its log)"
  if why is not None:
    raise LockHeld(why)


def release(path) -> None:
  fd = _held.pop(Path(path).absolute(), None)
  if fd is not None:
    os.close(fd)  # closing the last descriptor drops the flock


def holds(path) -> bool:
  return Path(path).absolute() in _held
