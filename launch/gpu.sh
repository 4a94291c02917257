#!/usr/bin/env bash
# Run piggyjax on one machine with one or more NVIDIA GPUs: a venv with jax[cuda12], then
# experiments/main.py. One process drives every visible GPU: the training step is jitted over a
# 1-D mesh of all local devices, so there is nothing to launch per GPU.
set -euo pipefail

PROG=launch/gpu.sh
usage() {
  cat <<'EOF'
Usage: launch/gpu.sh --workdir=DIR --data_dir=DIR [flags] [-- MAIN_FLAGS...]

Sets up a venv with jax[cuda12] and runs experiments/main.py on all local GPUs.

Required:
  --workdir=DIR       the run's workdir (local path or gs://)
  --data_dir=DIR      the local data root (see WORKSPACE.md)

Optional:
  --config=PATH       default experiments/configs/paper.py
  --mode=MODE         default sequence (train|eval|apply|sequence)
  --gpus=LIST         e.g. 0,1: sets CUDA_VISIBLE_DEVICES; default: every GPU
  --venv=DIR          default .venv in the repository
  --python=BIN        makes the venv when it does not exist; default python3.11, else python3
  --extras=LIST       pip extras, default gpu,tf (tf: TFDS's coco builder imports TensorFlow)
  --skip_install      use the venv as it is
  --dry_run           print the commands, one per line, and run none
  -h, --help          this text
Everything after '--' goes to experiments/main.py, e.g. -- --task=seg_voc --strategy=piggyback
EOF
}

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_args "workdir data_dir config mode gpus venv python extras" "skip_install" "$@"
require workdir data_dir
[[ ${OPT[data_dir]} != gs://* ]] || die "--data_dir must be a local directory: the VOCdevkit, \
COCO-dir and style readers open local files (copy it: gcloud storage rsync -r ${OPT[data_dir]} DIR)"

# Relative paths mean relative to where the user stands, not to the repository we cd into.
# (`--venv=~/x` reaches us with the tilde unexpanded: the shell expands it only at a word's start.)
absolute() {
  case $1 in
    gs://* | /*) printf '%s' "$1" ;;
    \~/*) printf '%s' "$HOME/${1#\~/}" ;;
    *) printf '%s' "$PWD/$1" ;;
  esac
}
WORKDIR=$(absolute "${OPT[workdir]}")
DATA_DIR=$(absolute "${OPT[data_dir]}")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(absolute "${OPT[venv]:-$ROOT/.venv}")

run cd "$ROOT"
if [[ -z ${OPT[skip_install]:-} ]]; then
  if [[ ! -x $VENV/bin/python ]]; then
    py=${OPT[python]:-$(command -v python3.11 || echo python3)}
    run "$py" -m venv "$VENV"
  fi
  run "$VENV/bin/pip" install -q --upgrade pip
  run "$VENV/bin/pip" install -q -e ".[${OPT[extras]:-gpu,tf}]"
fi

# JAX_PLATFORMS=cuda: fail at once if the GPUs are not usable, rather than train on the CPU.
envs=(JAX_PLATFORMS=cuda)
[[ -z ${OPT[gpus]:-} ]] || envs+=(CUDA_VISIBLE_DEVICES="${OPT[gpus]}")
run env "${envs[@]}" "$VENV/bin/python" experiments/main.py --mode="${OPT[mode]:-sequence}" \
  --config="${OPT[config]:-experiments/configs/paper.py}" --workdir="$WORKDIR" \
  --data_dir="$DATA_DIR" "${PASS[@]}"
