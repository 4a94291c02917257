"""Views made on the device (config.data.device_augment): PIL's pixels, labels never blended,
the key decides the view, and a run with it on is deterministic and resumable."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import make_tiny_config
from piggyjax import data, train, validate
from piggyjax.bank import Bank
from piggyjax.data import device_augment as da, transforms

SIZE = 32
S = da.canvas_size(SIZE)  # 48


def _canvas(side, rng, classes=5):
  image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
  label = rng.choice(np.array([0, 3, classes, 255], np.uint8), (side, side))
  canvas = np.zeros((S, S, 3), np.uint8)
  canvas[:side, :side] = image
  lab = np.full((S, S), 255, np.uint8)
  lab[:side, :side] = label
  return image, label, canvas, lab


def _render(canvas, lab, side, view):
  out = da.render(jnp.asarray(canvas), jnp.asarray(lab), jnp.int32(side),
                  jnp.int32(view.shorter), jnp.int32(view.top), jnp.int32(view.left),
                  jnp.bool_(view.flip), SIZE)
  return np.asarray(out[0]), np.asarray(out[1])


def test_render_gives_pils_view_of_the_square():
  rng = np.random.default_rng(0)
  render = jax.jit(da.render, static_argnums=7)
  agree = total = 0
  for _ in range(40):
    side = int(rng.integers(SIZE, S + 1))
    image, label, canvas, lab = _canvas(side, rng)
    view = transforms.train_view(side, side, SIZE, rng)
    ref = transforms.apply_view({"image": image, "label": label}, view, SIZE)
    got_image, got_label = (np.asarray(a) for a in render(
        canvas, lab, jnp.int32(side), jnp.int32(view.shorter), jnp.int32(view.top),
        jnp.int32(view.left), jnp.bool_(view.flip), SIZE))
    assert np.abs(got_image.astype(int) - ref["image"].astype(int)).max() <= 1
    agree += int((got_label == ref["label"]).sum())
    total += got_label.size
  # Nearest neighbour: PIL and float32 round exact ties differently (~2% of pixels here).
  assert agree / total > 0.95


def test_flip_mirrors_the_same_window():
  rng = np.random.default_rng(1)
  _, _, canvas, lab = _canvas(40, rng)
  plain = _render(canvas, lab, 40, transforms.View(44, 3, 5, False))
  flipped = _render(canvas, lab, 40, transforms.View(44, 3, 5, True))
  for a, b in zip(plain, flipped):
    np.testing.assert_array_equal(a[:, ::-1], b)


def _host_batch(rng, n=6):
  rows = []
  for k in range(n):
    h, w = [(30, 45), (60, 40), (48, 48), (100, 70), (33, 90), (40, 40)][k % 6]
    ex = {"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
          "label": rng.choice(np.array([1, 7, 255], np.uint8), (h, w))}
    rows.append(da.host_row(ex, SIZE, rng, labels=True))
  return da.stack(rows)


def test_host_row_cuts_the_square_into_the_canvas():
  rng = np.random.default_rng(2)
  image = rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)
  label = rng.integers(0, 4, (30, 45), dtype=np.uint8)
  row = da.host_row({"image": image, "label": label}, SIZE, np.random.default_rng(3), True)
  off = int(round(np.random.default_rng(3).random() * 15))
  assert row["side"] == 30 and row["image"].shape == (S, S, 3) and row["label"].shape == (S, S)
  np.testing.assert_array_equal(row["image"][:30, :30], image[:, off:off + 30])
  np.testing.assert_array_equal(row["label"][:30, :30], label[:, off:off + 30])
  assert (row["label"][30:] == 255).all() and (row["label"][:, 30:] == 255).all()
  big = da.host_row({"image": np.zeros((100, 70, 3), np.uint8)}, SIZE, rng, False)
  assert big["side"] == S and "label" not in big  # larger than the canvas: resized to it


def test_augment_shapes_dtypes_and_label_values():
  batch = _host_batch(np.random.default_rng(4))
  out = jax.jit(da.augment, static_argnums=2)(batch, jax.random.key(0), SIZE)
  assert out["image"].shape == (6, SIZE, SIZE, 3) and out["image"].dtype == jnp.uint8
  assert out["label"].shape == (6, SIZE, SIZE) and out["label"].dtype == jnp.int32
  assert set(np.unique(np.asarray(out["label"]))) <= {1, 7, 255}
  np.testing.assert_array_equal(out["valid"], batch["valid"])


def test_the_key_decides_the_view():
  batch = _host_batch(np.random.default_rng(5))
  aug = jax.jit(da.augment, static_argnums=2)
  a, b = aug(batch, jax.random.key(7), SIZE), aug(batch, jax.random.key(7), SIZE)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  c = aug(batch, jax.random.key(8), SIZE)
  assert not np.array_equal(a["image"], c["image"])
  views = [jax.jit(da.draw, static_argnums=1)(jax.random.key(i), SIZE) for i in range(64)]
  shorter = {int(v[0]) for v in views}
  assert min(shorter) >= SIZE and max(shorter) <= round(SIZE * transforms.TRAIN_SCALE[1])
  assert len(shorter) > 5 and {bool(v[3]) for v in views} == {False, True}
  assert len({(int(v[1]), int(v[2])) for v in views}) > 10


def test_pipeline_emits_canvases_and_refuses_eval():
  config = make_tiny_config()
  source = data.make_source("seg_voc", "train", config)
  it = data.batches(source, batch_size=4, image_size=SIZE, train=True, seed=0,
                    device_augment=True)
  batch = next(it)
  assert batch["image"].shape == (4, S, S, 3) and batch["label"].dtype == np.uint8
  assert batch["side"].dtype == np.int32 and (batch["side"] <= S).all()
  again = next(data.batches(source, batch_size=4, image_size=SIZE, train=True, seed=0,
                            device_augment=True))
  np.testing.assert_array_equal(batch["image"], again["image"])
  with pytest.raises(ValueError, match="device_augment is for training"):
    data.batches(source, batch_size=4, image_size=SIZE, train=False, seed=0,
                 device_augment=True)


def test_bad_values_are_named():
  config = make_tiny_config()
  # A flag is type-checked by ml_collections; a config built in code is not.
  config.data = ml_collections.ConfigDict({**config.data.to_dict(), "device_augment": "yes"})
  found = validate.problems(config, ["finetune"], device_count=1)
  assert any("config.data.device_augment='yes' must be True or False" in p for p in found)
  with pytest.raises(ValueError, match="config.data.device_augment"):
    da.enabled(config)
  with pytest.raises(ValueError, match="canvases"):
    da.augment({"image": jnp.zeros((2, 32, 40, 3), jnp.uint8), "side": jnp.zeros(2, jnp.int32),
                "valid": jnp.ones(2, bool)}, jax.random.key(0), SIZE)
  with pytest.raises(ValueError, match="cannot give 64 px"):
    da.augment(_host_batch(np.random.default_rng(0), 2), jax.random.key(0), 64)


def test_training_with_it_is_deterministic_and_resumable(tmp_path, monkeypatch):
  kw = {"data.device_augment": True, "steps": 4, "bn_recalibrate": 1}
  config = make_tiny_config(**kw)
  seen, real = [], da.augment  # what the train step and the recalibration traced

  def spy(batch, key, image_size):
    out = real(batch, key, image_size)
    seen.append((batch["image"].shape[1:3], out["image"].shape[1:3]))
    return out

  monkeypatch.setattr(train.device_augment, "augment", spy)
  train.train_task(config, "seg_voc", "base", tmp_path / "a", bank_path=tmp_path / "a" / "bank")
  assert len(seen) == 2 and set(seen) == {((S, S), (SIZE, SIZE))}
  monkeypatch.undo()
  with pytest.raises(train.Interrupted):
    train.train_task(make_tiny_config(**kw, stop_after=2), "seg_voc", "base", tmp_path / "b",
                     bank_path=tmp_path / "b" / "bank")
  train.train_task(config, "seg_voc", "base", tmp_path / "b", bank_path=tmp_path / "b" / "bank")
  a, b = (Bank.open(tmp_path / r / "bank") for r in "ab")
  la, lb = jax.tree.leaves(a.load("seg_voc")), jax.tree.leaves(b.load("seg_voc"))
  assert len(la) == len(lb) > 0
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)
  assert a.meta("seg_voc")["metrics"] == b.meta("seg_voc")["metrics"]


def test_benchmark_reports_host_rates_and_the_views_cost(tmp_path):
  from piggyjax.bench import inputs
  r = inputs.device_augment_rounds("quickstart", str(tmp_path), SIZE, 4, 2, 1, rounds=1,
                                   workdir=str(tmp_path))
  row = r["rounds"][0]
  for k in ("host_raw", "device_raw", "host_prepared", "device_prepared"):
    assert row[k]["images_per_cpu_s"] > 0 and r[f"median_{k}_images_per_cpu_s"] > 0
  assert row["vs_host_raw"]["host_raw"] == 1.0
  views = row["device_views"]
  assert views["canvas"] == S and views["batch"] == 4 and views["cpu_ms_per_batch"] > 0
