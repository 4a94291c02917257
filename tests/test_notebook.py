"""notebooks/demo.ipynb runs headless, start to end, on the tiny U-Net in a few steps per task."""
import json
import os
import sys
import time

import nbformat
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "demo.ipynb"


def test_demo_notebook_runs(tmp_path, monkeypatch):
  # A kernel spec for this very interpreter, found through JUPYTER_PATH, so the notebook runs
  # in the venv under test whatever "python3" means elsewhere.
  spec = tmp_path / "jupyter" / "kernels" / "piggyjax-test"
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "piggyjax test", "language": "python"}))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
  monkeypatch.setenv("PIGGYJAX_DEMO_STEPS", "4")
  monkeypatch.setenv("PIGGYJAX_DEMO_PRESET", "tiny")
  monkeypatch.setenv("PIGGYJAX_DEMO_WORKDIR", str(tmp_path / "demo"))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows figures
  monkeypatch.delenv("PIGGYJAX_SOURCE", raising=False)

  nb = nbformat.read(NOTEBOOK, as_version=4)
  t0 = time.time()
  NotebookClient(nb, kernel_name="piggyjax-test", timeout=170, allow_errors=False,
                 resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
  elapsed = time.time() - t0
  nbformat.write(nb, tmp_path / "demo.executed.ipynb")  # to look at when something fails
  assert elapsed < 180, f"the notebook took {elapsed:.0f} s"

  text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")
  assert "nothing to install" in text  # the install cell is skipped where piggyjax imports
  assert "seg_coco outputs unchanged after adding two tasks: True" in text
  images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
  assert len(images) >= 2  # the task grid and the sparsity figure
  bank = tmp_path / "demo" / "bank"
  assert json.loads((bank / "bank.json").read_text())["tasks"] == [
      "seg_coco", "seg_voc", "colorize_coco"]
  assert (tmp_path / "demo" / "sparsity.png").stat().st_size > 0
  print(f"notebook: {elapsed:.0f} s")
