#!/usr/bin/env bash
# CI: does `pip install .` alone (pyproject `dependencies`, no requirements.txt,
# no extras) give working inference and export, as the README promises?
#
#   .ci/core_install_check.sh CHECKPOINT [IMAGE]
#
# CHECKPOINT: a training workdir made earlier in the same CI run (e.g. by the
# demo job); IMAGE: a gray input (default: the sample shipped in docs/images).
# Makes a fresh venv in a temporary folder, installs this checkout into it
# (packages come from the configured index, through pip's cache), checks that
# the training stack is absent, then runs, from outside the checkout:
# predict on the workdir, export, predict on the export. Exit 0 if all pass.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 CHECKPOINT_DIR [GRAY_IMAGE]" >&2
  exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
checkpoint=$(cd "$1" && pwd)
image=$(realpath "${2:-$repo/docs/images/chelsea_gray_lr.png}")
python=${PYTHON:-python3}

work=$(mktemp -d "${TMPDIR:-/tmp}/core-install-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q "$repo"

cd "$work"   # import the installed package, not the source tree
python - <<'EOF'
import importlib.util, os, sys
import scsnet_jax
assert scsnet_jax.__file__.startswith(sys.prefix), scsnet_jax.__file__
extra = [m for m in ('tensorflow', 'tensorflow_datasets', 'grain', 'clu',
                     'skimage', 'torch') if importlib.util.find_spec(m)]
assert not extra, f'not a core-only install, found: {extra}'
print('core install:', os.path.dirname(scsnet_jax.__file__))
EOF

export JAX_PLATFORMS=cpu
name=$(basename "${image%.*}")
python -m scsnet_jax.predict --checkpoint "$checkpoint" --input "$image" \
  --output out_workdir --scale 2
python -m scsnet_jax.export --checkpoint "$checkpoint" --output exported \
  --scales 2 --modes automatic --platforms cpu
python -m scsnet_jax.predict --checkpoint exported --input "$image" \
  --output out_export --scale 2
python - "$image" "out_workdir/$name.png" "out_export/$name.png" <<'EOF'
import sys
import numpy as np
from PIL import Image
source, *outputs = sys.argv[1:]
width, height = Image.open(source).size
for path in outputs:
  out = np.asarray(Image.open(path).convert('RGB'))
  assert out.shape == (2 * height, 2 * width, 3), (path, out.shape)
a, b = (np.asarray(Image.open(p).convert('RGB'), int) for p in outputs)
assert np.abs(a - b).max() <= 1, 'export and workdir outputs differ'
print(f'core install check passed: {width}x{height} -> {2 * width}x'
      f'{2 * height}, workdir and export agree')
EOF
