#!/usr/bin/env bash
# Benchmark: `kbin up --relay` of one master and N nodes (default 2) on fresh lab hosts with the
# real components, unshaped (the lab's bridge at full speed), ROUNDS times (default 2), each on
# fresh hosts. With --relay the binaries and images reach every host before its push, so a push
# is the rendered files, certificates and keys, and the binaries linked from the host's store. Prints per run the total and up's stages with when each ended, and the two file pushes
# that are on the critical path: the master's (from etcd healthy to "[master] h1: N files
# changed") and the slowest node's (from its files relayed in, the last "[relay] hN" line, to
# "[node] hN: N files changed").
#
#   sudo bash bench/push-up.sh            # needs root (the lab); N=2 ROUNDS=2 KBIN=target/release/kbin
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lab-cluster.sh
. "$here/lab-cluster.sh"
bench_setup push
[[ -z ${KBIN:-} ]] || kbin=$(readlink -f "$KBIN")
trap '"$lab" down >/dev/null 2>&1; [[ -n ${KEEP:-} ]] || rm -rf "$work"' EXIT
k() { "$lab" op -- env KBIN_CACHE_DIR="$work/cache" NO_COLOR=1 "$kbin" -c "$work/cluster.toml" "$@"; }
ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
stamp() { local l now; while IFS= read -r l; do now=${EPOCHREALTIME/./}; printf '%7.1f %s\n' "$(((now / 1000 - $1) / 100))e-1" "$l"; done; }
n=${N:-2}
echo "bench: kbin $kbin ($("$kbin" --version))"
for ((round = 1; round <= ${ROUNDS:-2}; round++)); do
  "$lab" mirror stop >/dev/null 2>&1
  "$lab" down >/dev/null 2>&1
  "$lab" up $((n + 1)) >/dev/null && "$lab" mirror >/dev/null 2>&1 || { echo "lab up failed" >&2; exit 1; }
  mirror=$("$lab" mirror url)
  # shellcheck source=tests/lab/upstream.sh
  . "$repo/tests/lab/upstream.sh"
  bench_cluster bench-push "$n" "$work"
  rm -f "$work/kbin.lock"
  upstream_publish || exit 1
  upstream_pin >/dev/null || exit 1
  upstream_images || exit 1
  k -q download >/dev/null 2>&1 # the cache warm: the figure is the deploy itself
  t0=$(ms)
  k up --relay 2>&1 | stamp "$t0" >"$work/up-$round.out"
  rc=${PIPESTATUS[0]} t=$(($(ms) - t0))
  echo "bench: round $round, up --relay 1 master + $n nodes unshaped: exit $rc, $((t / 1000)).$((t % 1000 / 100)) s"
  [[ $rc -eq 0 ]] || tail -n 15 "$work/up-$round.out"
  grep ' \[up\] ' "$work/up-$round.out" | sed 's/^ */bench:   /'
  awk '
    / \[up\] etcd: / { etcd = $1 }
    / \[master\] h1: .* files changed/ { printf "bench:   master push %.1f s (%s)\n", $1 - etcd, $0 }
    / \[relay\] h[0-9]+: / { h = $3; sub(/:$/, "", h); last[h] = $1 }
    / \[node\] h[0-9]+: .* files changed/ { h = $3; sub(/:$/, "", h); d = $1 - last[h]; if (d > worst) { worst = d; line = $0 } }
    END { if (worst) printf "bench:   slowest node push %.1f s (%s)\n", worst, line }
  ' "$work/up-$round.out"
done
