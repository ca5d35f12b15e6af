#!/usr/bin/env bash
# Mutation pass (opt-in, not in CI): mutmut changes one thing at a time in the modules that decide
# what a robot sees, runs each module's own tests against every change, and prints the kill ratio
# per module and the mutants that survived (bench/mutation_report.py does the work; its --help has
# the options). Equivalent mutants are listed with their reasons in bench/mutation_equivalent.yaml.
#
#   bash bench/mutation.sh                                  # all modules, a sample of 150 mutants each
#   bash bench/mutation.sh --max-mutants 0                  # every mutant (a few hours on 2 cores)
#   bash bench/mutation.sh --modules inference/decide.py    # one module
#
# Needs the environment of scripts/setup.sh, plus mutmut (installed into .venv on first use, pinned:
# its report format is what the driver reads). The working tree is copied; nothing in it changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -z "${VIRTUAL_ENV:-}" && -x .venv/bin/python ]]; then
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
MUTMUT_VERSION=3.8.1
if ! python -c "import mutmut, sys; sys.exit(mutmut.__version__ != '$MUTMUT_VERSION')" 2>/dev/null; then
  echo "mutation.sh: installing mutmut==$MUTMUT_VERSION into $(python -c 'import sys; print(sys.prefix)')"
  python -m pip install --disable-pip-version-check -q "mutmut==$MUTMUT_VERSION"
fi
# OpenMP threads that spin while waiting starve everything else on shared cores.
export OMP_WAIT_POLICY=PASSIVE
exec python bench/mutation_report.py "$@"
