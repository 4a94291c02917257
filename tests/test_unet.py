"""The U-Net: presets, the transposed-conv rewrite, heads, norms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from piggyjax.models import unet


def test_paper_preset_size():
  shapes = jax.eval_shape(lambda: unet.init(unet.preset("paper"), (("seg", 21),),
                                            jax.random.key(0), 32))
  n = unet.parameter_count(shapes["params"]["backbone"])
  assert n == 14_062_528
  assert abs(n * 4 / 1e6 - 56.4) < 0.5


def test_upconv_equals_stride2_transposed_conv():
  x = jax.random.normal(jax.random.key(0), (2, 3, 5, 4))
  layer = unet.UpConv2x2(6, jnp.float32)
  p = layer.init(jax.random.key(1), x)
  y = layer.apply(p, x)
  k = p["params"]["kernel"]
  # A 2x2 stride-2 transposed convolution: dilate the input, flip the kernel, correlate.
  ref = lax.conv_general_dilated(x, k[::-1, ::-1], window_strides=(1, 1),
                                 padding=((1, 1), (1, 1)), lhs_dilation=(2, 2),
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(y, ref + p["params"]["bias"], rtol=1e-5, atol=1e-5)
  assert y.shape == (2, 6, 10, 6)


@pytest.mark.parametrize("norm", unet.NORMS)
def test_heads_and_norms(norm):
  cfg = unet.preset("tiny", norm=norm)
  heads = (("a", 3), ("b", 5))
  v = unet.init(cfg, heads, 0, 16)
  assert set(v["params"]) == {"backbone", "head_a", "head_b"}
  assert ("batch_stats" in v) == (norm == "batch")
  model = unet.UNet(cfg, heads)
  x = jnp.ones((2, 16, 16, 3))
  assert model.apply(v, x, "b").shape == (2, 16, 16, 5)
  # A one-task model applies with only its own head's params.
  only_a = {**v, "params": {"backbone": v["params"]["backbone"], "head_a": v["params"]["head_a"]}}
  assert unet.UNet(cfg, (("a", 3),)).apply(only_a, x, "a").shape == (2, 16, 16, 3)


def test_clear_errors():
  with pytest.raises(ValueError, match="unknown U-Net preset"):
    unet.preset("huge")
  cfg = unet.preset("tiny")
  v = unet.init(cfg, (("a", 3),), 0, 16)
  with pytest.raises(ValueError, match="divisible"):
    unet.UNet(cfg, (("a", 3),)).apply(v, jnp.ones((1, 18, 18, 3)), "a")
  with pytest.raises(ValueError, match="no head 'b'"):
    unet.UNet(cfg, (("a", 3),)).apply(v, jnp.ones((1, 16, 16, 3)), "b")


def test_decoder_only_norm_training_leaves_encoder_stats():
  cfg = unet.preset("tiny")
  v = unet.init(cfg, (("a", 3),), 0, 16)
  x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3)) * 3 + 1
  _, upd = unet.UNet(cfg, (("a", 3),)).apply(v, x, "a", "decoder", mutable=["batch_stats"])
  old, new = v["batch_stats"]["backbone"], upd["batch_stats"]["backbone"]
  for name in ("enc_0", "enc_1", "mid"):
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(old[name]),
                                                    jax.tree.leaves(new[name])))
  assert not np.array_equal(old["dec_0"]["Norm_0"]["BatchNorm_0"]["mean"],
                            new["dec_0"]["Norm_0"]["BatchNorm_0"]["mean"])
