"""Hostile inputs, tried systematically: every one is a clear error or a counted skip.

Hypothesis (derandomized, so every run tries the same inputs) mutates valid image files and a
valid COCO panoptic JSON; hand-made cases cover what random bytes rarely hit (CRC-correct
headers with zero or huge sizes, masks with negative or 16-bit values, a wrong palette, paths
that leave the data directory). The last tests run the pipeline over a mix of good and bad
records: the run goes on, the bad ones are counted; under ``config.data.strict`` it stops.
"""
import collections
import io
import json
import struct
import tracemalloc
import zlib

import ml_collections
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from piggyjax import data
from piggyjax.data import records, transforms, voc

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=300,
                suppress_health_check=list(HealthCheck))
RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 255, (24, 32, 3), dtype=np.uint8)
LABEL = np.where(np.arange(32)[None, :] < 16, 12, 0).repeat(24, 0).astype(np.uint8)
LABEL[5, :] = 255


def encode(array, fmt, mode=None, **kw):
  img = Image.fromarray(array, mode) if mode else Image.fromarray(array)
  if mode == "P":
    img.putpalette(voc.voc_colormap().reshape(-1).tolist())
  buf = io.BytesIO()
  img.save(buf, fmt, **kw)
  return buf.getvalue()


SEEDS = {"jpg": encode(PHOTO, "JPEG", quality=90), "png": encode(PHOTO, "PNG"),
         "mask.png": encode(LABEL, "PNG", "P"), "gif": encode(PHOTO, "GIF"),
         "bmp": encode(PHOTO, "BMP"), "tif": encode(PHOTO, "TIFF"), "webp": encode(PHOTO, "WEBP")}
EXTREME = [0, 1, 255, 65535, 65536, 100_000, 2**31 - 1, 2**32 - 1]


@st.composite
def mutated(draw):
  kind = draw(st.sampled_from(sorted(SEEDS)))
  b = bytearray(SEEDS[kind])
  for _ in range(draw(st.integers(0, 3))):  # 0: the valid file, which must decode
    op = draw(st.sampled_from(["truncate", "flip", "header int", "cut", "insert"]))
    at = draw(st.integers(0, max(len(b) - 1, 0)))
    if op == "truncate":
      b = b[:at]
    elif op == "flip" and b:
      b[at] ^= 1 << draw(st.integers(0, 7))
    elif op == "header int":  # sizes and lengths live in the first bytes of every format
      at = draw(st.integers(0, min(len(b), 40)))
      b[at:at + 4] = struct.pack(">I", draw(st.sampled_from(EXTREME)))
    elif op == "cut":
      b = b[:at] + b[at + draw(st.integers(1, 64)):]
    else:
      b = b[:at] + draw(st.binary(min_size=1, max_size=16)) + b[at:]
  return kind, bytes(b)


def check_image(path, outcomes):
  """read_rgb gives a usable RGB image (that the transforms can crop) or a counted skip."""
  src = records.Source()
  try:
    img = records.read_rgb(path, src, "r")
  except data.SkipRecord:
    assert "r" in src.skipped and str(path) in src.skipped["r"]
    outcomes["skip: " + src.skipped["r"].split("(")[1].split(":")[0]] += 1
    return
  assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 1
  h, w = img.shape[:2]
  view = transforms.train_view(h, w, 16, np.random.default_rng(0))
  assert transforms.apply_view({"image": img}, view, 16)["image"].shape == (16, 16, 3)
  outcomes["decoded"] += 1


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL's notes on corrupt TIFF tags
def test_fuzzed_image_files_decode_or_skip(tmp_path):
  outcomes = collections.Counter()

  @FUZZ
  @given(mutated())
  def run(case):
    kind, blob = case
    path = tmp_path / f"x.{kind}"
    path.write_bytes(blob)
    check_image(path, outcomes)

  run()
  assert outcomes["decoded"] > 20 and sum(outcomes.values()) - outcomes["decoded"] > 100, outcomes


def png(w, h, color_type=2, bit_depth=8, idat=b"", plte=None):
  """A PNG whose IHDR says w x h, with correct CRCs (random bytes almost never get past them)."""
  def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
  ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + (chunk(b"PLTE", plte) if plte else b"")
          + chunk(b"IDAT", zlib.compress(idat)) + chunk(b"IEND", b""))


def jpeg_with_size(w, h):
  b = bytearray(SEEDS["jpg"])
  sof = b.index(b"\xff\xc0")  # baseline frame header: length(2) precision(1) height(2) width(2)
  b[sof + 5:sof + 9] = struct.pack(">HH", h, w)
  return bytes(b)


IMAGE_CASES = {  # name -> (file bytes, expected: "decoded" or a phrase of the skip reason)
    "truncated JPEG, header only": (SEEDS["jpg"][:200], "cannot decode"),
    "truncated JPEG, half the scan": (SEEDS["jpg"][: len(SEEDS["jpg"]) // 2], "cannot decode"),
    "truncated PNG, IDAT cut": (SEEDS["png"][:-40], "cannot decode"),
    "PNG without IEND, every pixel there": (SEEDS["png"][:-12], "decoded"),
    "truncated PNG, signature only": (SEEDS["png"][:8], "cannot decode"),
    "empty file": (b"", "cannot decode"),
    "text named .png": (b"<html>not an image</html>", "cannot decode"),
    "PNG 0 wide": (png(0, 10), "cannot decode"),
    "PNG 0 high": (png(10, 0), "cannot decode"),
    "PNG 20000x20000 header": (png(20_000, 20_000), "decompression bomb"),
    "PNG 65535x1 header, no data": (png(65_535, 1), "cannot decode"),
    "JPEG claiming 65500x65500": (jpeg_with_size(65_500, 65_500), "decompression bomb"),
    "JPEG claiming 0x0": (jpeg_with_size(0, 0), "cannot decode"),
    "PNG 1x4000, real pixels": (encode(np.zeros((4000, 1, 3), np.uint8), "PNG"), "decoded"),
}


@pytest.mark.parametrize("name", sorted(IMAGE_CASES))
def test_hand_made_image_cases(tmp_path, name):
  blob, expected = IMAGE_CASES[name]
  path = tmp_path / "x.png"
  path.write_bytes(blob)
  src = records.Source()
  if expected == "decoded":
    assert records.read_rgb(path, src, "r").shape[2] == 3
  else:
    with pytest.raises(data.SkipRecord):
      records.read_rgb(path, src, "r")
    assert expected in src.skipped["r"], src.skipped


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
  # Between MAX_IMAGE_PIXELS and twice that, PIL only warns and decodes; we skip from the header.
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
  (tmp_path / "bomb.png").write_bytes(png(120, 120, 0, idat=b"\0" * (121 * 120)))  # 14,400 px
  src = records.Source()
  with pytest.raises(data.SkipRecord):
    records.read_rgb(tmp_path / "bomb.png", src, "bomb")
  assert "120x120, over Image.MAX_IMAGE_PIXELS=10000" in src.skipped["bomb"]


def test_extreme_aspect_ratio_resizes_only_the_crop():
  tall = np.zeros((200_000, 1, 3), np.uint8)  # legal, 200k pixels; resized whole: 6.4M x 32
  tracemalloc.start()
  try:
    view = transforms.train_view(*tall.shape[:2], 32, np.random.default_rng(0))
    out = transforms.apply_view({"image": tall, "label": tall[..., 0]}, view, 32)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert out["image"].shape == (32, 32, 3) and out["label"].shape == (32, 32)
  assert peak < 20 * 2**20, peak  # the old resize-then-crop built a 600 MB array here


# ---- masks (VOC) ---------------------------------------------------------------------------------

def tiff_as_png(array):
  """PIL opens by content, not by name: a TIFF saved as .png reads as an int32 'I' image."""
  return encode(array.astype(np.int32), "TIFF")


def palette_png(label, palette):
  img = Image.fromarray(label, "P")
  img.putpalette(palette)
  buf = io.BytesIO()
  img.save(buf, "PNG")
  return buf.getvalue()


SHUFFLED = RNG.permutation(voc.voc_colormap()).reshape(-1).tolist()
MASK_CASES = {  # name -> (mask file bytes, expected: "label" (= LABEL) or a phrase of the reason)
    "VOC palette": (encode(LABEL, "PNG", "P"), "label"),
    "wrong palette: indices are the classes": (palette_png(LABEL, SHUFFLED), "label"),
    "two-colour palette, indices up to 255": (  # written by hand: PIL would remap the indices
        png(32, 24, 3, idat=b"".join(b"\0" + r.tobytes() for r in LABEL), plte=b"\0\0\0\xff\xff\xff"),
        "label"),
    "gray L mask with class values": (encode(LABEL, "PNG", "L"), "label"),
    "value 21": (encode(np.where(LABEL == 12, 21, LABEL).astype(np.uint8), "PNG", "P"), "[21]"),
    "value 254": (encode(np.where(LABEL == 12, 254, LABEL).astype(np.uint8), "PNG", "P"), "[254]"),
    "16-bit values": (encode(LABEL.astype(np.uint16) * 300, "PNG"), "neither classes"),
    # -3 and 9 only: without a check for < 0, -3 became class 253 silently
    "negative values (a TIFF named .png)": (tiff_as_png(np.where(LABEL == 255, 0, LABEL).astype(int) - 3),
                                            "[-3]"),
    "float mask": (encode(LABEL.astype(np.float32), "TIFF"), "mode F"),
    "1-bit mask": (encode(LABEL > 0, "PNG"), "mode 1"),
    "RGB mask outside the colormap": (encode(np.dstack([LABEL] * 3), "PNG"), "outside the VOC"),
    "mask of another size": (encode(LABEL[:12], "PNG", "P"), "mask is 32x12"),
    "truncated mask": (encode(LABEL, "PNG", "P")[:60], "cannot decode"),
}


def make_voc(root, masks):
  base = root / "VOCdevkit" / "VOC2012"
  for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    (base / sub).mkdir(parents=True, exist_ok=True)
  for rid, blob in masks.items():
    Image.fromarray(PHOTO).save(base / "JPEGImages" / f"{rid}.jpg")
    (base / "SegmentationClass" / f"{rid}.png").write_bytes(blob)
  (base / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(masks) + "\n")
  return root / "VOCdevkit"


def test_hand_made_mask_cases(tmp_path):
  names = sorted(MASK_CASES)
  src = data.VocSegmentation(make_voc(tmp_path, {f"m{i}": MASK_CASES[n][0]
                                                 for i, n in enumerate(names)}), "train")
  for i, name in enumerate(names):
    expected = MASK_CASES[name][1]
    if expected == "label":
      np.testing.assert_array_equal(src[i]["label"], LABEL, err_msg=name)
    else:
      with pytest.raises(data.SkipRecord):
        src[i]
      assert expected in src.skipped[f"m{i}"], (name, src.skipped[f"m{i}"])


def test_fuzzed_masks_give_valid_labels_or_skip(tmp_path):
  root = make_voc(tmp_path, {"m": SEEDS["mask.png"]})
  mask_path = root / "VOC2012" / "SegmentationClass" / "m.png"
  outcomes = collections.Counter()
  src = data.VocSegmentation(root, "train")  # reads the mask file afresh on every src[0]

  @settings(FUZZ, max_examples=200)
  @given(st.data())
  def run(d):
    blob = d.draw(mutated().filter(lambda c: c[0] == "mask.png"))[1]
    mask_path.write_bytes(blob)
    try:
      ex = src[0]
    except data.SkipRecord:
      outcomes["skip"] += 1
      return
    assert ex["label"].shape == ex["image"].shape[:2] and ex["label"].dtype == np.uint8
    assert set(np.unique(ex["label"])) <= set(range(21)) | {255}  # never an invented class
    outcomes["label"] += 1

  run()
  assert outcomes["label"] >= 1 and outcomes["skip"] > 50, outcomes


# ---- COCO panoptic JSON ----------------------------------------------------------------------------

def coco_meta():
  return {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
          "annotations": [{"image_id": 1, "file_name": "a.png",
                           "segments_info": [{"id": 70000, "category_id": 17},
                                             {"id": 300, "category_id": 184}]},
                          {"image_id": 2, "file_name": "b.png",
                           "segments_info": [{"id": 300, "category_id": 184}]}],
          "categories": [{"id": 1, "name": "person", "isthing": 1},
                         {"id": 17, "name": "cat", "isthing": 1},
                         {"id": 184, "name": "tree-merged", "isthing": 0}]}


def make_coco(root):
  (root / "val2017").mkdir(parents=True)
  (root / "annotations" / "panoptic_val2017").mkdir(parents=True)
  ids = np.full((24, 32), 300, np.int64)
  ids[:12] = 70000
  rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
  for n in "ab":
    Image.fromarray(PHOTO).save(root / "val2017" / f"{n}.jpg")
    Image.fromarray(rgb).save(root / "annotations" / "panoptic_val2017" / f"{n}.png")
  return root / "annotations" / "panoptic_val2017.json"


def paths(obj, prefix=()):
  yield prefix
  if isinstance(obj, dict):
    for k, v in obj.items():
      yield from paths(v, prefix + (k,))
  elif isinstance(obj, list):
    for i, v in enumerate(obj):
      yield from paths(v, prefix + (i,))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=6) | st.sampled_from(["../../etc/passwd", "/etc/passwd", "a.jpg", "", "1"]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=6)


def coco_outcome(root, json_path):
  """'ok' (every record reads or skips), or the clear error's kind; anything else fails."""
  try:
    src = data.CocoPanopticDir(root, "val2017")
  except ValueError as e:
    msg = str(e)
    assert str(json_path) in msg or "leaves the data directory" in msg or "no usable" in msg, msg
    return "error: " + ("path" if "leaves" in msg else "no record" if "no usable" in msg
                        else "bad file")
  for i in range(len(src)):
    try:
      ex = src[i]
      assert ex["label"].shape == ex["image"].shape[:2]
    except data.SkipRecord:
      pass
  return f"ok, {len(src.skipped)} skipped"


def test_fuzzed_coco_json_is_an_error_or_skips(tmp_path):
  json_path = make_coco(tmp_path)
  outcomes = collections.Counter()

  @settings(FUZZ, max_examples=200)
  @given(st.data())
  def run(d):
    meta = coco_meta()
    for _ in range(d.draw(st.integers(1, 2))):
      where = d.draw(st.sampled_from(list(paths(meta))))
      if not where:
        meta = d.draw(JSON_VALUES)
        break
      parent = meta
      for k in where[:-1]:
        parent = parent[k]
      if d.draw(st.booleans()):
        del parent[where[-1]]  # a missing field (or list entry)
      else:
        parent[where[-1]] = d.draw(JSON_VALUES)  # a wrongly typed or hostile one
    json_path.write_text(json.dumps(meta))
    outcomes[coco_outcome(tmp_path, json_path)] += 1

  run()
  json_path.write_bytes(b'{"images": [')
  outcomes[coco_outcome(tmp_path, json_path)] += 1
  json_path.write_bytes(b"\xff\xfe\x00")
  outcomes[coco_outcome(tmp_path, json_path)] += 1
  assert outcomes["error: bad file"] > 10 and outcomes["error: no record"] > 0, outcomes
  assert sum(v for k, v in outcomes.items() if k.startswith("ok") and k != "ok, 0 skipped") > 10


@pytest.mark.parametrize("where,name", [
    ("image", "../escape.jpg"), ("image", "/etc/passwd"), ("image", "a/../../b.jpg"),
    ("image", "x\x00.jpg"), ("png", "../../../etc/passwd"), ("png", "/tmp/x.png")])
def test_coco_paths_cannot_leave_the_data_directory(tmp_path, where, name):
  json_path = make_coco(tmp_path)
  meta = coco_meta()
  (meta["images"][0] if where == "image" else meta["annotations"][0])["file_name"] = name
  json_path.write_text(json.dumps(meta))
  with pytest.raises(ValueError, match="leaves the data directory"):
    data.CocoPanopticDir(tmp_path, "val2017")


# ---- a long run goes on; strict mode stops ----------------------------------------------------------

class Flaky(records.Source):
  """A source of our own with a bug for one record: an unforeseen error type."""
  has_labels = False

  def __len__(self):
    return 12

  def __getitem__(self, i):
    if i == 5:
      raise ZeroDivisionError("a bug in one record")
    return {"image": np.full((20, 20, 3), i, np.uint8)}


def test_bad_records_never_stop_a_long_run(tmp_path):
  bad = {k: MASK_CASES[k][0] for k in MASK_CASES if MASK_CASES[k][1] != "label"}
  masks = {"good0": MASK_CASES["VOC palette"][0], "good1": MASK_CASES["wrong palette: "
                                                                      "indices are the classes"][0],
           **{f"bad{i}": blob for i, blob in enumerate(bad.values())}}
  root = make_voc(tmp_path, masks)
  (root / "VOC2012" / "JPEGImages" / "bad0.jpg").write_bytes(png(20_000, 20_000))  # bomb image
  src = data.VocSegmentation(root, "train")
  it = data.batches(src, batch_size=2, image_size=16, train=True, seed=0, shard_index=0,
                    shard_count=1)
  for _ in range(25):  # ~4 epochs: every bad record read several times, counted once
    batch = next(it)
    assert batch["valid"].all() and set(np.unique(batch["label"])) <= {0, 12, 255}
  assert len(src.skipped) == len(bad) and set(src.skipped) == {f"bad{i}" for i in range(len(bad))}
  ev = list(data.batches(src, batch_size=4, image_size=16, train=False, seed=0, shard_index=0,
                         shard_count=1))
  assert sum(int(b["valid"].sum()) for b in ev) == 2
  flaky = Flaky()
  it = data.batches(flaky, batch_size=4, image_size=8, train=True, seed=0, shard_index=0,
                    shard_count=1)
  seen = {int(v) for _ in range(12) for v in next(it)["image"][:, 0, 0, 0]}
  assert seen == set(range(12)) - {5}
  assert flaky.skipped == {"#5": "unexpected ZeroDivisionError: a bug in one record"}


def test_strict_mode_stops_on_the_first_bad_record(tmp_path):
  root = make_voc(tmp_path, {"good": MASK_CASES["VOC palette"][0],
                             "bad": MASK_CASES["value 21"][0]})
  config = ml_collections.ConfigDict({"data": {"source": "dirs", "voc_dir": str(root),
                                               "voc_train_split": "train", "strict": True}})
  src = data.make_source("seg_voc", "train", config)
  it = data.batches(src, batch_size=2, image_size=16, train=True, seed=0, shard_index=0,
                    shard_count=1)
  with pytest.raises(data.BadRecord, match=r"record bad: mask values \[21\].*config.data.strict"):
    next(it)
  (root / "VOC2012" / "SegmentationClass" / "bad.png").unlink()  # now bad at indexing time
  with pytest.raises(data.BadRecord, match="1 records cannot be used.*without its mask"):
    data.make_source("seg_voc", "train", config)
  flaky = Flaky()
  flaky.strict = True
  with pytest.raises(ZeroDivisionError):
    list(data.batches(flaky, batch_size=4, image_size=8, train=False, seed=0, shard_index=0,
                      shard_count=1))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_apply_input_images_are_checked_too(tmp_path):
  """--mode=apply reads user files through cli.read_image: a clear usage error for each bad one."""
  from piggyjax import cli
  bad = {k: v for k, v in IMAGE_CASES.items() if v[1] != "decoded"}
  bad["PNG 10000x10000 header (PIL only warns)"] = (png(10_000, 10_000), "MAX_IMAGE_PIXELS")
  for name, (blob, _) in bad.items():
    path = tmp_path / "in.png"
    path.write_bytes(blob)
    with pytest.raises(cli.UsageError, match=r"--input=.*(not a readable image|MAX_IMAGE_PIXELS)"):
      cli.read_image(str(path))
