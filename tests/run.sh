#!/usr/bin/env bash
# The whole test suite: unit tests, CLI tests and integration tests (cargo test), then the
# end-to-end tests against real hosts in the lab (tests/lab/e2e.sh; needs root).
# This is the command the README names and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# the etcd API tests run a real etcd v3.5.1 (repacked once from PyPI, cached outside the repo)
if [ -z "${KBIN_ETCD_BIN:-}" ]; then
  tests/lab/lab etcd-tarball >/dev/null
fi

echo "== cargo test"
cargo test --locked --all-targets --no-fail-fast

if [ -x tests/lab/e2e.sh ]; then
  echo "== end-to-end tests in the lab"
  tests/lab/e2e.sh
fi
