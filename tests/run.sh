#!/usr/bin/env bash
# The whole test suite: unit tests, CLI tests and integration tests (cargo test), every fuzz
# target for a bounded time (fuzz/run.sh), then the end-to-end tests against real hosts in the
# lab on the real Kubernetes components (tests/lab/e2e.sh; needs root, Go and the Go module proxy).
# This is the command the README names and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# the etcd API tests run a real etcd: the lab's default release (built once from etcd's Go modules
# by tests/upstream/build.sh, cached outside the repo), unpacked here and handed to them
if [ -z "${KBIN_ETCD_BIN:-}" ]; then
  etcd_tarball=$(tests/lab/lab etcd-tarball)
  etcd_dir=$(mktemp -d)
  trap 'rm -rf "$etcd_dir"' EXIT
  tar -xzf "$etcd_tarball" -C "$etcd_dir" --strip-components=1
  export KBIN_ETCD_BIN=$etcd_dir/etcd
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
