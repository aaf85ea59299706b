#!/usr/bin/env bash
# The CPU recipe end to end: train configs/photos_cpu.py on 82 real photos,
# evaluate on unseen photos, draw the curves.
#
#   launch/photos_cpu.sh WORKDIR [extra flags for scsnet_jax.main]
#
# Needs the corpus (Debian/Ubuntu packages; the script says the apt-get line
# if they are missing) and the training install of the README. Leaves in
# WORKDIR: checkpoints/ (so `predict --checkpoint WORKDIR` works), samples/,
# TensorBoard events, metrics.jsonl, results.json, results.md, grid.png and
# curves.png. Re-running resumes an interrupted run. Env: PYTHON.
#
# Stopping: SIGTERM or Ctrl-C (SIGINT) to this script is passed on to the
# running step as SIGTERM; the trainer then saves a checkpoint and exits 75
# (errors.EXIT_STOPPED_EARLY), and this script stops there with that status,
# without evaluating the half-trained model. A trainer that fails or is
# stopped by itself ends the script the same way (its exit status).
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 WORKDIR [flags for scsnet_jax.main...]" >&2
  exit 2
fi
WORKDIR=$1; shift
HERE=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python}
CONFIG="$HERE/configs/photos_cpu.py"

missing=$("$PYTHON" - "$CONFIG" <<'PY'
import glob, importlib.util, sys
spec = importlib.util.spec_from_file_location('photos_cpu', sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
entries = module.CORPUS.split(',')
absent = [e for e in entries if not glob.glob(e)]
if absent:
  print(module.APT_PACKAGES)
PY
)
if [[ -n "$missing" ]]; then
  echo "error: the photo corpus is not installed; install it with:" >&2
  echo "  apt-get update && apt-get install -y $missing" >&2
  echo "(as root; otherwise prefix both with sudo)" >&2
  exit 1
fi

# Each step runs in the background so that this shell can pass signals on:
# a foreground child would keep running, orphaned, if this script is killed.
child=""
stopping=""
forward() {  # the signal arrived here: the child saves and stops
  stopping=1
  if [[ -n "$child" ]]; then kill -TERM "$child" 2>/dev/null || true; fi
}
trap forward TERM INT
run_step() {  # run_step NAME COMMAND...: the command's status, or stop
  local name=$1 status; shift
  "$@" &
  child=$!
  # A signal between the fork and the line above found no child to pass on.
  if [[ -n "$stopping" ]]; then kill -TERM "$child" 2>/dev/null || true; fi
  while true; do
    status=0
    wait "$child" || status=$?
    # wait returns early (status > 128) when a trapped signal arrives.
    if (( status > 128 )) && kill -0 "$child" 2>/dev/null; then continue; fi
    break
  done
  child=""
  if (( status == 75 )); then
    echo "$name stopped early (checkpoint saved, exit 75): not evaluating;" \
         "run $0 $WORKDIR again to continue" >&2
    exit 75
  elif (( status != 0 )); then
    echo "$name failed (exit status $status): stopping here" >&2
    exit "$status"
  fi
}

start=$(date +%s)
run_step training "$PYTHON" -m scsnet_jax.main --config="$CONFIG" \
    --workdir="$WORKDIR" "$@"
trained=$(date +%s)
run_step evaluation "$PYTHON" -m scsnet_jax.tools.evaluate_photos \
    --checkpoint "$WORKDIR" --json "$WORKDIR/results.json" \
    --table "$WORKDIR/results.md" --grid "$WORKDIR/grid.png"
run_step plotting "$PYTHON" -m scsnet_jax.tools.plot_curves \
    --workdir "$WORKDIR" --output "$WORKDIR/curves.png" \
    --title "configs/photos_cpu.py"
end=$(date +%s)
echo "train $(( (trained - start) / 60 )) min, evaluation and curves" \
     "$(( (end - trained) / 60 )) min; results in $WORKDIR"
