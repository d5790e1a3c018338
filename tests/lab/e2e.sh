#!/usr/bin/env bash
# Every end-to-end test against real hosts in the lab: machine packages, the host image, the lab's
# own smoke test, then kbin's scenarios, then the kube-* stand-ins' self-test against kbin's
# rendered units. Needs root. Run by tests/run.sh (and so by CI).
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
repo=$(cd "$here/../.." && pwd)
[[ $EUID -eq 0 ]] || { echo "e2e: the lab needs root (network namespaces, systemd-nspawn)" >&2; exit 1; }

"$here/lab" deps
"$here/lab" image >/dev/null
(cd "$repo" && cargo build --release --locked --quiet)

status=0
"$here/smoke.sh" || status=1
"$here/e2e-etcd.sh" "$repo/target/release/kbin" || status=1
# the kube-* stand-ins started with exactly the units and configs kbin renders, on loopback
KBIN="$repo/target/release/kbin" "$repo/tests/standins/selftest.sh" || status=1
exit $status
