#!/usr/bin/env bash
# The whole test suite: unit tests, CLI tests and integration tests (cargo test), then the
# end-to-end tests against real hosts in the lab when the lab is available (see tests/lab/).
# This is the command the README names and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test"
cargo test --locked --all-targets --no-fail-fast

if [ -x tests/lab/e2e.sh ]; then
  echo "== end-to-end tests in the lab"
  tests/lab/e2e.sh
fi
