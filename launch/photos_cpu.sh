#!/usr/bin/env bash
# The CPU recipe end to end: train configs/photos_cpu.py on ~26 real photos,
# evaluate on unseen photos, draw the curves.
#
#   launch/photos_cpu.sh WORKDIR [extra flags for scsnet_jax.main]
#
# Needs the corpus (Debian/Ubuntu packages; the script says the apt-get line
# if they are missing) and the training install of the README. Leaves in
# WORKDIR: checkpoints/ (so `predict --checkpoint WORKDIR` works), samples/,
# TensorBoard events, metrics.jsonl, results.json, results.md, grid.png and
# curves.png. Re-running resumes an interrupted run. Env: PYTHON.
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
  echo "  sudo apt-get update && sudo apt-get install -y $missing" >&2
  exit 1
fi

start=$(date +%s)
"$PYTHON" -m scsnet_jax.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
trained=$(date +%s)
"$PYTHON" -m scsnet_jax.tools.evaluate_photos --checkpoint "$WORKDIR" \
    --json "$WORKDIR/results.json" --table "$WORKDIR/results.md" \
    --grid "$WORKDIR/grid.png"
"$PYTHON" -m scsnet_jax.tools.plot_curves --workdir "$WORKDIR" \
    --output "$WORKDIR/curves.png" --title "configs/photos_cpu.py"
end=$(date +%s)
echo "train $(( (trained - start) / 60 )) min, evaluation and curves" \
     "$(( (end - trained) / 60 )) min; results in $WORKDIR"
