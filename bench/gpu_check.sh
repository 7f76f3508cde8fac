#!/usr/bin/env bash
# Every GPU check in one command (< 9 minutes on one GPU): see bench/gpu_check.py.
#   bash bench/gpu_check.sh             # on the GPU machine, after: pip install -e ".[dev]"
#   bash bench/gpu_check.sh --dry-run   # anywhere: checks the plan and the time limits
set -euo pipefail
cd "$(dirname "$0")/.."
exec python bench/gpu_check.py "$@"
