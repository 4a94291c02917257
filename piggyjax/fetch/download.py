"""One file from a URL into a cache: resumable (HTTP Range into a .part file), SHA-256 checked.

A file lands under its final name only once its hash matches (or, when no hash is pinned, once
it is complete, with its hash printed for the user to check). Every failure is a FetchError
whose message names the URL, the expected hash and where to drop the file by hand.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHUNK = 1 << 20


class FetchError(Exception):
  """A download, checksum, extraction or layout problem; its message is meant for the user."""


@dataclasses.dataclass(frozen=True)
class Source:
  """One downloadable file. `sha256=None` means not pinned here: the fetcher prints the hash."""
  file: str                   # name in the cache (and in a --mirror / --from directory)
  url: str
  sha256: str | None = None
  size: int | None = None
  pinned_by: str = ""         # where the hash comes from (PROVENANCE.md, TFDS's checksums, ...)


def sha256_file(path: Path) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def _say(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


class Progress:
  """A byte counter: a redrawn bar on a terminal, a line every 10 % (or 64 MiB) elsewhere."""

  def __init__(self, name: str, total: int | None, done: int = 0):
    self.name, self.total, self.done, self.t0 = name, total, done, time.time()
    self.tty = sys.stderr.isatty()
    self._next_line = done

  def update(self, n: int) -> None:
    self.done += n
    mib = self.done / 2**20
    if self.tty:
      if self.total:
        filled = int(24 * self.done / self.total)
        bar = f"[{'#' * filled}{'.' * (24 - filled)}] {mib:.1f}/{self.total / 2**20:.1f} MiB"
      else:
        bar = f"{mib:.1f} MiB"
      sys.stderr.write(f"\r{self.name} {bar}  ")
      sys.stderr.flush()
    elif self.done >= self._next_line:
      step = self.total // 10 if self.total else 64 << 20
      self._next_line = self.done + max(step, CHUNK)
      of = f" of {self.total / 2**20:.1f}" if self.total else ""
      _say(f"{self.name}: {mib:.1f}{of} MiB")

  def close(self) -> None:
    if self.tty:
      sys.stderr.write("\n")


def manual_hint(src: Source, cache_dir: Path) -> str:
  expected = src.sha256 or "not pinned (any; its sha256 will be printed)"
  return (f"  url:      {src.url}\n  sha256:   {expected}\n"
          f"  by hand:  download it yourself and put it at {cache_dir / src.file}\n"
          f"            (or pass --from=DIR with {src.file} in DIR), then rerun")


def _check(path: Path, src: Source, cache_dir: Path, what: str) -> str:
  digest = sha256_file(path)
  if src.sha256 and digest != src.sha256:
    raise FetchError(f"{what} {path} has sha256 {digest}, not the pinned one:\n"
                     + manual_hint(src, cache_dir))
  if not src.sha256:
    _say(f"{src.file}: sha256 {digest} (not pinned: verify it against the source)")
  return digest


def _open(url: str, start: int, timeout: float):
  request = urllib.request.Request(url, headers={"User-Agent": "piggyjax-get-data"})
  if start:
    request.add_header("Range", f"bytes={start}-")
  return urllib.request.urlopen(request, timeout=timeout)


def _stream(url: str, part: Path, name: str, size: int | None, timeout: float) -> None:
  start = part.stat().st_size if part.exists() else 0
  try:
    response = _open(url, start, timeout)
  except urllib.error.HTTPError as e:
    if e.code == 416 and start:  # the .part is already whole (or longer): let the hash decide
      return
    raise
  with response:
    if start and response.status != 206:  # the server ignored Range: start over
      start = 0
    length = response.headers.get("Content-Length")
    total = size or (start + int(length) if length else None)
    progress = Progress(name, total, start)
    try:
      with open(part, "ab" if start else "wb") as f:
        while chunk := response.read(CHUNK):
          f.write(chunk)
          progress.update(len(chunk))
    finally:
      progress.close()
    if length is not None and part.stat().st_size < start + int(length):
      raise OSError(f"connection closed after {part.stat().st_size} bytes")


def fetch(src: Source, cache_dir: Path, mirror: str | None = None, from_dir: Path | None = None,
          timeout: float = 60.0, retries: int = 2) -> Path:
  """The verified file for `src`: from --from, the cache, or downloaded (resuming a .part)."""
  if from_dir is not None and (from_dir / src.file).is_file():
    _check(from_dir / src.file, src, cache_dir, "the file given with --from,")
    return from_dir / src.file
  final = cache_dir / src.file
  if final.is_file():  # only ever renamed here after its check; re-checked in case of damage
    try:
      _check(final, src, cache_dir, "the cached file")
      return final
    except FetchError as e:
      _say(f"{e}\n  (deleted; downloading it again)")
      final.unlink()
  cache_dir.mkdir(parents=True, exist_ok=True)
  part = final.with_name(final.name + ".part")
  url = f"{mirror.rstrip('/')}/{src.file}" if mirror else src.url
  for attempt in range(retries + 1):
    try:
      _stream(url, part, src.file, src.size, timeout)
      break
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
      # a connection cut mid-file is resumed; a refusal or an HTTP error status is final
      if attempt < retries and part.exists() and not isinstance(e, urllib.error.HTTPError):
        _say(f"{src.file}: {type(e).__name__}: {e}; resuming ({attempt + 1}/{retries})")
        continue
      hint = manual_hint(dataclasses.replace(src, url=url), cache_dir)
      raise FetchError(f"could not download {src.file} ({type(e).__name__}: {e}):\n{hint}") \
          from None
  try:
    _check(part, dataclasses.replace(src, url=url), cache_dir, f"the download of {url},")
  except FetchError:
    part.unlink()  # a wrong file is never resumed from
    raise
  os.replace(part, final)
  return final
