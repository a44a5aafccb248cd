#!/usr/bin/env bash
# GPU suite: short training / chat runs of the CUDA-only features, one table + bench/results/gpu_suite.json.
# Runs unedited on a lent CUDA machine (no network needed); without CUDA (or with --dry-run) it only builds and
# validates every YAML. Options: --dry-run --steps N --out FILE --work DIR --timeout S. Env: GPU_SUITE_MODEL
# (a local model folder), GPU_SUITE_TEMPLATE (its template), PYTHON (the interpreter; default .venv's).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec "$PYTHON" "$ROOT/bench/gpu_suite.py" "$@"
