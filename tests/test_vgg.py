"""VGG-16 features and the restricted checkpoint reader.

Real photos come from ../shared/data relative to the repository
(``Path(__file__).resolve().parents[2] / 'shared' / 'data'``); tests needing them fail without it.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from piggyjax.models import vgg

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
JPEGS = DATA / "voc_samples" / "VOCdevkit" / "VOC2012" / "JPEGImages"


@pytest.fixture(scope="module")
def params():
  return vgg.load_params()


def photo(size: int = 64) -> np.ndarray:
  files = sorted(JPEGS.glob("*.jpg"))
  if not files:
    pytest.fail(f"no sample photos under {JPEGS}" + "; the sample data ../shared/data must sit beside the checkout (CI has it there)")
  return np.asarray(Image.open(files[0]).convert("RGB").resize((size, size), Image.BILINEAR))


def test_first_conv_equals_checkpoint_arrays(params):
  # An independent read of the package's own file (plain pickle is fine for this trusted copy
  # in a test) so the comparison does not go through the code under test.
  raw = pickle.loads(vgg.default_checkpoint().read_bytes())
  for leaf in ("kernel", "bias"):
    np.testing.assert_array_equal(params["VGG16_0"]["Conv_0"][leaf], raw["VGG16_0"]["Conv_0"][leaf])
  assert params["VGG16_0"]["Conv_0"]["kernel"].shape == (3, 3, 3, 64)
  assert sum(x.size for x in jax.tree.leaves(params)) == 14_714_688


def test_features_of_a_real_photo_are_finite_and_deterministic(params):
  x = photo(64)[None].astype(np.float32) / 255.0
  a = vgg.features(params, x)
  b = vgg.features(params, x)
  shapes = {k: v.shape for k, v in a.items()}
  assert shapes == {"relu1_2": (1, 64, 64, 64), "relu2_2": (1, 32, 32, 128),
                    "relu3_3": (1, 16, 16, 256), "relu4_3": (1, 8, 8, 512)}
  for k in a:
    assert np.isfinite(np.asarray(a[k])).all()
    assert float(np.asarray(a[k]).max()) > 0     # a real photo excites every layer
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


def _conv_relu(z_HWC: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
  h, w = z_HWC.shape[:2]
  zp = np.pad(z_HWC, ((1, 1), (1, 1), (0, 0)))
  out = sum(zp[i:i + h, j:j + w] @ kernel[i, j] for i in range(3) for j in range(3)) + bias
  return np.maximum(out, 0)


def test_relu1_2_matches_a_numpy_reference(params):
  # normalise with ImageNet mean/std, then two zero-padded 3x3 HWIO correlations + ReLU.
  x = photo(16).astype(np.float64) / 255.0
  # torchvision's ImageNet statistics, written out so a wrong constant in vgg.py is caught.
  z = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  convs = params["VGG16_0"]
  ref = _conv_relu(_conv_relu(z, convs["Conv_0"]["kernel"], convs["Conv_0"]["bias"]),
                   convs["Conv_1"]["kernel"], convs["Conv_1"]["bias"])
  got = vgg.features(params, x[None].astype(np.float32), layers=("relu1_2",))["relu1_2"][0]
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-3, atol=1e-3)


class _Evil:
  def __reduce__(self):
    return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_non_numpy_globals(tmp_path):
  payload = pickle.dumps({"VGG16_0": _Evil()})
  with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system|refusing"):
    vgg.restricted_loads(payload)
  path = tmp_path / "evil.ckpt"
  path.write_bytes(payload)
  with pytest.raises(pickle.UnpicklingError):
    vgg.load_params(path)
  with pytest.raises(pickle.UnpicklingError):
    vgg.restricted_loads(pickle.dumps(eval))     # builtins are refused too


def test_restricted_unpickler_reads_plain_numpy_pickles():
  tree = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(4, np.int64)}
  out = vgg.restricted_loads(pickle.dumps(tree))
  np.testing.assert_array_equal(out["a"], tree["a"])
  assert out["b"].dtype == np.int64


def test_npz_weights_and_bad_shapes(params, tmp_path):
  flat = {f"Conv_{i}/{leaf}": params["VGG16_0"][f"Conv_{i}"][leaf]
          for i in range(vgg.NUM_CONVS) for leaf in ("kernel", "bias")}
  np.savez(tmp_path / "mine.npz", **flat)        # without the VGG16_0/ prefix
  mine = vgg.load_params(tmp_path / "mine.npz")
  np.testing.assert_array_equal(mine["VGG16_0"]["Conv_12"]["bias"],
                                params["VGG16_0"]["Conv_12"]["bias"])
  flat["Conv_3/kernel"] = flat["Conv_3/kernel"][..., :5]
  np.savez(tmp_path / "bad.npz", **flat)
  with pytest.raises(ValueError, match="Conv_3"):
    vgg.load_params(tmp_path / "bad.npz")
