#!/usr/bin/env bash
# Run piggyjax on a Cloud TPU VM slice: create it (directly or as a queued resource), put the code
# on every worker, install jax[tpu] into a venv there, run experiments/main.py on all workers at
# once (one JAX process per host, joined by jax.distributed), copy the tables and figures back,
# delete the slice. The workdir is on GCS (mounted on every worker): the workers share nothing
# else, and nothing is lost when the slice goes.
set -euo pipefail

PROG=launch/tpu_vm.sh
usage() {
  cat <<'EOF'
Usage: launch/tpu_vm.sh --name=NAME --zone=ZONE --workdir=gs://BUCKET/RUN --data_dir=DIR [flags] [-- MAIN_FLAGS...]

Creates a Cloud TPU VM slice, runs experiments/main.py --multihost on every worker, copies
results.{md,csv,json} and figures/ back, and deletes the slice (also when a step fails).

Required:
  --name=NAME              TPU VM name (also the queued resource's id with --queued)
  --zone=ZONE              e.g. us-central2-b
  --workdir=gs://...       the run's workdir, shared by all workers (see --direct_gcs)
  --data_dir=DIR           the data root (WORKSPACE.md): gs://... is copied to --stage_dir on
                           every worker first (the VOCdevkit, COCO-dir and style readers open
                           local files); a plain path must already exist on every worker

Optional:
  --accelerator_type=TYPE  default v4-32 (4 hosts x 4 chips); v5litepod-16, v5p-8, v6e-8, ...
  --runtime_version=VER    default from the accelerator: tpu-ubuntu2204-base (v2-v4),
                           v2-alpha-tpuv5-lite (v5e), v2-alpha-tpuv5 (v5p), v2-alpha-tpuv6e (v6e)
  --project=PROJECT        default: gcloud's configured project
  --queued                 request a queued resource and wait until it is ACTIVE
  --spot                   Spot capacity (cheaper, may be preempted)
  --keep                   do not delete the slice at the end
  --reuse                  the slice already exists (e.g. from --keep): skip creating it
  --repo=URL [--ref=REF]   git clone URL (at REF) on each worker instead of copying this checkout
  --config=PATH            default experiments/configs/paper.py
  --mode=MODE              default sequence (train|eval|apply|sequence)
  --extras=LIST            pip extras, default tpu,tf (tf: TFDS's coco builder imports TensorFlow)
  --python=BIN             interpreter for the venv on the workers, default python3.11
  --direct_gcs             hand main.py the gs:// workdir itself; by default the bucket is
                           mounted with Cloud Storage FUSE at /mnt/gcs/BUCKET on every worker
                           and main.py gets that path (piggyjax writes through local-file APIs)
  --stage_dir=DIR          where a gs:// --data_dir lands on the workers, default /tmp/piggyjax-data
  --results_dir=DIR        where tables and figures land locally, default runs/NAME
  --dry_run                print the commands, one per line, and run none
  -h, --help               this text
Everything after '--' goes to experiments/main.py, e.g. -- --config.steps=1000
EOF
}

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_args "name zone accelerator_type runtime_version project workdir data_dir repo ref config \
  mode extras python stage_dir results_dir" "queued spot keep reuse direct_gcs" "$@"
require name zone workdir data_dir
[[ ${OPT[workdir]} == gs://* ]] ||
  die "--workdir must be a gs:// path: the workers share no disk (got '${OPT[workdir]}')"
[[ -z ${OPT[ref]:-} || -n ${OPT[repo]:-} ]] || die "--ref needs --repo"

NAME=${OPT[name]}
ACCEL=${OPT[accelerator_type]:-v4-32}
case $ACCEL in
  v6e-*) default_runtime=v2-alpha-tpuv6e ;;
  v5p-*) default_runtime=v2-alpha-tpuv5 ;;
  v5litepod-* | v5e-*) default_runtime=v2-alpha-tpuv5-lite ;;
  *) default_runtime=tpu-ubuntu2204-base ;;
esac
RUNTIME=${OPT[runtime_version]:-$default_runtime}
WORKDIR=${OPT[workdir]%/}
bucket=${WORKDIR#gs://}
bucket=${bucket%%/*}
[[ $bucket =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "--workdir: '$bucket' is not a bucket name"
mnt=/mnt/gcs/$bucket  # where the workdir's bucket is mounted on the workers (step 5)
RUN_WORKDIR=$mnt${WORKDIR#gs://"$bucket"}
[[ -z ${OPT[direct_gcs]:-} ]] || RUN_WORKDIR=$WORKDIR
PY=${OPT[python]:-python3.11}
RESULTS=${OPT[results_dir]:-runs/$NAME}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Flags every gcloud TPU command shares.
WHERE=(--zone="${OPT[zone]}")
[[ -z ${OPT[project]:-} ]] || WHERE+=(--project="${OPT[project]}")
on_all() { run gcloud compute tpus tpu-vm ssh "$NAME" "${WHERE[@]}" --worker=all --command="$1"; }

if [[ -n ${OPT[queued]:-} ]]; then
  DELETE=(gcloud compute tpus queued-resources delete "$NAME" "${WHERE[@]}" --force --quiet)
else
  DELETE=(gcloud compute tpus tpu-vm delete "$NAME" "${WHERE[@]}" --quiet)
fi
# A slice left running costs money by the hour, so it goes on failure too, unless --keep.
cleanup() {
  local rc=$?
  if [[ -n ${OPT[keep]:-} ]]; then
    echo "$PROG: --keep: $NAME is still running; delete it with: $(cmdline "${DELETE[@]}")" >&2
  else
    run "${DELETE[@]}"
  fi
  exit "$rc"
}

# 1. The slice.
spot=()
[[ -z ${OPT[spot]:-} ]] || spot=(--spot)
if [[ -z ${OPT[reuse]:-} ]]; then
  if [[ -n ${OPT[queued]:-} ]]; then
    run gcloud compute tpus queued-resources create "$NAME" --node-id="$NAME" "${WHERE[@]}" \
      --accelerator-type="$ACCEL" --runtime-version="$RUNTIME" "${spot[@]}"
  else
    run gcloud compute tpus tpu-vm create "$NAME" "${WHERE[@]}" \
      --accelerator-type="$ACCEL" --version="$RUNTIME" "${spot[@]}"
  fi
fi
trap cleanup EXIT
if [[ -n ${OPT[queued]:-} && -z ${OPT[reuse]:-} ]]; then
  poll=(gcloud compute tpus queued-resources describe "$NAME" "${WHERE[@]}"
    --format='value(state.state)')
  if ((DRY_RUN)); then
    echo "# every 60 s until the state is ACTIVE:"
    cmdline "${poll[@]}"
  else
    while :; do
      state=$(run "${poll[@]}")
      case $state in
        ACTIVE) break ;;
        FAILED | SUSPENDED) die "queued resource $NAME is $state" ;;
      esac
      sleep 60
    done
  fi
fi

# 2. The code, on every worker, in ~/piggyjax.
if [[ -n ${OPT[repo]:-} ]]; then
  fetch="rm -rf ~/piggyjax && git clone $(quote "${OPT[repo]}") ~/piggyjax"
  [[ -z ${OPT[ref]:-} ]] || fetch+=" && git -C ~/piggyjax checkout $(quote "${OPT[ref]}")"
  on_all "$fetch"
else
  # The working tree as it is (uncommitted edits included), without venvs, runs and caches.
  tarball=${TMPDIR:-/tmp}/piggyjax-$NAME.tar.gz
  run tar -czf "$tarball" --exclude=./.git --exclude=./.venv --exclude=./runs --exclude=./.cache \
    --exclude='*.egg-info' --exclude=__pycache__ -C "$ROOT" .
  run gcloud compute tpus tpu-vm scp "$tarball" "$NAME":piggyjax.tar.gz "${WHERE[@]}" --worker=all
  on_all "rm -rf ~/piggyjax && mkdir ~/piggyjax && tar -xzf ~/piggyjax.tar.gz -C ~/piggyjax"
fi

# 3. A venv with jax[tpu]. jax needs Python >= 3.11; the TPU images are Ubuntu 22.04 (3.10), whose
# universe archive has python3.11 (and its venv module as a separate package).
venv="$(quote "$PY") -m venv ~/piggyjax-venv"
on_all "($venv || (sudo apt-get -qq update && \
sudo apt-get -qq install -y $(quote "$PY") $(quote "$PY-venv") && $venv)) && \
~/piggyjax-venv/bin/pip install -q --upgrade pip && \
cd ~/piggyjax && ~/piggyjax-venv/bin/pip install -q -e $(quote ".[${OPT[extras]:-tpu,tf}]")"

# 4. The data, on every worker's disk when it lives on GCS (rsync: a --reuse run copies only news).
DATA_DIR=${OPT[data_dir]%/}
if [[ $DATA_DIR == gs://* ]]; then
  STAGE=${OPT[stage_dir]:-/tmp/piggyjax-data}
  on_all "mkdir -p $(quote "$STAGE") && $(cmdline gcloud storage rsync -r "$DATA_DIR" "$STAGE")"
  DATA_DIR=$STAGE
fi

# 5. The workdir, at one path on every worker. piggyjax writes through pathlib (not GCS APIs), and
# the JAX processes must share one directory (Orbax checkpoints; the banks process 0 writes and
# the others read), so Cloud Storage FUSE mounts the bucket. Metadata caching off: a file that
# process 0 has just closed is what the others open (gcsfuse caches forever on large machines by
# default). --rename-dir-limit lets the bank's and Orbax's directory renames through.
if [[ -z ${OPT[direct_gcs]:-} ]]; then
  on_all "command -v gcsfuse >/dev/null || { echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] \
https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -cs) main\" | \
sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null && \
curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | \
sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null && \
sudo apt-get -qq update && sudo apt-get -qq install -y gcsfuse; } && \
sudo mkdir -p $mnt && sudo chown \"\$USER\" $mnt && (mountpoint -q $mnt || \
$(cmdline gcsfuse --implicit-dirs --rename-dir-limit=1000000 --metadata-cache-ttl-secs=0 \
    --metadata-cache-negative-ttl-secs=0 "$bucket" "$mnt"))"
fi

# 6. The run: the same command on every worker; jax.distributed.initialize() finds the others.
on_all "cd ~/piggyjax && ~/piggyjax-venv/bin/python $(cmdline experiments/main.py --multihost \
  --mode="${OPT[mode]:-sequence}" --config="${OPT[config]:-experiments/configs/paper.py}" \
  --workdir="$RUN_WORKDIR" --data_dir="$DATA_DIR" "${PASS[@]}")"

# 7. Tables and figures back here (banks and checkpoints stay in the workdir).
run mkdir -p "$RESULTS"
run gcloud storage cp -r "$WORKDIR/results.md" "$WORKDIR/results.csv" "$WORKDIR/results.json" \
  "$WORKDIR/figures" "$RESULTS/"
# 8. The trap deletes the slice.
