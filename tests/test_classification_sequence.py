"""A tiny Table-2 sequence end to end on a user's own pretrained network (the example of
docs/PRETRAINED.md): every strategy of the classification columns, the table, the sizes, old
tasks bit-identical, and the same seed giving the same metrics."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.configs import classify  # noqa: E402
from piggyjax import bank as bank_lib, continual, report  # noqa: E402
from piggyjax.models import classifier  # noqa: E402


class TinyNet(nn.Module):
  """A user's feature network: RGB in [0, 1] -> B x H x W x C."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2), name="conv1")(x))
    return nn.relu(nn.Conv(16, (3, 3), strides=(2, 2), name="conv2")(x))


def _save_weights(path: Path) -> None:
  params = TinyNet().init(jax.random.key(3), jnp.zeros((1, 16, 16, 3)))["params"]
  np.savez(path, **{f"{layer}/{k}": np.asarray(v) for layer, leaf in params.items()
                    for k, v in leaf.items()})


def _load_weights(path: str) -> dict:
  out: dict = {}
  with np.load(path, allow_pickle=False) as f:  # never pickle
    for key in f.files:
      layer, leaf = key.split("/")
      out.setdefault(layer, {})[leaf] = f[key]
  return out


def _dataset(root: Path, name: str, n_classes: int) -> None:
  rng = np.random.default_rng(len(name))
  for split, per in (("train", 6), ("val", 2)):
    for c in range(n_classes):
      for j in range(per):
        base = np.zeros((20, 20, 3), np.uint8)
        base[..., c % 3] = 200
        img = np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)
        p = root / "classify" / name / split / f"class{c}" / f"{j}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p)


def _config(tmp_path: Path, strategies: str):
  c = classify.get_config()
  c.task_defs = {k: v for k, v in c.task_defs.items() if k not in classify.SETS}
  for name, k in (("pets", 3), ("cars", 2)):
    c.task_defs[name] = dict(kind="classification", classes=k,
                             data=dict(layout="classes", dir=f"classify/{name}"))
  c.tasks, c.strategies = "pets,cars", strategies
  c.data.data_dir = str(tmp_path / "data")
  c.model.preset, c.model.weights = "tiny_user_net", str(tmp_path / "w.npz")
  c.image_size, c.batch_size, c.steps, c.checkpoint_every = 16, 4, 3, 3
  c.figure_images, c.figure_size = 2, 32
  return c


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("table2")
  _save_weights(tmp / "w.npz")
  classifier.register("tiny_user_net", TinyNet, _load_weights)
  _dataset(tmp / "data", "pets", 3)
  _dataset(tmp / "data", "cars", 2)
  return tmp


STRATS = "classifier,individual,finetune,piggyback,packnet"


@pytest.fixture(scope="module")
def table2(world):
  return continual.run(_config(world, STRATS), world / "run")


def test_table2_sequence(world, table2):
  strats, results = STRATS, table2
  S = results["strategies"]
  for s in ("classifier", "piggyback", "packnet"):
    assert all(S[s]["bit_identical"].values()), s
  # individual: the base plus a network per task; piggyback and classifier: the base alone.
  assert S["individual"]["networks"] == 3 and S["finetune"]["networks"] == 3
  assert S["piggyback"]["networks"] == 1 and S["classifier"]["networks"] == 1
  # A piggyback task on disk: at most one bit per backbone weight, plus its head and metadata.
  bank = bank_lib.Bank.open(S["piggyback"]["bank"])
  weights = sum(np.size(v) for v in jax.tree.leaves(bank.base()["params"]["backbone"]))
  kernels = sum(np.size(v) for p, v in jax.tree_util.tree_leaves_with_path(
      bank.base()["params"]["backbone"]) if "kernel" in jax.tree_util.keystr(p))
  assert bank.meta("cars")["mask_bytes"] <= np.ceil(kernels / 8) + 2 * 8  # 2 layers' padding
  assert weights > kernels
  rows = report.table(results)
  labels = [r[0] for r in rows]
  assert "pets top-1 error (%)" in labels and "# networks stored (size, MB)" in labels
  assert "pets top-5 error (%)" not in labels  # Table 2 shows the primary metric only
  assert any(label.startswith("Task 1 (pets) after Task 2") for label in labels)
  saved = json.loads((world / "run" / "results.json").read_text())
  for s in strats.split(","):
    assert set(saved["strategies"][s]) >= {"after_training", "matrix", "sizes"}
    assert saved["strategies"][s]["matrix"][1][0]["top1_error"] is not None
  assert (world / "run" / "figures").is_dir()
  # finetune shares one backbone: its pets row changes once cars is learned (or is identical only
  # by chance); classifier-only's never does.
  assert S["classifier"]["matrix"][1][0] == S["classifier"]["matrix"][0][0]


def test_same_seed_same_metrics(world, table2):
  again = continual.run(_config(world, "piggyback"), world / "again")
  assert again["strategies"]["piggyback"]["matrix"] == table2["strategies"]["piggyback"]["matrix"]


def test_apply_and_demo_name_the_classes(world, table2, capsys):
  """A stored classifier task knows its class names (bank meta): apply prints its top 5 with
  them, and the demo's runner shows them."""
  from piggyjax import cli, serve
  bank_path = table2["strategies"]["piggyback"]["bank"]
  assert bank_lib.Bank.open(bank_path).meta("pets")["class_names"] == ["class0", "class1",
                                                                       "class2"]
  img = world / "data" / "classify" / "pets" / "val" / "class1" / "0.png"
  capsys.readouterr()  # the sequence printed its table
  cli.apply(_config(world, "piggyback"), "pets", bank_path, [str(img)], str(world / "o.png"))
  line = capsys.readouterr().out.splitlines()[0]
  assert line.startswith(str(img)) and line.count("%") == 3 and "class" in line
  runner = serve.Runner(bank_path, _config(world, "piggyback"))
  shown = runner.handle(img.read_bytes(), ["pets"])[2][0]
  assert {n for n, _ in shown.top5} <= {"class0", "class1", "class2"} and len(shown.top5) == 3
