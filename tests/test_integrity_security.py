"""Nothing in piggyjax runs code from a file: a scan of the source, and a watch on a real load.

The scan walks the AST of every module in piggyjax/ and experiments/ and refuses calls that can
execute what a file says (pickle and friends, np.load with pickles allowed, yaml.load without a
safe loader, eval/exec, os.system, shell=True). The one admitted unpickler is vgg.py's, which
overrides find_class to admit numpy arrays only (tested in test_vgg.py). The watch loads a bank
under a Python audit hook: no unpickling, and no file opened outside the bank directory, even
when its JSON names files elsewhere.
"""
import ast
import json
import sys
from pathlib import Path

import pytest

from piggyjax.bank import Bank, BankError, _sealed

sys.path.insert(0, str(Path(__file__).parent))
from test_integrity_crash import ARCH, base_tree, head, piggy_mask, same  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "pickle._Unpickler", "_pickle.load",
    "_pickle.loads", "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads",
    "joblib.load", "pandas.read_pickle", "torch.load", "marshal.load", "marshal.loads",
    "shelve.open", "yaml.unsafe_load", "yaml.full_load", "os.system", "os.popen",
    "builtins.eval", "builtins.exec", "eval", "exec", "jsonpickle.decode",
}
UNPICKLER_ALLOWED = {"piggyjax/models/vgg.py": "RestrictedUnpickler"}


def dotted(node, aliases):
  """'pickle.loads' for pickle.loads / p.loads (import pickle as p) / loads (from pickle import loads)."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if not isinstance(node, ast.Name):
    return None
  parts.append(aliases.get(node.id, node.id))
  return ".".join(reversed(parts))


def violations(source: str, name: str) -> list[str]:
  tree = ast.parse(source, name)
  aliases = {"np": "numpy", "jnp": "jax.numpy"}
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
    elif isinstance(node, ast.ImportFrom) and node.module:
      for a in node.names:
        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
  found = []
  for node in ast.walk(tree):
    where = f"{name}:{getattr(node, 'lineno', '?')}"
    if isinstance(node, ast.ClassDef):
      bases = {dotted(b, aliases) for b in node.bases}
      if bases & {"pickle.Unpickler", "pickle._Unpickler"}:
        methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
        if UNPICKLER_ALLOWED.get(name) != node.name or "find_class" not in methods:
          found.append(f"{where}: unpickler subclass {node.name}")
    if not isinstance(node, ast.Call):
      continue
    func = dotted(node.func, aliases)
    kwargs = {k.arg: k.value for k in node.keywords}
    if func in FORBIDDEN:
      found.append(f"{where}: {func}")
    elif func in ("numpy.load", "jax.numpy.load"):
      flag = kwargs.get("allow_pickle")
      if not (isinstance(flag, ast.Constant) and flag.value is False):
        found.append(f"{where}: {func} without allow_pickle=False")
    elif func == "yaml.load":
      loader = dotted(kwargs["Loader"], aliases) if "Loader" in kwargs else None
      if loader not in ("yaml.SafeLoader", "yaml.CSafeLoader"):
        found.append(f"{where}: yaml.load without a safe Loader")
    elif isinstance(kwargs.get("shell"), ast.Constant) and kwargs["shell"].value is True:
      found.append(f"{where}: {func}(shell=True)")
  return found


def test_the_scanner_sees_each_forbidden_form():
  bad = """
import pickle, pickle as p, numpy as np, yaml, os, subprocess
from pickle import loads as L
from marshal import loads
pickle.load(f); p.loads(b); L(b); loads(b); np.load(f); np.load(f, allow_pickle=True)
yaml.load(s); eval("1"); exec("x"); os.system("ls"); subprocess.run("ls", shell=True)
class U(pickle.Unpickler):
  pass
"""
  assert len(violations(bad, "bad.py")) == 12, violations(bad, "bad.py")
  good = """
import numpy as np, yaml, json, pickle
np.load(f, allow_pickle=False); yaml.load(s, Loader=yaml.SafeLoader); json.loads(s)
pickle.dumps(x)
"""
  assert violations(good, "good.py") == []


def test_no_module_can_execute_what_a_file_says():
  files = sorted(p for d in ("piggyjax", "experiments") for p in (ROOT / d).rglob("*.py"))
  assert len(files) > 20
  found = [v for p in files for v in violations(p.read_text(), str(p.relative_to(ROOT)))]
  assert found == [], found
  # the one unpickler there is the restricted one
  vgg = (ROOT / "piggyjax/models/vgg.py").read_text()
  assert "class RestrictedUnpickler(pickle.Unpickler)" in vgg and "def find_class" in vgg


EVENTS: list = []
WATCHING: list = []


def _hook(event, args):
  if WATCHING and event in ("open", "pickle.find_class", "os.system", "subprocess.Popen"):
    EVENTS.append((event, args))


sys.addaudithook(_hook)  # hooks cannot be removed; this one records only while WATCHING


def watched(fn):
  EVENTS.clear()
  WATCHING.append(True)
  try:
    return fn()
  finally:
    WATCHING.clear()


def test_loading_a_bank_unpickles_nothing_and_stays_inside_it(tmp_path):
  bank = Bank.create(tmp_path / "bank", base_tree(), ARCH)
  bank.add("a", "base", head("head_a", 1))
  bank.add("p", "piggyback", head("head_p", 2), piggy_mask())
  (tmp_path / "secret.bin").write_bytes(b"not yours")
  Bank.open(bank.root).load("p")  # once unwatched, so lazy imports do not count

  loaded = watched(lambda: Bank.open(bank.root).load("p"))
  same(loaded["params"]["head_p"], head("head_p", 2)["params"]["head_p"])
  opened = {str(a[0]) for e, a in EVENTS if e == "open" and isinstance(a[0], (str, Path))}
  assert not [e for e, _ in EVENTS if e != "open"], EVENTS  # no find_class, no process
  assert {p for p in opened if p.startswith(str(tmp_path))} <= {
      p for p in opened if p.startswith(str(bank.root) + "/")}
  assert any(p.endswith("tasks/p/mask.bin") for p in opened)  # the watch did see the reads

  # Crafted JSON naming a file outside the bank: refused before anything is opened there.
  meta_path = bank.root / "tasks" / "p" / "meta.json"
  meta = json.loads(meta_path.read_text())
  meta["files"]["../../../secret.bin"] = "0" * 64
  meta_path.write_text(json.dumps(_sealed(meta)))
  with pytest.raises(BankError, match="leaves the bank directory"):
    watched(lambda: Bank.open(bank.root).load("p"))
  assert not [a for e, a in EVENTS if e == "open" and "secret" in str(a[0])]
