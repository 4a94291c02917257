"""Image ops the tasks share: sRGB <-> CIE Lab, SSIM, float -> uint8.

Lab follows scikit-image's ``rgb2lab``/``lab2rgb`` (sRGB, D65 white, 2-degree observer, the
same constants) so results can be checked against it. Every power and cube root sees a clamped
argument: ``jnp.where`` evaluates both branches, and an infinite slope at 0 in the unused one
would turn gradients into NaN.
"""
from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def rgb_to_lab(rgb_HW3: jax.Array) -> jax.Array:
  """sRGB in [0, 1] (any leading axes) -> Lab with L in [0, 100], a/b roughly [-110, 110]."""
  c = rgb_HW3.astype(jnp.float32)
  lin = jnp.where(c > 0.04045, ((jnp.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4, c / 12.92)
  xyz = lin @ jnp.asarray((XYZ_FROM_RGB / WHITE_D65[:, None]).T, jnp.float32)
  f = jnp.where(xyz > 0.008856, jnp.cbrt(jnp.maximum(xyz, 0.008856)), 7.787 * xyz + 16 / 116)
  fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
  return jnp.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], axis=-1)


def lab_to_rgb(lab_HW3: jax.Array) -> jax.Array:
  """Lab -> sRGB clipped to [0, 1]; like skimage, negative Z (out of gamut) is clipped to 0."""
  lab = lab_HW3.astype(jnp.float32)
  fy = (lab[..., 0] + 16) / 116
  fx = fy + lab[..., 1] / 500
  fz = jnp.maximum(fy - lab[..., 2] / 200, 0.0)
  f = jnp.stack([fx, fy, fz], axis=-1)
  xyz = jnp.where(f > 0.2068966, f ** 3, (f - 16 / 116) / 7.787)
  lin = xyz @ jnp.asarray((RGB_FROM_XYZ * WHITE_D65[None, :]).T, jnp.float32)
  srgb = jnp.where(lin > 0.0031308,
                   1.055 * jnp.maximum(lin, 0.0031308) ** (1 / 2.4) - 0.055, 12.92 * lin)
  return jnp.clip(srgb, 0.0, 1.0)


def ssim(a_BHW3: jax.Array, b_BHW3: jax.Array, max_val: float = 255.0) -> jax.Array:
  """Per-image SSIM (B,), averaged over channels.

  dm-pix's defaults (11-tap Gaussian, sigma 1.5, k1 0.01, k2 0.03, population covariance,
  'valid' filtering) equal ``skimage.metrics.structural_similarity(a, b,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=max_val,
  channel_axis=-1)``: skimage's window is 2*int(3.5*1.5 + 0.5) + 1 = 11 and it averages only
  the pixels at least 5 from the border, which is the 'valid' region.
  """
  return dm_pix.ssim(a_BHW3.astype(jnp.float32), b_BHW3.astype(jnp.float32), max_val=max_val)


def to_uint8(x01: jax.Array | np.ndarray) -> np.ndarray:
  """[0, 1] floats -> uint8, rounding (not truncating) so a round trip through 0-255 is exact."""
  return np.asarray(jnp.clip(jnp.round(jnp.asarray(x01) * 255.0), 0, 255)).astype(np.uint8)


def masked_mean(values_B: jax.Array, valid_B: jax.Array) -> jax.Array:
  """Mean over rows where valid; 0 when none is (a fully padded batch must not give NaN)."""
  w = valid_B.astype(jnp.float32)
  return jnp.sum(values_B * w) / jnp.maximum(jnp.sum(w), 1.0)


def valid_rows(batch: dict, n: int) -> jax.Array:
  """The batch's ``valid`` (bool B), or all True when the batch has none (training)."""
  if "valid" in batch:
    return jnp.asarray(batch["valid"]).astype(bool)
  return jnp.ones((n,), bool)
