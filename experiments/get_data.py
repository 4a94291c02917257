"""Fetch and check the real datasets into the layouts the readers expect.

  python experiments/get_data.py camvid msrc paintings --data_dir=data
  python experiments/main.py --config=experiments/configs/real.py --mode=sequence \
      --data_dir=data --workdir=runs/real

Downloads resume, are SHA-256 checked (hashes not pinned here are printed: verify them), and
each set appears in DATA only once complete. --verify compares fetched sets with the project's
own copies' SHA256SUMS. Sources, hashes and layouts: piggyjax/fetch/sets.py.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from piggyjax import fetch  # noqa: E402


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("names", nargs="*", help="datasets: " + " ".join(fetch.names()))
  parser.add_argument("--data_dir", type=Path, required=True, help="where the sets go")
  parser.add_argument("--cache_dir", type=Path, help="downloads (default DATA/.downloads)")
  parser.add_argument("--from", dest="from_dir", type=Path,
                      help="a folder of already downloaded files, used instead of the network")
  parser.add_argument("--mirror", help="fetch every file as MIRROR/<file name> instead")
  parser.add_argument("--tfds", action="store_true", help="let TFDS fetch its sets into DATA/tfds")
  parser.add_argument("--verify", action="store_true",
                      help="check the named sets in DATA against the project's SHA256SUMS")
  args = parser.parse_args(argv)
  if not args.names:
    parser.error("name at least one dataset: " + " ".join(fetch.names()))
  try:
    if args.verify:
      bad = 0
      for name, problems in fetch.verify_sets(args.names, args.data_dir).items():
        print(f"{name}: {'ok' if not problems else f'{len(problems)} problems'}")
        for p in problems[:20]:
          print(f"  {p}")
        bad += bool(problems)
      return 1 if bad else 0
    summary = fetch.get(args.names, args.data_dir, args.cache_dir, args.mirror, args.from_dir,
                        args.tfds)
  except fetch.FetchError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print("\n".join(["done; what is where:", *summary]))
  unpinned = fetch.not_pinned(args.names)
  if unpinned:
    print("not pinned: verify these downloads' sha256 (printed when fetched): "
          + ", ".join(unpinned))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
