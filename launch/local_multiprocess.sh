#!/usr/bin/env bash
# N JAX processes on this machine, joined through jax.distributed on localhost.
#
#   launch/local_multiprocess.sh N CONFIG WORKDIR [extra flags for scsnet_jax.main]
#
# Process 0 prints to the terminal; every process logs to
# WORKDIR/logs/process_<i>.log. CPU-only runs use gloo collectives. On a GPU
# machine set ONE_GPU_PER_PROCESS=1 to give process i only GPU i.
# Env: PYTHON (default: python), PORT (default: random free-ish port).
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 NUM_PROCESSES CONFIG WORKDIR [flags...]" >&2
  exit 2
fi
NUM_PROCESSES=$1; CONFIG=$2; WORKDIR=$3; shift 3
if ! [[ "$NUM_PROCESSES" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: NUM_PROCESSES must be a positive integer, got '$NUM_PROCESSES'" >&2
  exit 2
fi
if [[ ! -f "$CONFIG" ]]; then
  echo "error: config file '$CONFIG' not found" >&2
  exit 2
fi
PYTHON=${PYTHON:-python}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
mkdir -p "$WORKDIR/logs"

pids=()
cleanup() { kill -TERM "${pids[@]}" 2>/dev/null || true; }
trap cleanup TERM INT

for ((i = 0; i < NUM_PROCESSES; i++)); do
  log="$WORKDIR/logs/process_$i.log"
  env_args=()
  if [[ "${ONE_GPU_PER_PROCESS:-0}" == 1 ]]; then
    env_args+=(CUDA_VISIBLE_DEVICES=$i)
  fi
  cmd=(env ${env_args[@]+"${env_args[@]}"} "$PYTHON" -m scsnet_jax.main --config="$CONFIG"
       --workdir="$WORKDIR" --coordinator_address="localhost:$PORT"
       --num_processes="$NUM_PROCESSES" --process_id="$i" "$@")
  if [[ $i == 0 ]]; then
    # Process substitution keeps $! the Python process (not tee).
    "${cmd[@]}" > >(tee "$log") 2>&1 &
  else
    "${cmd[@]}" > "$log" 2>&1 &
  fi
  pids+=($!)
done

status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit $status
