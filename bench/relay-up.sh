#!/usr/bin/env bash
# Benchmark for issue 17 (relay): `kbin up` of one master and N nodes on fresh lab hosts with the
# real components (tests/upstream/build.sh) and the lab's images, the operator's side of the lab
# bridge shaped to RATE (default 100mbit: `tc tbf` on br0 in the operator's namespace, so only
# what the operator sends is shaped; host-to-host traffic is bridged past it). Per N (default
# "3 10"): a relayed `up`, then the same on fresh hosts with `--direct`. Prints one line per run:
# nodes, mode, seconds, bytes the operator sent (br0's tx counter) and the up's own relay summary.
#
#   sudo bash bench/relay-up.sh            # needs root (the lab); N="3 10" RATE=100mbit MODES="relay direct"
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lab-cluster.sh
. "$here/lab-cluster.sh"
bench_setup relay
trap '"$lab" op -- tc qdisc del dev br0 root >/dev/null 2>&1; "$lab" down >/dev/null 2>&1; [[ -n ${KEEP:-} ]] || rm -rf "$work"' EXIT
rate=${RATE:-100mbit}
k() { "$lab" op -- env KBIN_CACHE_DIR="$work/cache" NO_COLOR=1 "$kbin" -c "$work/cluster.toml" "$@"; }
tx() { "$lab" op -- cat /sys/class/net/br0/statistics/tx_bytes; }
ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
# each line of stdin prefixed with the seconds since $1 (ms), for the timeline of a run
stamp() { local l now; while IFS= read -r l; do now=${EPOCHREALTIME/./}; printf '%7.1f %s\n' "$(((now / 1000 - $1) / 100))e-1" "$l"; done; }

"$lab" down >/dev/null 2>&1 || true
"$lab" up 1 >/dev/null && "$lab" mirror >/dev/null 2>&1 || { echo "lab up failed" >&2; exit 1; }
mirror=$("$lab" mirror url)
# shellcheck source=tests/lab/upstream.sh
. "$repo/tests/lab/upstream.sh"
upstream_publish || exit 1

cluster() { bench_cluster bench-relay "$1" "$work" "concurrency = 16"; }

for n in ${N:-3 10}; do
  for mode in ${MODES:-relay direct}; do
    "$lab" mirror stop >/dev/null 2>&1
    "$lab" down >/dev/null 2>&1
    "$lab" up $((n + 1)) >/dev/null && "$lab" mirror >/dev/null 2>&1 || { echo "lab up failed" >&2; exit 1; }
    cluster "$n"
    rm -f "$work/kbin.lock"
    upstream_publish || exit 1 # the mirror goes with the lab
    upstream_pin >/dev/null || exit 1
    upstream_images || exit 1
    k -q download >/dev/null 2>&1 # the cache warm: the figure is the deploy itself
    "$lab" op -- tc qdisc add dev br0 root tbf rate "$rate" burst 256kb latency 100ms
    flag=()
    [[ $mode == direct ]] && flag=(--direct)
    b0=$(tx) t0=$(ms)
    k up "${flag[@]}" 2>&1 | stamp "$t0" >"$work/up-$n-$mode.out"
    rc=${PIPESTATUS[0]} t=$(($(ms) - t0)) b=$(($(tx) - b0))
    # (with KEEP=1, $work/up-N-MODE.out keeps the whole output, each line with its time since the start)
    "$lab" op -- tc qdisc del dev br0 root
    relay=$(grep -o '\[up\] relay:.*' "$work/up-$n-$mode.out" | head -1)
    echo "bench: up 1 master + $n nodes at $rate, $mode: exit $rc, $((t / 1000)).$((t % 1000 / 100)) s, $b bytes from the operator; $relay"
    [[ $rc -eq 0 ]] || tail -n 15 "$work/up-$n-$mode.out"
    grep ' \[up\] ' "$work/up-$n-$mode.out" | sed 's/^ */bench:   /' # the stages, each with when it ended
  done
done
# the release artifacts the cluster uses (the v1.37.2 build and the rest), for the operator-bytes ratio
total=0
while IFS=$'\t' read -r _ ver path _; do
  [[ $ver == v1.36.3 || $ver == v3.5.36 ]] && continue # the upgrades' starting points
  total=$((total + $(stat -c %s "$work/upstream/$path")))
done <"$work/upstream.list"
echo "bench: release artifacts of the cluster (bytes, images aside): $total"
