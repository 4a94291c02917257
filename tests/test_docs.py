"""Docs that cannot drift: every fenced shell command of README.md and WORKSPACE.md that runs
on a CPU is run, unchanged but for flags appended that shrink it (tests/tiny_flags.py), and
every ```python block of README.md runs. Any other command must match an exclusion below,
with its reason; a new command that is neither run nor excluded fails the test.

The docs are read at test time, so the harness follows whatever they say. Commands run in a
scratch copy of the checkout's layout (its own runs/, `../shared/data` beside it), in order, so
a later command finds what an earlier one wrote (README's `runs/a` bank, used by its Python).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tiny_flags import ROOT, tiny_flags

DOCS = ("README.md", "WORKSPACE.md")
RUN, MAKE = "run", "make"
# (pattern on the command, what to do, why). Patterns are anchored: a new kind of command
# matches nothing and fails the test until it is run or excluded here.
RULES = [
    (r"make [\w-]+( \w+=\S+)*$", MAKE, "checked: the Makefile target exists (running "
     "`make test` here would rerun the whole suite, `make quickstart` a 6-minute run)"),
    (r"python3? experiments/(main|prepare|benchmark|ablate)\.py\b", RUN, "shrunk by flags"),
    (r"launch/(gpu|tpu_vm)\.sh .*--dry_run\b", RUN, "a dry run only prints its commands"),
    (r"python3? [\w/]+/reader\.py\b", RUN, "an export's own reader, on the export made above"),
    (r"[A-Z_]+=\S+$", RUN, "sets a variable for the lines after it"),
    (r"python3? experiments/get_data\.py\b", None,
     "downloads; tests/test_get_data.py runs it against a local server"),
    (r"python3? experiments/demo\.py\b", None, "a web server that runs until stopped "
     "(tests/test_serve.py and tests/test_demo_browser.py drive it)"),
    (r"curl\b", None, "a download from the internet"),
    (r"(unzip\b|tar\b|\(cd annotations &&)", None, "unpacks those downloads"),
    (r"DATA=\S+ && mkdir\b", None, "makes folders for those downloads under /data"),
    (r"cd\b", None, "moves between those download folders"),
    (r"cp /path/to/", None, "a placeholder path the reader fills in"),
    (r"git clone\b", None, "clones from the network"),
    (r"launch/gpu\.sh\b", None, "trains on GPUs (its --dry_run above is run)"),
    (r"launch/tpu_vm\.sh\b", None, "creates a Cloud TPU (its --dry_run above is run)"),
    (r"gcloud\b", None, "Google Cloud"),
]
# Files the docs assume the user has (their own photo for --mode=apply).
USER_FILES = {"photo.jpg": "camvid/val/images"}
SEQUENCE_FLAGS = ["--config.strategies=piggyback"]  # one strategy shows the command works


def fenced_blocks(text: str) -> list[tuple[str, str]]:
  """(language, body) of every ``` block."""
  return [(m.group(1), m.group(2))
          for m in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```", text, re.M | re.S)]


def shell_commands(body: str) -> list[str]:
  """One string per command: continuations joined, comment lines and trailing comments gone."""
  commands, current = [], ""
  for line in body.splitlines():
    if not current and line.lstrip().startswith("#"):
      continue
    line = re.sub(r"\s+#(\s.*)?$", "", line)  # a trailing comment ('#x' in quotes stays)
    current += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
    if not line.endswith("\\"):
      if current.strip():
        commands.append(current.strip())
      current = ""
  return commands


def classify(command: str) -> tuple[str | None, str]:
  for pattern, action, why in RULES:
    if re.match(pattern, command):
      return action, why
  raise AssertionError(f"a documented command is neither run nor excluded: {command!r}; "
                       "run it in tests/test_docs.py or add an exclusion with its reason")


def _all_commands() -> list[tuple[str, str]]:
  return [(doc, cmd) for doc in DOCS
          for lang, body in fenced_blocks((ROOT / doc).read_text()) if lang in ("bash", "sh")
          for cmd in shell_commands(body)]


def _scratch(tmp: Path) -> tuple[Path, dict]:
  """A cwd that looks like a checkout (experiments/, launch/, ... linked) with ../shared."""
  repo = tmp / "repo"
  repo.mkdir()
  for entry in ROOT.iterdir():
    if entry.name not in (".venv", "runs", ".git"):
      (repo / entry.name).symlink_to(entry)
  (tmp / "shared").symlink_to(ROOT.parent / "shared")
  for name, folder in USER_FILES.items():
    src = sorted((tmp / "shared" / "data" / folder).iterdir())[0]
    Image.open(src).save(repo / name)
  # One compilation cache for all commands: they compile the same tiny U-Net many times.
  env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
             PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=str(tmp / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  return repo, env


def _extra_flags(command: str, cwd: Path) -> list[str]:
  if not re.match(r"python3? experiments/", command):
    return []
  words = shlex.split(command)
  config = next((w.split("=", 1)[1] for w in words if w.startswith("--config=")),
                "experiments/configs/quickstart.py")
  extra = tiny_flags(config, cwd)
  return extra + (SEQUENCE_FLAGS if "--mode=sequence" in words else [])


def _run(script: str, cwd: Path, env: dict, what: str) -> None:
  got = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
  assert got.returncode == 0, f"{what} failed:\n{script}\n{got.stderr[-3000:]}"


def test_every_documented_command_is_run_or_excluded_for_a_reason():
  commands = _all_commands()
  actions = [classify(cmd)[0] for _, cmd in commands]
  assert actions.count(RUN) >= 4  # the harness does see the docs' commands
  makes = {(doc, cmd.split()[1]) for doc, cmd in commands if classify(cmd)[0] == MAKE}
  assert {("README.md", "quickstart"), ("README.md", "test")} <= makes  # the public surface
  makefile = (ROOT / "Makefile").read_text()
  for _, target in makes:
    assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"no Makefile target {target}"
  assert shell_commands("a \\\n  b  # note\n# c\nd '#x'\n") == ["a b", "d '#x'"]
  with pytest.raises(AssertionError, match="neither run nor excluded"):
    classify("rm -rf runs")  # a new kind of command must be decided on


def test_readme_and_workspace_commands_and_python_blocks_run(tmp_path):
  repo, env = _scratch(tmp_path)
  ran = 0
  for doc in DOCS:
    variables: list[str] = []  # assignments earlier in the doc (BUCKET=...) hold for later lines
    for lang, body in fenced_blocks((ROOT / doc).read_text()):
      if lang in ("bash", "sh"):
        for cmd in shell_commands(body):
          if classify(cmd)[0] != RUN:
            continue
          if re.match(r"[A-Z_]+=\S+$", cmd):
            variables.append(cmd)
            continue
          script = "; ".join(["set -e", *variables,
                              " ".join([cmd, *map(shlex.quote, _extra_flags(cmd, repo))])])
          _run(script, repo, env, f"{doc}: {cmd}")
          ran += 1
      elif lang == "python" and doc == "README.md":
        block = repo / f"_readme_block_{ran}.py"
        block.write_text(body)
        _run(f"python {block.name}", repo, env, f"README.md python block:\n{body}")
        ran += 1
  assert ran >= 6
  assert (repo / "runs/a/bank").is_dir() and np.asarray(Image.open(repo / "scream.png")).ndim == 3
