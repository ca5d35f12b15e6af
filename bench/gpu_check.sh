#!/usr/bin/env bash
# The GPU check of issue 10 on a machine with an NVIDIA GPU, PyTorch (CUDA) and, optionally,
# onnxruntime-gpu; no ROS, no network. Prints one table (see bench/gpu_check.py) in a few minutes.
#   bash bench/gpu_check.sh [--quick]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import lang_seg_ros" 2>/dev/null || pip install -q --no-deps -e . 2>/dev/null || true
exec python bench/gpu_check.py "$@"
