#!/usr/bin/env bash
# Regenerate tests/fixtures/official/ from the authors' code (tools/official/README.md).
#   tools/official/make_fixtures.sh GSP_CHECKOUT CCP_CHECKOUT INTRA_BATCH_CHECKOUT [OUT_DIR]
# The TensorFlow virtualenv is built once at $OFFICIAL_VENV (default
# ~/.cache/dml_pipelines/official-venv), never in the project's environment.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 GSP_CHECKOUT CCP_CHECKOUT INTRA_BATCH_CHECKOUT [OUT_DIR]" >&2
  exit 2
fi
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${4:-$ROOT/tests/fixtures/official}"
VENV="${OFFICIAL_VENV:-$HOME/.cache/dml_pipelines/official-venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -r "$HERE/requirements.txt"
fi
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES=""
exec "$VENV/bin/python" "$HERE/make_fixtures.py" \
  --gsp "$1" --ccp "$2" --intra-batch "$3" --out "$OUT"
