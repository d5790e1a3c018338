#!/usr/bin/env bash
# The whole test suite: unit tests, CLI tests and integration tests (cargo test), every fuzz
# target for a bounded time (fuzz/run.sh), then the end-to-end tests against real hosts in the
# lab on the real Kubernetes components (tests/lab/e2e.sh; needs root, Go and the Go module proxy).
# This is the command the README names and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# the etcd API tests run a real etcd v3.5.1 (repacked once from PyPI, cached outside the repo)
if [ -z "${KBIN_ETCD_BIN:-}" ]; then
  tests/lab/lab etcd-tarball >/dev/null
fi

echo "== cargo test"
cargo test --locked --all-targets --no-fail-fast

# every fuzz target for a bounded time (README: Fuzzing); builds cached outside the repo
echo "== fuzzing (${KBIN_FUZZ_SECONDS:-30} s per target)"
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-/var/cache/kbin-fuzz/target} fuzz/run.sh "${KBIN_FUZZ_SECONDS:-30}"

if [ -x tests/lab/e2e.sh ]; then
  echo "== end-to-end tests in the lab"
  tests/lab/e2e.sh
fi
