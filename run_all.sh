#!/usr/bin/env bash
# Reproduce the paper: run the numbered notebooks with papermill; tables and figures land in figures/<profile>/.
# Usage: bash run_all.sh [--profile tiny|smoke|cpu|paper] [--only NN[,NN]] [--from NN] [--force] [--keep-going] [--set S.K=V] [--processes N] [--threads N]
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh
ensure_env "notebooks,test"
export MPLBACKEND=Agg PYTHONHASHSEED=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
# The real dataset beside a checkout (as CI has it) is installed into data/ once, offline and verified.
if [ ! -d data/SD-saliency-900 ] && [ -d ../shared/data/SD-saliency-900 ]; then
  deffiller data download --out data --source ../shared/data/SD-saliency-900
fi
exec python -m deffiller.reporting.runner "$@"
