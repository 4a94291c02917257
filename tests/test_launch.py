"""The launch scripts' dry runs print the exact commands; these tests read them back as a shell would."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TPU = ROOT / "launch" / "tpu_vm.sh"
GPU = ROOT / "launch" / "gpu.sh"
TPU_REQUIRED = {"name": "pj", "zone": "us-central2-b", "workdir": "gs://bkt/run1",
                "data_dir": "gs://bkt/data"}
GPU_REQUIRED = {"workdir": "/abs/work", "data_dir": "/abs/data"}
# Programs a dry run must never start: stand-ins on PATH that leave a trace if they are.
STUBS = ("gcloud", "gsutil", "tar", "python3.11", "pip")


@pytest.fixture
def sh(tmp_path):
    bin_dir, trace = tmp_path / "bin", tmp_path / "ran"
    bin_dir.mkdir()
    for name in STUBS:
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {trace}\nexit 1\n')
        stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")

    def call(script, *args, cwd=tmp_path):
        proc = subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                              env=env, cwd=cwd, timeout=60)
        assert not trace.exists(), f"a dry run ran something: {trace.read_text()}"
        return proc
    return call


def flags(required, **extra):
    return [f"--{k}={v}" for k, v in {**required, **extra}.items()]


def dry(sh, script, *args):
    proc = sh(script, "--dry_run", *args)  # first: after `--` it would go to main.py
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line) for line in proc.stdout.splitlines() if not line.startswith("#")]


def find(lines, *prefix):
    hits = [i for i, w in enumerate(lines) if w[:len(prefix)] == list(prefix)]
    assert len(hits) == 1, (prefix, lines)
    return hits[0]


def remote(words):
    """The --command of a `gcloud ... tpu-vm ssh` line, checked to target every worker."""
    assert "--worker=all" in words, words
    (cmd,) = [w.removeprefix("--command=") for w in words if w.startswith("--command=")]
    return cmd


def test_tpu_default_run_creates_ships_installs_runs_fetches_deletes(sh):
    lines = dry(sh, TPU, *flags(TPU_REQUIRED))
    create = find(lines, "gcloud", "compute", "tpus", "tpu-vm", "create", "pj")
    assert {"--zone=us-central2-b", "--accelerator-type=v4-32",
            "--version=tpu-ubuntu2204-base"} <= set(lines[create])
    assert "--spot" not in lines[create]

    tar = find(lines, "tar", "-czf")
    assert lines[tar][-3:] == ["-C", str(ROOT), "."] and "--exclude=./.venv" in lines[tar]
    scp = find(lines, "gcloud", "compute", "tpus", "tpu-vm", "scp")
    assert lines[scp][5] == lines[tar][2] and "--worker=all" in lines[scp]

    ssh = [i for i, w in enumerate(lines) if w[:5] == "gcloud compute tpus tpu-vm ssh".split()]
    unpack, install, stage, mount, train = (shlex.split(remote(lines[i])) for i in ssh)
    assert "tar" in unpack and "~/piggyjax" in unpack
    assert ["pip", "install", "-q", "-e", ".[tpu,tf]"] == \
        [w.rsplit("/", 1)[-1] for w in install[-5:]]
    # the readers open local files, so gs:// data is copied onto every worker first
    assert stage[-6:] == ["gcloud", "storage", "rsync", "-r", "gs://bkt/data", "/tmp/piggyjax-data"]
    # piggyjax writes through local-file APIs: the bucket is mounted at one path on every worker
    assert mount[-2:] == ["bkt", "/mnt/gcs/bkt)"] and "--metadata-cache-ttl-secs=0" in mount
    main = train[train.index("experiments/main.py"):]
    assert main == ["experiments/main.py", "--multihost", "--mode=sequence",
                    "--config=experiments/configs/paper.py", "--workdir=/mnt/gcs/bkt/run1",
                    "--data_dir=/tmp/piggyjax-data"]

    cp = find(lines, "gcloud", "storage", "cp", "-r")
    assert lines[cp][4:] == ["gs://bkt/run1/results.md", "gs://bkt/run1/results.csv",
                             "gs://bkt/run1/results.json", "gs://bkt/run1/figures", "runs/pj/"]
    assert lines[-1] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "pj",
                         "--zone=us-central2-b", "--quiet"]
    assert create < tar < scp < ssh[0] and ssh[-1] < cp < len(lines) - 1


def test_tpu_data_already_on_the_workers_is_used_in_place(sh):
    lines = dry(sh, TPU, *flags(TPU_REQUIRED, data_dir="/mnt/disks/data"))
    assert not any("rsync" in " ".join(w) for w in lines)
    assert "--data_dir=/mnt/disks/data" in shlex.split(remote(lines[-4]))


def test_tpu_direct_gcs_hands_main_py_the_bucket_path(sh):
    lines = dry(sh, TPU, *flags(TPU_REQUIRED), "--direct_gcs")
    assert not any("gcsfuse" in " ".join(w) for w in lines)
    assert "--workdir=gs://bkt/run1" in shlex.split(remote(lines[-4]))


@pytest.mark.parametrize("extra", [[], ["--queued", "--repo=https://x.org/p.git", "--ref=a b"],
                                   ["--direct_gcs", "--", "--config.name=it's $HOME"]])
def test_tpu_remote_commands_are_valid_bash(sh, extra):
    for words in dry(sh, TPU, *flags(TPU_REQUIRED), *extra):
        if "--worker=all" in words and "ssh" in words:
            cmd = remote(words)
            proc = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
            assert proc.returncode == 0, (cmd, proc.stderr)


def test_tpu_keep_leaves_the_slice_and_says_how_to_delete_it(sh):
    proc = sh(TPU, "--dry_run", *flags(TPU_REQUIRED), "--keep")
    assert proc.returncode == 0, proc.stderr
    assert "delete" not in proc.stdout
    assert "gcloud compute tpus tpu-vm delete pj --zone=us-central2-b --quiet" in proc.stderr


def test_tpu_queued_spot_waits_for_active_and_deletes_the_queued_resource(sh):
    lines = dry(sh, TPU, *flags(TPU_REQUIRED, project="proj", accelerator_type="v4-8"),
                "--queued", "--spot")
    create = find(lines, "gcloud", "compute", "tpus", "queued-resources", "create", "pj")
    assert {"--node-id=pj", "--zone=us-central2-b", "--project=proj", "--accelerator-type=v4-8",
            "--runtime-version=tpu-ubuntu2204-base", "--spot"} <= set(lines[create])
    poll = find(lines, "gcloud", "compute", "tpus", "queued-resources", "describe", "pj")
    assert "--format=value(state.state)" in lines[poll] and create < poll
    assert lines[-1][:6] == "gcloud compute tpus queued-resources delete pj".split()
    assert "--force" in lines[-1]
    assert not any(w[:5] == "gcloud compute tpus tpu-vm create".split() for w in lines)
    assert all("--project=proj" in w for w in lines if w[:3] == ["gcloud", "compute", "tpus"])


RECORDER = """#!{python}
import json, os, sys
env = [f"{{k}}={{os.environ[k]}}" for k in ("JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES") if k in os.environ]
with open({trace!r}, "a") as f:
    f.write(json.dumps([*env, {name!r}, *sys.argv[1:]]) + "\\n")
if "describe" in sys.argv:
    print("ACTIVE")
sys.exit(1 if {fail!r} and any({fail!r} in a for a in sys.argv) else 0)
"""


def recorder(path, name, trace, fail=""):
    """A stand-in program that writes down its call as `name args...` and succeeds (unless one of
    its arguments contains `fail`); a queued resource it describes is ACTIVE."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RECORDER.format(python=sys.executable, trace=str(trace), name=name, fail=fail))
    path.chmod(0o755)


def recorded_run(tmp_path, script, args, fail=""):
    """Runs a script for real against recording gcloud and tar; returns (proc, calls)."""
    trace = tmp_path / "calls"
    for name in ("gcloud", "tar"):
        recorder(tmp_path / "rec" / name, name, trace, fail)
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES")}
    env["PATH"] = f"{tmp_path / 'rec'}:{env['PATH']}"
    proc = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    calls = [json.loads(l) for l in trace.read_text().splitlines()] if trace.exists() else []
    return proc, calls


def test_tpu_real_run_runs_what_the_dry_run_printed(sh, tmp_path):
    args = [*flags(TPU_REQUIRED), "--queued", "--", "--config.name=a b"]
    printed = dry(sh, TPU, *args)
    proc, calls = recorded_run(tmp_path, TPU, args)
    assert proc.returncode == 0, proc.stderr
    assert calls == [w for w in printed if w[0] != "mkdir"]
    assert (tmp_path / "runs" / "pj").is_dir()


def test_tpu_slice_is_deleted_when_the_run_fails(tmp_path):
    proc, calls = recorded_run(tmp_path, TPU, flags(TPU_REQUIRED), fail="experiments/main.py")
    assert proc.returncode != 0
    assert calls[-1][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "delete"]
    assert not any(c[1:3] == ["storage", "cp"] for c in calls)


@pytest.mark.parametrize("accel,runtime", [("v5litepod-16", "v2-alpha-tpuv5-lite"),
                                           ("v5p-8", "v2-alpha-tpuv5"),
                                           ("v6e-8", "v2-alpha-tpuv6e")])
def test_tpu_runtime_version_follows_the_accelerator(sh, accel, runtime):
    lines = dry(sh, TPU, *flags(TPU_REQUIRED, accelerator_type=accel))
    assert f"--version={runtime}" in lines[0] and f"--accelerator-type={accel}" in lines[0]


def test_tpu_clone_instead_of_copy_and_reuse_an_existing_slice(sh):
    lines = dry(sh, TPU, *flags(TPU_REQUIRED, repo="https://example.org/piggyjax.git",
                                ref="v0.1"), "--reuse")
    assert not any("create" in w or w[0] == "tar" or "scp" in w for w in lines)
    clone = shlex.split(remote(lines[0]))
    assert clone[clone.index("clone"):clone.index("clone") + 3] == \
        ["clone", "https://example.org/piggyjax.git", "~/piggyjax"]
    assert clone[-4:] == ["-C", "~/piggyjax", "checkout", "v0.1"]


def test_tpu_flags_after_double_dash_reach_main_py_word_for_word(sh):
    odd = ["--config.steps=10", "--config.name=a b", "it's \"quoted\" $HOME"]
    lines = dry(sh, TPU, *flags(TPU_REQUIRED), "--", *odd)
    train = shlex.split(remote([w for w in lines if "--worker=all" in w][-1]))
    assert train[-len(odd):] == odd


@pytest.mark.parametrize("missing", sorted(TPU_REQUIRED))
def test_tpu_missing_required_flag_is_named(sh, missing):
    proc = sh(TPU, "--dry_run", *flags({k: v for k, v in TPU_REQUIRED.items() if k != missing}))
    assert proc.returncode != 0 and proc.stdout == ""
    assert f"--{missing} is required" in proc.stderr


@pytest.mark.parametrize("args,message", [
    (flags(TPU_REQUIRED, workdir="/local/run"), "--workdir must be a gs:// path"),
    (flags(TPU_REQUIRED, ref="v1"), "--ref needs --repo"),
    (flags(TPU_REQUIRED, workdir="gs://Bad Bucket/x"), "is not a bucket name"),
    (flags(TPU_REQUIRED) + ["--bogus=1"], "unknown flag '--bogus=1'"),
    (flags(TPU_REQUIRED) + ["--zone"], "--zone needs a value"),
    (flags(TPU_REQUIRED) + ["--zone", "--keep"], "--zone needs a value"),
    (flags(TPU_REQUIRED) + ["--", "--config.x=1", "--dry_run"], "--dry_run goes before '--'"),
    (flags(TPU_REQUIRED) + ["--keep=yes"], "--keep takes no value"),
])
def test_tpu_bad_flags_fail_clearly(sh, args, message):
    proc = sh(TPU, "--dry_run", *args)
    assert proc.returncode != 0 and proc.stdout == "" and message in proc.stderr


@pytest.mark.parametrize("script", [TPU, GPU])
def test_help_lists_every_flag(sh, script):
    proc = sh(script, "--help")
    assert proc.returncode == 0 and "Usage:" in proc.stdout and "--dry_run" in proc.stdout
    parser = next(l for l in script.read_text().splitlines() if l.startswith("parse_args"))
    for name in parser.replace("\\", "").split('"')[1].split() + ["workdir", "data_dir"]:
        assert f"--{name}" in proc.stdout, name


def test_gpu_installs_cuda_jax_and_runs_on_every_gpu(sh, tmp_path):
    venv = tmp_path / "venv"
    lines = dry(sh, GPU, *flags(GPU_REQUIRED, venv=venv))
    assert lines[0] == ["cd", str(ROOT)]
    assert lines[1][1:] == ["-m", "venv", str(venv)]
    assert lines[3] == [f"{venv}/bin/pip", "install", "-q", "-e", ".[gpu,tf]"]
    assert lines[-1] == ["env", "JAX_PLATFORMS=cuda", f"{venv}/bin/python", "experiments/main.py",
                         "--mode=sequence", "--config=experiments/configs/paper.py",
                         "--workdir=/abs/work", "--data_dir=/abs/data"]
    assert not any("--multihost" in w for w in lines)


def test_gpu_selected_devices_relative_paths_and_skip_install(sh, tmp_path):
    (tmp_path / "here").mkdir()
    lines = dry(sh, GPU, "--workdir=runs/p", "--data_dir=data", "--gpus=0,2",
                "--skip_install", "--config=experiments/configs/samples.py", "--", "--task=seg_voc")
    assert lines == [["cd", str(ROOT)],
                     ["env", "JAX_PLATFORMS=cuda", "CUDA_VISIBLE_DEVICES=0,2",
                      f"{ROOT}/.venv/bin/python", "experiments/main.py", "--mode=sequence",
                      "--config=experiments/configs/samples.py", f"--workdir={tmp_path}/runs/p",
                      f"--data_dir={tmp_path}/data", "--task=seg_voc"]]


def test_gpu_real_run_runs_what_the_dry_run_printed(sh, tmp_path):
    venv = tmp_path / "venv"  # an existing venv whose programs only write down their call
    for name in ("python", "pip"):
        recorder(venv / "bin" / name, str(venv / "bin" / name), tmp_path / "calls")
    args = [*flags(GPU_REQUIRED, venv=venv, gpus="1"), "--", "--task=seg_voc"]
    printed = dry(sh, GPU, *args)
    proc, calls = recorded_run(tmp_path, GPU, args)
    assert proc.returncode == 0, proc.stderr
    assert calls == [w[1:] if w[0] == "env" else w for w in printed if w[0] != "cd"]


def test_gpu_expands_a_tilde_the_shell_left_alone(sh):
    lines = dry(sh, GPU, "--workdir=~/w", "--data_dir=/d", "--venv=~/v", "--skip_install")
    assert lines[-1][2] == f"{os.environ['HOME']}/v/bin/python"
    assert f"--workdir={os.environ['HOME']}/w" in lines[-1]


def test_gpu_refuses_data_on_gcs(sh):
    proc = sh(GPU, "--dry_run", *flags(GPU_REQUIRED, data_dir="gs://bkt/data"))
    assert proc.returncode != 0 and proc.stdout == ""
    assert "--data_dir must be a local directory" in proc.stderr


@pytest.mark.parametrize("missing", sorted(GPU_REQUIRED))
def test_gpu_missing_required_flag_is_named(sh, missing):
    proc = sh(GPU, "--dry_run", *flags({k: v for k, v in GPU_REQUIRED.items() if k != missing}))
    assert proc.returncode != 0 and proc.stdout == ""
    assert f"--{missing} is required" in proc.stderr


def test_scripts_are_shellcheck_clean():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.exists():
        pytest.fail(f"{shellcheck} not found: install the test extras, pip install -e '.[test]'")
    scripts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "launch").glob("*.sh"))
    proc = subprocess.run([str(shellcheck), "-x", *scripts], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
