"""Style transfer: Gram, TV and the loss terms against numpy; load(config) with missing fields.

Photos and paintings come from ../shared/data relative to the repository
(``Path(__file__).resolve().parents[2] / 'shared' / 'data'``), read with PIL here; tests
that need them fail when it is missing.
"""
from __future__ import annotations

import types
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

import piggyjax
from piggyjax import tasks
from piggyjax.models import vgg
from piggyjax.tasks import style

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
STYLES = DATA / "styles"
JPEGS = DATA / "voc_samples" / "VOCdevkit" / "VOC2012" / "JPEGImages"


def painting(name: str = "starry_night") -> np.ndarray:
  path = STYLES / f"{name}.jpg"
  if not path.exists():
    pytest.fail(f"missing {path}" + "; the sample data ../shared/data must sit beside the checkout (CI has it there)")
  return np.asarray(Image.open(path).convert("RGB"))


def photos(n: int = 2, size: int = 32) -> np.ndarray:
  files = sorted(JPEGS.glob("*.jpg"))[:n]
  if len(files) < n:
    pytest.fail(f"needs {n} photos under {JPEGS}" + "; the sample data ../shared/data must sit beside the checkout (CI has it there)")
  return np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size))) for f in files])


@pytest.fixture(scope="module")
def params():
  return vgg.load_params()


@pytest.fixture(scope="module")
def consts(params):
  return style.make_consts(params, painting(), style_size=64)


def test_gram_and_tv_match_numpy():
  f = np.random.default_rng(0).normal(size=(2, 5, 4, 3)).astype(np.float32)
  ref = np.stack([x.reshape(-1, 3).T @ x.reshape(-1, 3) / (3 * 5 * 4) for x in f])
  np.testing.assert_allclose(np.asarray(style.gram(jnp.asarray(f))), ref, rtol=1e-5, atol=1e-6)
  y = np.random.default_rng(1).uniform(size=(2, 6, 7, 3)).astype(np.float32)
  tv_ref = [np.mean((im[1:] - im[:-1]) ** 2) + np.mean((im[:, 1:] - im[:, :-1]) ** 2) for im in y]
  np.testing.assert_allclose(np.asarray(style.total_variation(jnp.asarray(y))), tv_ref, rtol=1e-5)


def test_style_targets_are_the_paintings_grams(params, consts):
  small = style.resize_longer_side(painting(), 64)
  assert max(small.shape[:2]) == 64
  feats = vgg.features(params, jnp.asarray(small, jnp.float32)[None] / 255.0)
  for name, g in zip(vgg.STYLE_LAYERS, consts["grams"]):
    f = np.asarray(feats[name], np.float64)[0]
    h, w, c = f.shape
    np.testing.assert_allclose(np.asarray(g), f.reshape(-1, c).T @ f.reshape(-1, c) / (c * h * w),
                               rtol=1e-4, atol=1e-6)
  assert set(consts["vgg"]["VGG16_0"]) == {f"Conv_{i}" for i in range(10)}  # no unused layers


def test_loss_terms_match_numpy_and_respect_valid(params, consts):
  task = tasks.get("style_starry")
  ims = photos(2)
  outputs = jnp.asarray(np.random.default_rng(2).normal(size=ims.shape), jnp.float32)
  batch = {"image": ims, "valid": np.array([True, False])}
  loss, aux = jax.jit(task.loss)(consts, outputs, batch)
  y = np.asarray(jax.nn.sigmoid(outputs))[:1]
  fy = {k: np.asarray(v, np.float64)[0] for k, v in vgg.features(params, y).items()}
  fc = np.asarray(vgg.features(params, ims[:1] / 255.0)["relu2_2"], np.float64)[0]
  content = np.mean((fy["relu2_2"] - fc) ** 2)
  styl = 0.0
  for name, g in zip(vgg.STYLE_LAYERS, consts["grams"]):
    h, w, c = fy[name].shape
    gy = fy[name].reshape(-1, c).T @ fy[name].reshape(-1, c) / (c * h * w)
    styl += np.mean((gy - np.asarray(g)) ** 2)
  tv = np.mean((y[0, 1:] - y[0, :-1]) ** 2) + np.mean((y[0, :, 1:] - y[0, :, :-1]) ** 2)
  w = style.DEFAULT_WEIGHTS
  assert float(aux["content_loss"]) == pytest.approx(w["content_weight"] * content, rel=1e-3)
  assert float(aux["style_loss"]) == pytest.approx(w["style_weight"] * styl, rel=1e-3)
  assert float(aux["tv_loss"]) == pytest.approx(w["tv_weight"] * tv, rel=1e-3)
  terms = float(aux["content_loss"] + aux["style_loss"] + aux["tv_loss"])
  assert float(loss) == pytest.approx(terms, rel=1e-5)


def test_weights_are_arguments_not_constants(consts):
  task = tasks.get("style_starry")
  ims = photos(1)
  outputs = jnp.zeros(ims.shape, jnp.float32)
  loss = jax.jit(task.loss)
  _, aux = loss(consts, outputs, {"image": ims})
  weights = {**consts["weights"], "style_weight": 2 * consts["weights"]["style_weight"]}
  doubled = {**consts, "weights": weights}
  _, aux2 = loss(doubled, outputs, {"image": ims})
  assert float(aux2["style_loss"]) == pytest.approx(2 * float(aux["style_loss"]), rel=1e-5)
  assert loss._cache_size() == 1        # new weights, same compiled program


def test_metrics_report_each_term_and_ssim_to_content(consts):
  task = tasks.get("style_scream")
  ims = photos(2)
  x = jnp.clip(ims / 255.0, 1e-4, 1 - 1e-4)
  logits = jnp.log(x / (1 - x))      # sigmoid(logits) is the content image
  state = jax.jit(task.metrics_update)(consts, task.metrics_init(), logits, {"image": ims})
  out = task.metrics_finalize(state)
  assert set(out) == {"ssim", "content_loss", "style_loss", "tv_loss", "total_loss",
                      "style_loss_photo", "style_closed_pct"}
  # The photo itself closed none of its Gram distance to the painting.
  assert out["style_loss_photo"] == pytest.approx(out["style_loss"], rel=1e-4)
  assert out["style_closed_pct"] == pytest.approx(0.0, abs=0.05)
  assert out["ssim"] == pytest.approx(1.0, abs=1e-3)       # the content image itself
  assert out["content_loss"] < 1e-3 < out["style_loss"]
  pic = task.to_image(logits[0], ims[0])
  assert pic.dtype == np.uint8 and np.abs(pic.astype(int) - ims[0]).max() <= 1


def test_load_reads_config_with_missing_fields(monkeypatch, params):
  seen = {}

  def fake_find_style_image(name, path=None, data_dir=None):
    seen.update(name=name, path=path, data_dir=data_dir)
    return painting("the_scream")

  from piggyjax.tasks import paintings
  monkeypatch.setattr(paintings, "find_style_image", fake_find_style_image)
  task = tasks.get("style_scream")

  bare = ml_collections.ConfigDict({"data": {"data_dir": str(DATA)}})
  consts = task.load(bare)
  assert seen == {"name": "the_scream", "path": None, "data_dir": str(DATA)}
  assert float(consts["weights"]["style_weight"]) == style.DEFAULT_WEIGHTS["style_weight"]
  assert [g.shape for g in consts["grams"]] == [(64, 64), (128, 128), (256, 256), (512, 512)]

  cfg = ml_collections.ConfigDict({"style_image": "/x/scream.jpg",
                                   "style": {"tv_weight": 0.5, "style_size": 32}})
  consts = task.load(cfg)
  assert seen["path"] == "/x/scream.jpg" and seen["data_dir"] is None
  assert float(consts["weights"]["tv_weight"]) == 0.5
  per_task = types.SimpleNamespace(style_image={"style_scream": "/y/s.jpg"}, style=None, data=None)
  task.load(per_task)
  assert seen["path"] == "/y/s.jpg"
  assert piggyjax.tasks.get("style_starry").style_name == "starry_night"
