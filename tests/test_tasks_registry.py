"""The registry, the README's custom-task example, and every task's contract end to end.

Paintings and photos come from ../shared/data relative to the repository
(``Path(__file__).resolve().parents[2] / 'shared' / 'data'``), read with PIL.
"""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from piggyjax import tasks
from piggyjax.models import vgg
from piggyjax.tasks import style

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BUILTIN = ["colorize_coco", "seg_coco", "seg_voc", "style_scream", "style_starry"]


def test_names_and_metadata():
  assert set(BUILTIN) <= set(tasks.names())
  assert tasks.get("seg_coco").head_channels == 133
  assert tasks.get("seg_voc").head_channels == 21
  assert tasks.get("colorize_coco").head_channels == 2
  assert {tasks.get(t).kind for t in BUILTIN} == {"segmentation", "colorization", "style"}
  hash(tasks.get("style_starry"))     # usable as a static jit argument


def test_unknown_task_says_what_exists_and_how_to_add_one():
  with pytest.raises(ValueError) as err:
    tasks.get("seg_cityscapes")
  msg = str(err.value)
  assert "seg_cityscapes" in msg and all(t in msg for t in BUILTIN) and "register" in msg


def test_register_a_custom_task_and_refuse_a_clash():
  custom = tasks.register(tasks.Segmentation("seg_custom_test", head_channels=7))
  assert tasks.get("seg_custom_test") is custom
  with pytest.raises(ValueError, match="already registered"):
    tasks.register(tasks.Segmentation("seg_custom_test", head_channels=9))
  with pytest.raises(ValueError, match="already registered"):
    tasks.register(dataclasses.replace(tasks.get("seg_voc"), head_channels=5))
  with pytest.raises(TypeError):
    tasks.register("seg_voc")


def test_the_docstring_example_runs():
  # the README copies this example: execute it so it cannot rot.
  doc = tasks.__doc__
  code = textwrap.dedent(doc[doc.index("    import dataclasses"):])
  code = code.replace('Denoise("denoise_coco")', 'Denoise("denoise_doc_test")')
  exec(compile(code, "tasks.__doc__", "exec"), {"tasks": tasks})
  task = tasks.get("denoise_doc_test")
  ims = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
  out = task.model_input({"image": ims})
  loss, _ = jax.jit(task.loss)({}, out, {"image": ims})
  state = task.metrics_update({}, task.metrics_init(), out, {"image": ims})
  assert task.metrics_finalize(state)["mse"] == pytest.approx(float(loss), rel=1e-5)
  assert task.visualize(ims[0], out[0]).dtype == np.uint8


@pytest.fixture(scope="module")
def style_consts():
  params = vgg.load_params()
  out = {}
  for task_id, name in (("style_starry", "starry_night"), ("style_scream", "the_scream")):
    path = DATA / "styles" / f"{name}.jpg"
    if not path.exists():
      pytest.fail(f"missing {path}" + "; the sample data ../shared/data must sit beside the checkout (CI has it there)")
    out[task_id] = style.make_consts(params, np.asarray(Image.open(path).convert("RGB")), 48)
  return out


@pytest.mark.parametrize("task_id", BUILTIN)
def test_every_task_honours_the_contract(task_id, style_consts):
  task = tasks.get(task_id)
  consts = style_consts.get(task_id, {})
  rng = np.random.default_rng(0)
  b, h, w, k = 2, 16, 16, task.head_channels
  batch = {"image": rng.integers(0, 256, (b, h, w, 3), dtype=np.uint8),
           "valid": np.array([True, False])}
  if task.kind == "segmentation":
    batch["label"] = np.where(rng.random((b, h, w)) < 0.2, 255,
                              rng.integers(0, k, (b, h, w))).astype(np.int32)
  x = task.model_input(batch)
  assert x.shape == (b, h, w, 3) and x.dtype == jnp.float32
  outputs = jnp.asarray(rng.normal(size=(b, h, w, k)), jnp.float32)

  grad_fn = jax.jit(jax.grad(lambda o, c, bt: task.loss(c, o, bt)[0]))
  g = grad_fn(outputs, consts, batch)
  assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g[0])).sum() > 0
  np.testing.assert_array_equal(np.asarray(g[1]), 0)     # the padded row gets no gradient

  state = jax.jit(task.metrics_update)(consts, task.metrics_init(), outputs, batch)
  metrics = task.metrics_finalize(state)
  assert task.primary_metric in metrics
  assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())
  pic = task.visualize(batch["image"][0], outputs[0])
  assert pic.shape == (h, w, 3) and pic.dtype == np.uint8


def test_tasks_import_nothing_from_data():
  """Data flows one way (config -> data -> model -> ...): tasks/ must not import data/."""
  import ast
  import pathlib
  for path in pathlib.Path(tasks.__file__).parent.glob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      assert not any(n.startswith("piggyjax.data") for n in names), f"{path.name} imports {names}"
