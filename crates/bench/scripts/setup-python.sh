#!/usr/bin/env bash
# The peer side of the retrieval benchmark: a virtualenv with sentence-transformers on PyTorch
# (CPU), at $BENCH_VENV (default: target/bench-venv under the workspace root). Idempotent: an
# existing, working venv is kept.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
venv="${BENCH_VENV:-$root/target/bench-venv}"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import sentence_transformers, torch" 2>/dev/null; then
    echo "setup-python: $venv is ready"
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# torch first, so that sentence-transformers finds it already satisfied.
"$venv/bin/python" -m pip install --quiet torch
"$venv/bin/python" -m pip install --quiet sentence-transformers
"$venv/bin/python" -c "import sentence_transformers, torch; print('setup-python: torch', torch.__version__, 'sentence-transformers', sentence_transformers.__version__)"
