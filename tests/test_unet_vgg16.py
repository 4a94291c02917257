"""The U-Net with an ImageNet VGG-16 encoder (preset vgg16_unet): shapes, parameter count, the weight
mapping checked against vgg.py's own network, a damaged weight file, and the base's encoder
untouched by a piggyback task, bit for bit."""
import jax
import numpy as np
import pytest
from flax import traverse_util

from conftest import make_tiny_config
from piggyjax import strategies, train
from piggyjax.bank import Bank
from piggyjax.models import unet, vgg

ENCODER = ("enc_0", "enc_1", "enc_2", "enc_3", "mid")


@pytest.fixture(scope="module")
def imagenet():
  return vgg.load_params()


def _conv_count(cin, cout, k=3):
  return k * k * cin * cout + cout


def test_shapes_and_parameter_count():
  cfg = unet.preset("vgg16_unet")
  v = jax.eval_shape(lambda: unet.init(cfg, (("seg", 11),), jax.random.key(0), 32))
  bb = v["params"]["backbone"]
  assert sorted(bb) == sorted(ENCODER + tuple(f"{p}_{i}" for p in ("up", "dec") for i in range(4)))
  widths = [w for w in vgg.CFG if w != "M"]
  assert unet.parameter_count({k: bb[k] for k in ENCODER}) == sum(
      _conv_count(cin, cout) for cin, cout in zip([3] + widths[:-1], widths)) == 14_714_688
  # decoder level i: 2x2 up-conv from the level below, then two 3x3 convs over [up, skip]
  dec, below = 0, 512
  for w, skip in zip((256, 128, 64, 32), (512, 256, 128, 64)):
    dec += 4 * below * w + w + 9 * (w + skip) * w + 9 * w * w + 4 * w  # BN: 2 x (scale, bias)
    below = w
  assert unet.parameter_count(bb) == 14_714_688 + dec == 18_546_848
  # no norm in the encoder: its batch_stats are the decoder's only
  assert sorted(v["batch_stats"]["backbone"]) == [f"dec_{i}" for i in range(4)]
  out = jax.eval_shape(lambda v: unet.UNet(cfg, (("seg", 11),)).apply(
      v, jax.numpy.zeros((2, 48, 80, 3)), "seg"), v)
  assert out.shape == (2, 48, 80, 11)
  with pytest.raises(ValueError, match="divisible by 2\\*\\*depth = 16"):
    unet.init(cfg, (("seg", 11),), 0, 40)
  with pytest.raises(ValueError, match="widths must be four decoder widths and 512"):
    unet.init(unet.preset("vgg16_unet", widths=(8, 16, 32)), (("seg", 11),), 0, 32)
  with pytest.raises(ValueError, match="unknown U-Net encoder 'resnet'"):
    unet.pretrained_encoder(unet.preset("small", encoder="resnet"))
  assert unet.pretrained_encoder(unet.preset("medium")) is None


def test_encoder_computes_vgg16_features(imagenet):
  """Mapped into the U-Net, the encoder's blocks give vgg.py's relu1_2 and relu2_2 (same
  weights, same ImageNet normalisation), so Conv_i went to the right layers."""
  cfg = unet.preset("vgg16_unet")
  v = unet.init(cfg, (("seg", 3),), 0, 32)
  v["params"]["backbone"].update(unet.pretrained_encoder(cfg)["backbone"])
  rgb = jax.random.uniform(jax.random.key(1), (1, 32, 32, 3))
  _, inter = unet.UNet(cfg, (("seg", 3),)).apply(v, rgb, "seg", capture_intermediates=True)
  ref = vgg.features(imagenet, rgb, ("relu1_2", "relu2_2"))
  got = inter["intermediates"]["backbone"]
  np.testing.assert_allclose(got["enc_0"]["__call__"][0], ref["relu1_2"], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(got["enc_1"]["__call__"][0], ref["relu2_2"], rtol=1e-4, atol=1e-3)


def test_damaged_weights_name_the_layer(imagenet, tmp_path):
  flat = {f"{vgg.SCOPE}/{c}/{k}": a for c, leaf in imagenet[vgg.SCOPE].items()
          for k, a in leaf.items()}
  flat[f"{vgg.SCOPE}/Conv_7/kernel"] = flat[f"{vgg.SCOPE}/Conv_7/kernel"][:, :, :128]
  np.savez(tmp_path / "bad.npz", **flat)
  c = make_tiny_config(**{"model.preset": "vgg16_unet"})
  c.model.encoder_weights = str(tmp_path / "bad.npz")
  with pytest.raises(ValueError, match=r"VGG16_0/Conv_7 has kernel \(3, 3, 128, 512\)"):
    train.initial_variables(c, "seg_voc", 21, "scratch", None)


def test_piggyback_leaves_the_imagenet_encoder_untouched(imagenet, tmp_path):
  c = make_tiny_config(**{"model.preset": "vgg16_unet", "steps": 2, "checkpoint_every": 2,
                          "batch_size": 2})
  train.train_task(c, "seg_voc", "base", tmp_path / "a", bank_path=tmp_path / "bank")
  init = traverse_util.flatten_dict(train.initial_variables(c, "seg_voc", 21, "scratch", None))
  train.train_task(c, "colorize_coco", "piggyback", tmp_path / "b",
                   bank=Bank.open(tmp_path / "bank"))
  bank = Bank.open(tmp_path / "bank")
  base = bank.base()["params"]["backbone"]
  expected = unet.pretrained_encoder(unet.preset("vgg16_unet"))["backbone"]
  i = 0
  for name in ENCODER:  # the bank's base: ImageNet's arrays, bit for bit
    for j in range(len(base[name])):
      for leaf in ("kernel", "bias"):
        got = np.asarray(base[name][f"conv_{j}"][leaf])
        assert got.tobytes() == imagenet[vgg.SCOPE][f"Conv_{i}"][leaf].tobytes(), (name, j)
        assert got.tobytes() == expected[name][f"conv_{j}"][leaf].tobytes()
      i += 1
  # task 1 trained the decoder (it moved from its init); the encoder stayed frozen
  dec = np.asarray(base["dec_0"]["Conv_0"]["kernel"])
  assert not np.array_equal(dec, init[("params", "backbone", "dec_0", "Conv_0", "kernel")])
  # the piggyback task's encoder is the base's, masked: each weight ImageNet's or 0
  pb = bank.load("colorize_coco")["params"]["backbone"]
  k0, k = np.asarray(base["mid"]["conv_2"]["kernel"]), np.asarray(pb["mid"]["conv_2"]["kernel"])
  assert np.all((k == k0) | (k == 0))
  # the decoder strategy's split: encoder frozen, decoder trained
  frozen, trainable = strategies.get("decoder", c).split_params({"backbone": base}, c)
  assert sorted(frozen["backbone"]) == sorted(ENCODER)
  assert sorted(trainable["backbone"]) == sorted(f"{p}_{i}" for p in ("up", "dec") for i in range(4))


def test_real_imagenet_config_repeats_itself(shared_data, tmp_path):
  """experiments/configs/real_imagenet.py at tiny size on ../shared/data (CamVid then MSRC):
  the same seed gives the same results.json metrics in a fresh workdir."""
  import json

  from experiments.configs import real_imagenet
  from piggyjax import continual, tasks
  c = real_imagenet.get_config()
  assert c.model.preset == "vgg16_unet" and c.image_size == 96  # real.py's resolution
  c.data.data_dir = str(shared_data)
  c.tasks, c.strategies = "seg_camvid,seg_msrc", "piggyback"
  c.image_size, c.batch_size, c.steps, c.steps_for, c.checkpoint_every = 32, 2, 2, {}, 2
  c.eval_batches, c.figure_images, c.figure_size, c.bn_recalibrate = 1, 1, 0, 1
  tasks.from_config(c)
  runs = []
  for name in ("a", "b"):
    continual.run(c, tmp_path / name)
    runs.append(json.loads((tmp_path / name / "results.json").read_text()))
  a, b = (r["strategies"]["piggyback"] for r in runs)
  assert a["matrix"] == b["matrix"] and a["matrix"][1][1]["miou"] >= 0
  assert a["networks"] == 1 and all(a["bit_identical"].values())
