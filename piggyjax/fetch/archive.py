"""Safe reading of zip/tar archives, all-or-nothing installation, and SHA256SUMS checks.

Archive members are read one by one into memory or copied to a destination chosen by the
caller; a member with an absolute path, a `..` component, or a link that leaves the archive's
tree is refused before anything is written. A dataset is built in a hidden sibling directory
and renamed into place only when complete, so a reader never finds half of one.
"""
from __future__ import annotations

import gzip
import os
import posixpath
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Callable, Iterator

from piggyjax.fetch.download import FetchError, sha256_file


def _unsafe(name: str) -> bool:
  parts = name.replace("\\", "/").split("/")
  return name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts


def _check_link(archive: Path, name: str, target: str) -> None:
  resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
  if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
    raise FetchError(f"{archive}: member {name!r} links outside the archive ({target!r}); "
                     "refused, nothing extracted")


class Archive:
  """A zip or tar (any compression) whose member names are all checked on open."""

  def __init__(self, path: Path):
    self.path = path
    if zipfile.is_zipfile(path):
      self._zip = zipfile.ZipFile(path)
      self._tar = None
      members = {i.filename: i for i in self._zip.infolist()}
      for name, info in members.items():
        if (info.external_attr >> 16) & 0o170000 == 0o120000:  # a zip symlink
          _check_link(path, name, self._zip.read(info).decode("utf-8", "replace"))
    elif tarfile.is_tarfile(path):
      self._zip = None
      self._tar = tarfile.open(path)
      members = {m.name: m for m in self._tar.getmembers()}
      for name, m in members.items():
        if m.issym():
          _check_link(path, name, m.linkname)
        elif m.islnk() and _unsafe(m.linkname):  # a hard link names a path from the root
          _check_link(path, name, "/" + m.linkname)
        elif not (m.isfile() or m.isdir()):
          raise FetchError(f"{path}: member {name!r} is a device or fifo; refused")
    else:
      raise FetchError(f"{path} is neither a zip nor a tar archive (a truncated or HTML "
                       "download?); delete it and rerun")
    for name in members:
      if _unsafe(name):
        raise FetchError(f"{path}: member {name!r} would be written outside the destination "
                         "(absolute path or '..'); refused, nothing extracted")
    self._members = members

  def names(self) -> list[str]:
    """Regular files only: directories are implied and links are never recreated."""
    if self._zip:
      return [n for n, info in self._members.items() if not info.is_dir()]
    return [n for n, m in self._members.items() if m.isfile()]

  def read(self, name: str) -> bytes:
    if self._zip:
      return self._zip.read(name)
    f = self._tar.extractfile(self._members[name])
    return f.read()

  def copy(self, name: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if self._zip:
      with self._zip.open(name) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
    else:
      with self._tar.extractfile(self._members[name]) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)

  def extract_all(self, dest: Path, strip: int = 0) -> int:
    """Every regular file under dest (the first `strip` path components dropped); links are
    not recreated (the layouts need none)."""
    count = 0
    for name in self.names():
      parts = name.split("/")[strip:]
      if parts:
        self.copy(name, dest.joinpath(*parts))
        count += 1
    return count

  def close(self) -> None:
    (self._zip or self._tar).close()


def install(dest: Path, build: Callable[[Path], None]) -> bool:
  """Run build(tmp) on a hidden sibling of dest, then rename it to dest. False if dest exists."""
  if dest.exists():
    return False
  tmp = dest.with_name(f".{dest.name}.partial")
  if tmp.exists():  # left by a killed run: never resumed, since its state is unknown
    shutil.rmtree(tmp)
  tmp.mkdir(parents=True)
  try:
    build(tmp)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  os.replace(tmp, dest)
  return True


def read_sums(path: Path) -> Iterator[tuple[str, str]]:
  """(relative path, sha256) from a `sha256sum` file, gzip-compressed or not."""
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rt") as f:
    for line in f:
      if line.strip():
        digest, name = line.rstrip("\n").split(None, 1)
        yield name.lstrip("*"), digest


def verify(folder: Path, sums: Path) -> list[str]:
  """Problems found checking `folder` against `sums` (missing or different files); [] = all ok.
  Files the list does not name (e.g. a test split) are not problems."""
  problems = []
  for name, digest in read_sums(sums):
    path = folder / name
    if not path.is_file():
      problems.append(f"missing: {name}")
    elif sha256_file(path) != digest:
      problems.append(f"different: {name}")
  return problems
