"""Fetch the real datasets into the layouts the readers expect (experiments/get_data.py).

``get(names, data_dir)`` downloads (resuming, SHA-256 checked), extracts safely into a hidden
sibling directory and renames it into place; ``verify_sets(names, data_dir)`` checks extracted
sets against the SHA256SUMS of ../shared/data's copies. Sources and hashes: ``sets.SOURCES``.
"""
from __future__ import annotations

import os
from pathlib import Path

from piggyjax.fetch.archive import verify
from piggyjax.fetch.download import FetchError, Source
from piggyjax.fetch.sets import SETS, SOURCES, SUMS_DIR, TFDS_SETS, VERIFY, Context, not_pinned

__all__ = ["FetchError", "Source", "SETS", "SOURCES", "TFDS_SETS", "get", "verify_sets", "names",
           "not_pinned"]


def names() -> list[str]:
  return [*SETS, *TFDS_SETS]


def _check_names(wanted: list[str], allowed: list[str]) -> None:
  unknown = [n for n in wanted if n not in allowed]
  if unknown:
    raise FetchError(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(allowed)}")


def get(wanted: list[str], data_dir: Path, cache_dir: Path | None = None,
        mirror: str | None = None, from_dir: Path | None = None,
        use_tfds: bool = False) -> list[str]:
  """Fetch each named set into data_dir; returns one summary line per set (what is where).
  `mirror` (or $PIGGYJAX_DATA_MIRROR) replaces every source URL by MIRROR/<file name>."""
  _check_names(wanted, names())
  tfds_wanted = [n for n in wanted if n in TFDS_SETS]
  if tfds_wanted and not use_tfds:
    raise FetchError(f"{', '.join(tfds_wanted)} come from TFDS (which downloads and checks "
                     "them itself, into DATA/tfds): pass --tfds to let it")
  ctx = Context(data_dir, cache_dir or data_dir / ".downloads",
                mirror or os.environ.get("PIGGYJAX_DATA_MIRROR") or None, from_dir)
  data_dir.mkdir(parents=True, exist_ok=True)
  summary = []
  for name in wanted:
    if name in TFDS_SETS:
      from piggyjax.fetch.sets import tfds_prepare
      summary.append(tfds_prepare(name, data_dir))
    else:
      summary.append(f"{name}: {SETS[name](ctx)}")
  return summary


def verify_sets(wanted: list[str], data_dir: Path) -> dict[str, list[str]]:
  """Per set, the files that are missing or differ from ../shared/data's copy ([] = same)."""
  _check_names(wanted, list(VERIFY))
  return {n: verify(data_dir / VERIFY[n], SUMS_DIR / f"{n}.sha256.gz") for n in wanted}

