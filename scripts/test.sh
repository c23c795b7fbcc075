#!/usr/bin/env bash
# The test command (README, .ci/run): sets up if needed, then runs the whole suite, which also builds and tests the
# package with colcon in a temporary workspace (test/test_packaging.py, docs/packaging.md).
# pytest exits non-zero on any failure and with 5 when no test was collected, so neither passes silently.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# shellcheck disable=SC1091
. scripts/env.sh
exec python -m pytest -p no:cacheprovider -ra "$@" test
