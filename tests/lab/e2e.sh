#!/usr/bin/env bash
# Every end-to-end test against real hosts in the lab: machine packages, the host image, the real
# upstream components (built from their Go modules, cached outside the repo), the lab's own smoke
# test, then kbin's scenarios on those components. Needs root. Run by tests/run.sh (and so by CI).
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
repo=$(cd "$here/../.." && pwd)
[[ $EUID -eq 0 ]] || { echo "e2e: the lab needs root (network namespaces, systemd-nspawn)" >&2; exit 1; }

"$here/lab" deps
"$here/lab" image >/dev/null
(cd "$repo" && cargo build --release --locked --quiet)
# the real Kubernetes components: a cold build takes tens of minutes, a warm one seconds
"$repo/tests/upstream/build.sh" --build-only
# the images: pause, CoreDNS and metrics-server from their Go modules, busybox from Debian
"$repo/tests/upstream/images.sh" --build-only

passed=0 failed=0
suite() { if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "e2e: FAILED: $*" >&2; fi; }
suite "$here/smoke.sh"
suite "$here/e2e-etcd.sh" "$repo/target/release/kbin"
suite "$here/e2e-cluster.sh" "$repo/target/release/kbin"
suite "$here/e2e-repoint.sh" "$repo/target/release/kbin"
suite "$here/e2e-workloads.sh" "$repo/target/release/kbin"
suite "$here/e2e-upgrade.sh" "$repo/target/release/kbin"
suite "$here/e2e-relay.sh" "$repo/target/release/kbin"
echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
