#!/usr/bin/env bash
# SCSNet training on a Cloud TPU VM (single host or pod slice): runs the same
# command on every worker; jax.distributed.initialize() detects the slice.
#
#   launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [flags...]
#
# WORKDIR should be a gs:// bucket (or a filesystem all workers mount), so
# checkpoints, TensorBoard events and samples are shared. The repository is
# expected at ~/scsnet_jax on every worker (REPO to override), with its
# requirements installed.
set -euo pipefail

if [[ $# -lt 4 ]]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [flags...]" >&2
  exit 2
fi
TPU_NAME=$1; ZONE=$2; CONFIG=$3; WORKDIR=$4; shift 4
REPO=${REPO:-~/scsnet_jax}
PYTHON=${PYTHON:-python3}
extra=$(printf ' %q' "$@")

gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all \
  --command="cd $REPO && $PYTHON -m scsnet_jax.main --config=$CONFIG --workdir=$WORKDIR$extra"
