#!/usr/bin/env bash
# The one-shot GPU check (bench/gpu_check.py): torch eager, torch.compile, CUDA graphs, ONNX Runtime CUDA and
# TensorRT rows, each measured or skipped with its reason, within a time budget; no ROS, no registry needed.
#   bash bench/gpu_check.sh --prepare        # where PyPI is reachable (a CPU machine): bench/.gpu_wheelhouse/
#   bash bench/gpu_check.sh --dry-run        # every row and why it would be skipped, in seconds
#   bash bench/gpu_check.sh [--quick]        # on the GPU machine, with bench/.gpu_wheelhouse carried along
# The prepared wheels install offline (pip --no-index, into a temporary folder) before the guard runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
case " $* " in
  *" --prepare "*) ;;
  *) nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
       || echo "nvidia-smi: not here (no NVIDIA driver)";;
esac
exec "$PYTHON" bench/gpu_check.py "$@"
