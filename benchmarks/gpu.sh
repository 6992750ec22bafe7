#!/usr/bin/env bash
# Issue 27: training and inference throughput on one GPU, unattended, in under 8 minutes.
#
#   bash benchmarks/gpu.sh [OUT.json] [gpu.py options]     (default OUT: gpu.json)
#
# Needs a CUDA build of torch (never installed here: constraints.txt pins the CPU build
# this project's CI uses). Any other missing dependency is installed with pip from
# constraints.txt, and seqae itself (pip install --no-deps -e .) when it does not import;
# on a machine that has them all, nothing is installed and no network is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${1:-gpu.json}
shift || true

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "gpu.sh: $PY has no torch; install a CUDA build of torch first" >&2
    exit 1
fi
missing=()
for pair in numpy:numpy pyarrow:pyarrow safetensors:safetensors rich:rich \
            matplotlib:matplotlib yaml:pyyaml; do
    "$PY" -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair##*:}")
done
if ((${#missing[@]})); then
    echo "gpu.sh: installing ${missing[*]} (constraints.txt)"
    "$PY" -m pip install --quiet -c constraints.txt "${missing[@]}"
fi
# seqae from this checkout (gpu.py puts the checkout first on its path in any case)
if ! (cd / && "$PY" -c "import seqae") 2>/dev/null; then
    echo "gpu.sh: installing seqae from $(pwd) (pip install --no-deps -e .)"
    "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . \
        || echo "gpu.sh: pip could not install seqae; gpu.py runs it from the checkout"
fi

# Optional, from a folder of wheels when $SEQAE_WHEELS names one (the GPU machines lent
# to this project reach no index): keras, for the Keras recipe beside the LSTM, and
# pytest, for the GPU's own test that a training step never synchronises.
if [[ -n "${SEQAE_WHEELS:-}" && -d "$SEQAE_WHEELS" ]]; then
    for m in keras pytest; do
        "$PY" -c "import $m" 2>/dev/null || "$PY" -m pip install --quiet --no-index \
            --find-links "$SEQAE_WHEELS" "$m" || echo "gpu.sh: could not install $m"
    done
fi

export OMP_WAIT_POLICY=PASSIVE KERAS_BACKEND=torch
if "$PY" -c "import pytest" 2>/dev/null; then
    echo "gpu.sh: tests that need CUDA (a training step never synchronises)"
    "$PY" -m pytest -q -p no:cacheprovider tests/test_train.py -k synchronises \
        || echo "gpu.sh: the CUDA tests FAILED (above)"
fi
exec "$PY" benchmarks/gpu.py --json "$OUT" "$@"
