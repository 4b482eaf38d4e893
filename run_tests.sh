#!/usr/bin/env bash
# The test suite. Usage: bash run_tests.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh
ensure_env "notebooks,test"
export MPLBACKEND=Agg HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONHASHSEED=0
exec python -m pytest "$@"
