#!/usr/bin/env bash
# One-command set-up on a fresh machine: a virtual environment in .venv with the core
# (torch, timm, open_clip, ...), the package itself (editable), and ROS 2 Jazzy from PyPI
# wheels with this package's messages built into it. Idempotent: re-running only checks.
#
#   bash scripts/setup.sh            # everything
#   LANG_SEG_ROS_NO_ROS=1 bash scripts/setup.sh   # the ROS-agnostic core only
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"

if [[ ! -x .venv/bin/python ]]; then
  echo "setup.sh: creating .venv"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
pip() { python -m pip --disable-pip-version-check -q "$@"; }

# torch first, pinned: an unpinned resolve pulls a multi-GB CUDA build from the index.
python -c "import torch, torchvision" 2>/dev/null || pip install "torch==2.14.1" "torchvision==0.29.1"
pip install -e ".[test,train]"
# WordNet 3.0 (Debian's wordnet-base, data files only): referring reads everyday words as the
# default model's labels with it ("hatchback" -> car; docs/referring.md). Optional: without it
# (no apt, not root) referring says so once and uses its other rules.
if [[ ! -e /usr/share/wordnet/data.noun ]] && command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends wordnet-base; } >/dev/null 2>&1 \
    || echo "setup.sh: could not install wordnet-base (optional: referring works without it)" >&2
fi
if [[ "${LANG_SEG_ROS_NO_ROS:-0}" != 1 ]]; then
  bash scripts/setup_ros.sh
fi
echo "setup.sh: ready (. .venv/bin/activate)"
