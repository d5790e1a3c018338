#!/usr/bin/env bash
# The whole test suite: unit tests, CLI tests and integration tests (cargo test), every fuzz
# target for a bounded time (fuzz/run.sh), then the end-to-end tests against real hosts in the
# lab on the real Kubernetes components (tests/lab/e2e.sh; needs root, Go and the Go module proxy).
# This is the command the README names and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# each phase says when it starts (seconds since this script's start)
t0=$(date +%s)
phase() { echo "== $* (at +$(($(date +%s) - t0)) s)"; }
etcd_dir=""
trap 'rc=$?; [ -z "$etcd_dir" ] || rm -rf "$etcd_dir"; echo "== tests/run.sh: exit $rc after $(($(date +%s) - t0)) s"' EXIT

# the etcd API tests run a real etcd: the lab's default release (built once from etcd's Go modules
# by tests/upstream/build.sh, cached outside the repo), unpacked here and handed to them
if [ -z "${KBIN_ETCD_BIN:-}" ]; then
  etcd_tarball=$(tests/lab/lab etcd-tarball)
  etcd_dir=$(mktemp -d)
  tar -xzf "$etcd_tarball" -C "$etcd_dir" --strip-components=1
  export KBIN_ETCD_BIN=$etcd_dir/etcd
fi

phase "cargo test"
cargo test --locked --all-targets --no-fail-fast

# every fuzz target for a bounded time (README: Fuzzing); builds cached outside the repo
phase "fuzzing (${KBIN_FUZZ_SECONDS:-30} s per target)"
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-/var/cache/kbin-fuzz/target} fuzz/run.sh "${KBIN_FUZZ_SECONDS:-30}"

# the lab suites' harness first: a suite that stops halfway must fail, not pass on what it counted
phase "lab harness self-test"
bash tests/lab/harness-test.sh

# the lab is part of the suite: a checkout whose lab scripts lost their executable bit fails here
# instead of skipping the end-to-end tests
for s in tests/lab/e2e.sh tests/lab/lab tests/lab/smoke.sh tests/lab/e2e-*.sh tests/upstream/build.sh tests/upstream/images.sh; do
  [ -x "$s" ] || { echo "run.sh: $s is not executable: the end-to-end tests cannot run" >&2; echo "hint: git checkout -- $s (its mode is 755 in the repository)" >&2; exit 1; }
done
phase "end-to-end tests in the lab"
tests/lab/e2e.sh
