"""Nothing trusted: every damaged or hostile bank file is an error naming the task and the file.

Tiny hand-made trees (no model): one bank with a base task 'a' and a piggyback task 'p'. Damage
is of two kinds: accidental (truncated, bit-flipped, deleted: caught by the checksums) and
crafted (a JSON file rewritten and resealed so its checksum passes: caught by validation).
"""
import json
import shutil
import sys

import numpy as np
import pytest

from piggyjax.bank import Bank, BankError, _sealed
from piggyjax.models import unet

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from test_integrity_crash import ARCH, base_tree, head, piggy_mask, same  # noqa: E402


@pytest.fixture
def bank(tmp_path):
  b = Bank.create(tmp_path / "bank", base_tree(), ARCH)
  b.add("a", "base", head("head_a", 1))
  b.add("p", "piggyback", head("head_p", 2), piggy_mask(), {"metrics": {"miou": 61.4}})
  return b


def flip(path, at=None):
  data = bytearray(path.read_bytes())
  data[len(data) // 2 if at is None else at] ^= 0x04
  path.write_bytes(bytes(data))


def truncate(path):
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damage(path, how):
  {"truncated": truncate, "bit-flipped": flip, "deleted": lambda p: p.unlink()}[how](path)


def rewrite(path, change):
  """A crafted file: edited, then resealed so its own checksum passes."""
  obj = json.loads(path.read_text())
  change(obj)
  path.write_text(json.dumps(_sealed(obj)))


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "deleted"])
@pytest.mark.parametrize("name", ["arrays.bin", "mask.bin", "meta.json"])
def test_damaged_task_file_is_named(bank, name, how):
  damage(bank.root / "tasks" / "p" / name, how)
  again = Bank.open(bank.root)
  with pytest.raises(BankError, match=rf"task 'p'.*{name}.*(checksum|missing|cannot be read)"):
    again.load("p")
  same(again.load_payload("a")[0], head("head_a", 1))  # the other task is untouched


def test_every_damaged_base_file_is_named(bank):
  files = sorted(p for p in (bank.root / "base").rglob("*") if p.is_file())
  assert len(files) >= 4
  for i, path in enumerate(files):
    saved = path.read_bytes()
    for how in ("truncated", "bit-flipped"):
      if how == "truncated" and len(saved) < 2:
        continue
      damage(path, how)
      with pytest.raises(BankError, match=rf"base: .*{path.name} fails its checksum"):
        Bank.open(bank.root).base()
      path.write_bytes(saved)
  extra = bank.root / "base" / "d" / "planted"
  extra.write_bytes(b"x")
  with pytest.raises(BankError, match="files the bank does not list.*planted"):
    Bank.open(bank.root).base()
  extra.unlink()
  same(Bank.open(bank.root).base(), base_tree())


def test_damaged_bank_json(bank):
  path = bank.root / "bank.json"
  good = path.read_text()
  path.write_text(good.replace('"p"', '"q"'))  # still valid JSON: only the checksum knows
  with pytest.raises(BankError, match="bank.json fails its checksum"):
    Bank.open(bank.root)
  path.write_text(good[: len(good) // 2])
  with pytest.raises(BankError, match="bank.json cannot be read.*damaged"):
    Bank.open(bank.root)
  path.write_text("[1, 2]")
  with pytest.raises(BankError, match="JSON list, not an object"):
    Bank.open(bank.root)
  path.write_bytes(b"\xff\xfe{")
  with pytest.raises(BankError, match="cannot be read"):
    Bank.open(bank.root)


def test_older_and_newer_formats_say_what_to_do(bank):
  path = bank.root / "bank.json"
  info = json.loads(path.read_text())
  old = {k: v for k, v in info.items() if k != "sha256"}
  path.write_text(json.dumps(dict(old, format=1)))  # format 1 had no checksums
  with pytest.raises(BankError, match=r"format 1, written by an older piggyjax.*Re-create it"):
    Bank.open(bank.root)
  path.write_text(json.dumps(_sealed(dict(old, format=99))))
  with pytest.raises(BankError, match="newer than this piggyjax.*upgrade"):
    Bank.open(bank.root)
  path.write_text(json.dumps(_sealed({k: v for k, v in old.items() if k != "format"})))
  with pytest.raises(BankError, match="no format number"):
    Bank.open(bank.root)


def test_another_architecture_names_the_flags(tmp_path):
  tiny = list(unet.preset("tiny").widths)
  b = Bank.create(tmp_path / "b", base_tree(), {"widths": tiny, "norm": "group"})
  with pytest.raises(BankError, match=r"--config.model.preset=tiny --config.model.norm=group"):
    b.check_arch({"widths": tiny, "norm": "batch"})


def test_task_from_another_base_is_refused(bank, tmp_path):
  other_base = base_tree()
  other_base["params"]["backbone"]["enc_0"]["Conv_0"]["bias"] += 1
  other = Bank.create(tmp_path / "other", other_base, ARCH)
  other.add("x", "piggyback", head("head_x", 4), piggy_mask())
  shutil.copytree(other.root / "tasks" / "x", bank.root / "tasks" / "x")  # copied across banks
  rewrite(bank.root / "bank.json", lambda i: i["tasks"].append("x"))
  with pytest.raises(BankError, match=r"task 'x' was trained on base .*add the task to the bank "
                                      r"it came from, or train it again"):
    Bank.open(bank.root).load("x")


def _meta(bank):
  return bank.root / "tasks" / "p" / "meta.json"


def _arrays(change):
  return lambda m: change(m["arrays"][0])


CRAFTED_META = {
    # file lists that point elsewhere or leave files unchecked
    "file escaping the task": (lambda m: m["files"].update({"../../../x": "0" * 64}),
                               "leaves the bank directory"),
    "absolute file": (lambda m: m["files"].update({"/etc/passwd": "0" * 64}),
                      "leaves the bank directory"),
    "arrays.bin unlisted": (lambda m: m["files"].pop("arrays.bin"), "lists no checksum"),
    "mask.bin unlisted": (lambda m: m["files"].pop("mask.bin"), "lists no checksum"),
    "files not a dict": (lambda m: m.update(files=["arrays.bin"]), "does not describe"),
    "another task's meta": (lambda m: m.update(task="a"), "does not describe task 'p'"),
    "unknown strategy": (lambda m: m.update(strategy="os.system"), "does not describe"),
    # array index entries that would read the wrong bytes or build something that is no array
    "object dtype": (_arrays(lambda e: e.update(dtype="|O")), "numbers only"),
    "string dtype": (_arrays(lambda e: e.update(dtype="<U4")), "numbers only"),
    "struct dtype": (_arrays(lambda e: e.update(dtype="i4,i4")), "numbers only"),
    "void dtype": (_arrays(lambda e: e.update(dtype="|V8")), "numbers only"),
    "dtype as a dict": (_arrays(lambda e: e.update(dtype={"names": ["a"], "formats": ["O"]})),
                        "unusable dtype"),
    "nonsense dtype": (_arrays(lambda e: e.update(dtype="pickle")), "unusable dtype"),
    "negative offset": (_arrays(lambda e: e.update(offset=-8)), "offset"),
    "offset past the end": (_arrays(lambda e: e.update(offset=10**12)), "reaches byte"),
    "float offset": (_arrays(lambda e: e.update(offset=1.5)), "offset"),
    "negative dimension": (_arrays(lambda e: e.update(shape=[-1])), "shape"),
    "boolean dimension": (_arrays(lambda e: e.update(shape=[True, 3])), "shape"),
    "huge shape": (_arrays(lambda e: e.update(shape=[10**9, 10**9])), "needs"),
    "nbytes disagrees": (_arrays(lambda e: e.update(nbytes=e["nbytes"] - 4)), "needs"),
    "no path": (_arrays(lambda e: e.pop("path")), "no valid path"),
    "empty path part": (_arrays(lambda e: e.update(path="params//x")), "no valid path"),
    "duplicate path": (lambda m: m["arrays"].append(dict(m["arrays"][0])), "listed twice"),
    "entry not an object": (lambda m: m["arrays"].append("x"), "not a JSON object"),
    "index not a list": (lambda m: m.update(arrays={"a": 1}), "not a list"),
    # mask index entries
    "unknown codec": (lambda m: m["mask"][0].update(codec="pickle"), "unknown mask codec"),
    "mask shape mismatch": (lambda m: m["mask"][0].update(shape=[3, 3]), "bytes, expected"),
    "mask past the end": (lambda m: m["mask"][0].update(nbytes=10**9), "reaches byte"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED_META))
def test_crafted_meta_is_refused(bank, case):
  change, message = CRAFTED_META[case]
  rewrite(_meta(bank), change)
  with pytest.raises(BankError, match=rf"task 'p'.*{message}"):
    Bank.open(bank.root).load("p")


def test_zstd_frame_claiming_a_huge_size_is_refused(bank, tmp_path):
  import zstandard
  bank.add("z", "piggyback", head("head_z", 5), piggy_mask())
  bomb = zstandard.ZstdCompressor().compress(b"\0" * (1 << 24))  # says 16 MiB inside
  tdir = bank.root / "tasks" / "z"
  (tdir / "mask.bin").write_bytes(bomb)
  def point_at_bomb(m):
    m["mask"] = [dict(m["mask"][0], codec="zstd", offset=0, nbytes=len(bomb))]
    m["files"]["mask.bin"] = __import__("hashlib").sha256(bomb).hexdigest()
  rewrite(tdir / "meta.json", point_at_bomb)
  with pytest.raises(BankError, match=r"task 'z' mask.bin.*does not decompress.*frame says 16777216"):
    Bank.open(bank.root).load_payload("z")


def test_crafted_bank_json_names_cannot_leave_the_bank(bank, tmp_path):
  outside = tmp_path / "outside"
  outside.mkdir()
  (outside / "meta.json").write_text("{}")
  for change, message in [
      (lambda i: i["tasks"].append("../../outside"), "not plain, distinct names"),
      (lambda i: i["tasks"].append("/etc"), "not plain, distinct names"),
      (lambda i: i["tasks"].append("a"), "not plain, distinct names"),
      (lambda i: i["tasks"].append(7), "not plain, distinct names"),
      (lambda i: i["base_files"].update({"../../outside/meta.json": "0"}), "not plain relative"),
      (lambda i: i.update(tasks="a"), "lacks arch, fingerprint, tasks"),
  ]:
    saved = (bank.root / "bank.json").read_text()
    rewrite(bank.root / "bank.json", change)
    with pytest.raises(BankError, match=message):
      Bank.open(bank.root)
    (bank.root / "bank.json").write_text(saved)


def test_symlinks_out_of_the_bank_are_refused(bank, tmp_path):
  shutil.copytree(bank.root / "tasks" / "p", tmp_path / "elsewhere")
  shutil.rmtree(bank.root / "tasks" / "p")
  (bank.root / "tasks" / "p").symlink_to(tmp_path / "elsewhere")
  with pytest.raises(BankError, match="task 'p'.*is a symlink"):
    Bank.open(bank.root).load("p")
  (bank.root / "tasks" / "p").unlink()
  shutil.copytree(tmp_path / "elsewhere", bank.root / "tasks" / "p")
  arrays = bank.root / "tasks" / "p" / "arrays.bin"
  arrays.unlink()
  arrays.symlink_to(tmp_path / "elsewhere" / "arrays.bin")  # same bytes, outside the bank
  with pytest.raises(BankError, match="task 'p'.*(leaves the bank directory|symlink)"):
    Bank.open(bank.root).load("p")


def test_a_good_bank_still_loads_exactly(bank):
  again = Bank.open(bank.root)
  arrays, mask, meta = again.load_payload("p")
  same(arrays, head("head_p", 2))
  same(mask, piggy_mask())
  assert meta["metrics"] == {"miou": 61.4}
  p = again.load("p")
  want = base_tree()["params"]["backbone"]
  got = p["params"]["backbone"]
  for layer in want:
    np.testing.assert_array_equal(
        got[layer]["Conv_0"]["kernel"],
        want[layer]["Conv_0"]["kernel"] * piggy_mask()["backbone"][layer]["Conv_0"]["kernel"])
