#!/usr/bin/env bash
# Runs every check: installs what is missing, lints, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-dev.sh
ruff check .
ruff format --check .
python3 -m pytest "$@"
