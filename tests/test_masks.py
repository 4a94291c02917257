"""The Piggyback mask core: threshold gradient, masking, packing, retracing, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from piggyjax import masks
from piggyjax.models import unet

CFG = unet.preset("tiny", norm="none")
HEADS = (("seg", 3),)


@pytest.fixture(scope="module")
def variables():
  return unet.init(CFG, HEADS, 0, image_size=16)


def _flat(tree):
  return traverse_util.flatten_dict(tree)


def test_default_spec_masks_backbone_kernels_only(variables):
  scores = masks.init_scores(variables["params"])
  paths = list(_flat(scores))
  assert paths and all(p[0] == "backbone" and p[-1] == "kernel" for p in paths)
  kernels = [p for p in _flat(variables["params"]) if p[0] == "backbone" and p[-1] == "kernel"]
  assert sorted(paths) == sorted(kernels)
  assert all(np.all(np.asarray(s) == np.float32(1e-2)) for s in jax.tree.leaves(scores))


def test_regex_and_predicate_specs(variables):
  only_up = masks.init_scores(variables["params"], spec=r"up_\d+/kernel$")
  assert {p[1] for p in _flat(only_up)} == {"up_0", "up_1"}
  pred = masks.init_scores(variables["params"], spec=lambda p, v: p[1] == "mid" and
                           p[-1] == "kernel")
  assert {p[1] for p in _flat(pred)} == {"mid"}


def test_threshold_forward_and_straight_through():
  s = jnp.array([-1.0, 4e-3, 5e-3, 6e-3, 1.0], jnp.float32)
  np.testing.assert_array_equal(masks.threshold(s, 5e-3), [0, 0, 0, 1, 1])
  g = jax.grad(lambda s: jnp.sum(masks.threshold(s, 5e-3) * jnp.arange(5.0)))(s)
  np.testing.assert_array_equal(g, np.arange(5.0))
  # t may be traced and gets a zero cotangent.
  gt = jax.grad(lambda t: jnp.sum(masks.threshold(s, t)))(jnp.float32(5e-3))
  assert gt == 0
  assert masks.threshold(s.astype(jnp.bfloat16), 5e-3).dtype == jnp.bfloat16


def test_scores_gradient_is_weight_gradient_times_weight(variables):
  params = variables["params"]
  scores = jax.tree.map(lambda s: s + 0.003 * jax.random.normal(jax.random.key(1), s.shape),
                        masks.init_scores(params))
  model = unet.UNet(CFG, HEADS)
  x = jax.random.normal(jax.random.key(2), (2, 16, 16, 3))

  def loss_of_weights(p):
    return jnp.mean(model.apply({"params": p}, x, "seg") ** 2)

  g_scores = jax.grad(lambda s: loss_of_weights(masks.apply_masks(params, s)))(scores)
  # Reference, by hand: W_eff = W * m; dL/ds := dL/dm (straight through) = dL/dW_eff * W.
  flat_s = _flat(scores)
  flat_p = _flat(params)
  w_eff = traverse_util.unflatten_dict(
      {p: v * (np.asarray(flat_s[p]) > 5e-3) if p in flat_s else v for p, v in flat_p.items()})
  g_eff = _flat(jax.grad(loss_of_weights)(w_eff))
  for path, g in _flat(g_scores).items():
    np.testing.assert_allclose(g, g_eff[path] * flat_p[path], rtol=1e-5, atol=1e-7)
  assert any(np.abs(np.asarray(g)).max() > 0 for g in _flat(g_scores).values())


def test_masked_output_equals_hand_zeroed_weights(variables):
  params = variables["params"]
  rng = np.random.default_rng(0)
  scores = jax.tree.map(lambda s: jnp.asarray(rng.uniform(0, 1e-2, s.shape), jnp.float32),
                        masks.init_scores(params))
  model = unet.UNet(CFG, HEADS)
  x = jax.random.normal(jax.random.key(3), (1, 16, 16, 3))
  out = model.apply({"params": masks.apply_masks(params, scores)}, x, "seg")
  flat_s = _flat(scores)
  zeroed = {}
  for path, w in _flat(params).items():
    w = np.array(w)
    if path in flat_s:
      w[np.asarray(flat_s[path]) <= 5e-3] = 0.0
    zeroed[path] = w
  ref = model.apply({"params": traverse_util.unflatten_dict(zeroed)}, x, "seg")
  np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))
  binary = masks.apply_binary_masks(params, masks.binarize(scores))
  np.testing.assert_array_equal(np.asarray(model.apply({"params": binary}, x, "seg")),
                                np.asarray(ref))


@pytest.mark.parametrize("shape", [(3, 3, 5, 7), (1,), (9,), (2, 2, 3, 1), (8, 8)])
@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.float32, jnp.bfloat16])
def test_pack_unpack_exact(shape, dtype):
  m = np.random.default_rng(sum(shape)).random(shape) > 0.4
  tree = {"a": {"kernel": m.astype(dtype)}, "b": np.ones((3,), bool)}
  packed, shapes = masks.pack(tree)
  assert len(packed["a/kernel"]) == -(-m.size // 8)
  back = masks.unpack(packed, shapes)
  np.testing.assert_array_equal(back["a"]["kernel"], m)
  assert back["a"]["kernel"].dtype == np.bool_ and back["b"].all()


def test_unpack_rejects_wrong_byte_count():
  packed, shapes = masks.pack({"k": np.ones((3, 3, 5, 7), bool)})
  packed["k"] = packed["k"][:-1]
  with pytest.raises(ValueError, match="'k'"):
    masks.unpack(packed, shapes)


def test_density():
  d = masks.density({"a": np.array([1, 0, 0, 0], bool), "b": np.ones((4,), bool)})
  assert d == {"a": 0.25, "b": 1.0, "total": 0.625}


def test_scores_only_step_keeps_base_bit_identical(variables):
  params = variables["params"]
  before = jax.tree.map(np.array, params)
  model = unet.UNet(CFG, HEADS)
  scores = masks.init_scores(params)
  head = {"head_seg": params["head_seg"]}
  base = {"backbone": params["backbone"]}
  opt = optax.adam(1e-2)
  trainable = {"scores": scores, "head": head}
  state = opt.init(trainable)
  x = jax.random.normal(jax.random.key(4), (2, 16, 16, 3))

  @jax.jit
  def step(trainable, state, base):
    def loss(tr):
      p = {**masks.apply_masks(base, tr["scores"]), **tr["head"]}
      return jnp.mean((model.apply({"params": p}, x, "seg") - 1.0) ** 2)
    g = jax.grad(loss)(trainable)
    upd, state = opt.update(g, state, trainable)
    return optax.apply_updates(trainable, upd), state

  for _ in range(3):
    trainable, state = step(trainable, state, base)
  after = _flat(jax.tree.map(np.array, params))
  for path, v in _flat(before).items():
    assert after[path].tobytes() == v.tobytes(), path
  moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(trainable["scores"]),
                                                 jax.tree.leaves(scores))]
  assert any(moved)


def test_jitted_apply_masks_does_not_retrace(variables):
  params = variables["params"]
  traces = []

  @jax.jit
  def f(p, s):
    traces.append(1)
    return masks.apply_masks(p, s)

  s1 = masks.init_scores(params)
  s2 = jax.tree.map(lambda s: s * -1.0, s1)
  f(params, s1)
  out = f(params, s2)
  assert len(traces) == 1
  assert all(float(jnp.abs(v).sum()) == 0 for v in jax.tree.leaves(_masked(out, s2)))


def _masked(out, scores):
  flat = _flat(out)
  return [flat[p] for p in _flat(scores)]


def test_bad_input_names_the_path(variables):
  params = variables["params"]
  with pytest.raises(ValueError, match="matches no leaf"):
    masks.init_scores(params, spec=r"no_such_layer")
  scores = masks.init_scores(params)
  bad = _flat(scores)
  bad[("backbone", "ghost", "kernel")] = jnp.ones((3,))
  with pytest.raises(ValueError, match="backbone/ghost/kernel"):
    masks.apply_masks(params, traverse_util.unflatten_dict(bad))
  wrong_shape = _flat(scores)
  wrong_shape[("backbone", "mid", "Conv_0", "kernel")] = jnp.ones((1, 1, 1, 1))
  with pytest.raises(ValueError, match="backbone/mid/Conv_0/kernel"):
    masks.apply_masks(params, traverse_util.unflatten_dict(wrong_shape))
  ints = jax.tree.map(lambda s: s.astype(jnp.int32), scores)
  with pytest.raises(ValueError, match="floating point"):
    masks.apply_masks(params, ints)
