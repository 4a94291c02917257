"""Colorization: Lab against scikit-image, SSIM against scikit-image, the metrics' definitions.

Real photos: the VOC samples under ../shared/data relative to the repository, i.e.
``Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'voc_samples/VOCdevkit/VOC2012/
JPEGImages/*.jpg``; the tests fail when that directory is missing.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import color, metrics

from piggyjax import tasks
from piggyjax.tasks import colorization, imaging

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
JPEGS = DATA / "voc_samples" / "VOCdevkit" / "VOC2012" / "JPEGImages"


def photos(n: int = 3, size: tuple[int, int] = (80, 64)) -> np.ndarray:
  """n real photos, centre-cropped to H x W = size (no resampling: real JPEG statistics)."""
  files = sorted(JPEGS.glob("*.jpg"))[:n]
  if len(files) < n:
    pytest.fail(f"needs {n} sample photos under {JPEGS}" + "; the sample data ../shared/data must sit beside the checkout (CI has it there)")
  out = []
  for f in files:
    im = np.asarray(Image.open(f).convert("RGB"))
    top, left = (im.shape[0] - size[0]) // 2, (im.shape[1] - size[1]) // 2
    out.append(im[top:top + size[0], left:left + size[1]])
  return np.stack(out)


def skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
  return metrics.structural_similarity(
      a.astype(np.float64), b.astype(np.float64), gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False, data_range=255, channel_axis=-1)


def test_lab_matches_skimage_and_round_trips():
  ims = photos()
  lab = np.asarray(imaging.rgb_to_lab(ims / 255.0))
  np.testing.assert_allclose(lab, color.rgb2lab(ims), atol=1e-3)      # Lab units (L in 0..100)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")      # skimage warns when it clips negative Z
    wild = np.random.default_rng(0).uniform([0, -110, -110], [100, 110, 110], (32, 32, 3))
    np.testing.assert_allclose(np.asarray(imaging.lab_to_rgb(wild)), color.lab2rgb(wild),
                               atol=1e-4)                            # RGB in [0, 1]
  back = imaging.to_uint8(imaging.lab_to_rgb(jnp.asarray(lab)))
  np.testing.assert_array_equal(back, ims)                            # uint8 -> Lab -> uint8


def test_ssim_matches_skimage_on_real_photos():
  ims = photos()
  blurred = np.stack([ndimage.gaussian_filter(im.astype(np.float64), (1.5, 1.5, 0)) for im in ims])
  noisy = np.clip(ims + np.random.default_rng(0).normal(0, 25, ims.shape), 0, 255).round()
  for other in (blurred, noisy, ims[::-1]):
    got = np.asarray(imaging.ssim(jnp.asarray(ims, jnp.float32), jnp.asarray(other, jnp.float32)))
    ref = [skimage_ssim(a, b) for a, b in zip(ims, other)]
    np.testing.assert_allclose(got, ref, atol=1e-3)


def test_input_is_the_lightness_repeated():
  ims = photos(2)
  x = np.asarray(tasks.get("colorize_coco").model_input({"image": ims}))
  assert x.shape == ims.shape and x.dtype == np.float32
  np.testing.assert_allclose(x, np.repeat(color.rgb2lab(ims)[..., :1] / 100, 3, -1), atol=1e-5)


def test_metrics_are_mse_and_ssim_of_the_picture_over_valid_rows():
  task = tasks.get("colorize_coco")
  ims = photos(3)
  true_ab = color.rgb2lab(ims)[..., 1:] / colorization.AB_SCALE
  outputs = jnp.asarray(0.5 * true_ab, jnp.float32)              # a desaturated guess
  valid = np.array([True, True, False])
  state = jax.jit(task.metrics_update)({}, task.metrics_init(), outputs,
                                       {"image": ims, "valid": valid})
  got = task.metrics_finalize(state)
  pics = [task.to_image(outputs[i], ims[i]) for i in range(2)]
  mse = np.mean([np.mean((p.astype(np.float64) - im) ** 2) for p, im in zip(pics, ims)])
  ssim = np.mean([skimage_ssim(p, im) for p, im in zip(pics, ims)])
  assert got["mse"] == pytest.approx(mse, rel=1e-4)
  assert got["ssim"] == pytest.approx(ssim, abs=1e-3)
  assert 0 < got["mse"] and got["ssim"] < 1
  # the lightness of the picture is the input's: a perfect ab gives back the photo
  perfect = task.to_image(jnp.asarray(true_ab[0], jnp.float32), ims[0])
  assert np.abs(perfect.astype(int) - ims[0]).max() <= 1


def test_loss_is_ab_mse_and_respects_valid():
  task = tasks.get("colorize_coco")
  ims = photos(2)
  target = color.rgb2lab(ims)[..., 1:] / colorization.AB_SCALE
  outputs = jnp.zeros(ims.shape[:3] + (2,), jnp.float32)
  loss, aux = task.loss({}, outputs, {"image": ims, "valid": np.array([True, False])})
  assert float(loss) == pytest.approx(np.mean(target[0] ** 2), rel=1e-4)
  assert float(aux["mse_ab"]) == pytest.approx(float(loss))
