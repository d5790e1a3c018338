#!/usr/bin/env bash
# Benchmark: `kbin hosts check` on fresh lab hosts, N = 10, 25 and 50 (concurrency 16, as the
# relay scale test), ROUNDS runs per build. With two builds (e.g. before and after a change),
# they run alternately on the same hosts, so both see the same machine. One line per run.
#
#   sudo bash bench/hosts-check-lab.sh [KBIN [KBIN_OTHER]]   # default: target/release/kbin
#   N="10 25 50" ROUNDS=3
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
builds=("${@:-$repo/target/release/kbin}")
[[ -x ${builds[0]} ]] || (cd "$repo" && cargo build --release --quiet) || exit 1
lab=$repo/tests/lab/lab
export KBIN_LAB_DIR=${KBIN_LAB_DIR_BENCH_CHECK:-/tmp/kbin-lab-bench-check}
work=$(mktemp -d /tmp/kbin-bench-check.XXXXXX)
trap '"$lab" down >/dev/null 2>&1; rm -rf "$work"' EXIT
ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
for n in ${N:-10 25 50}; do
  "$lab" down >/dev/null 2>&1
  "$lab" up "$n" >/dev/null 2>&1 || { echo "lab up $n failed" >&2; exit 1; }
  {
    printf '[cluster]\nname = "bench"\n\n[ssh]\nkey = "%s"\nconnect_timeout_secs = 5\nconcurrency = 16\n' "$KBIN_LAB_DIR/ssh/id_ed25519"
    printf '\n[[hosts]]\nname = "h1"\naddress = "10.213.0.11"\nroles = ["etcd", "master"]\n'
    for ((i = 2; i <= n; i++)); do printf '\n[[hosts]]\nname = "h%d"\naddress = "10.213.0.%d"\nroles = ["node"]\n' "$i" $((10 + i)); done
  } >"$work/cluster.toml"
  cp "$KBIN_LAB_DIR/ssh/known_hosts" "$work/known_hosts"
  sleep 3 # the hosts' own start settles
  for ((round = 1; round <= ${ROUNDS:-3}; round++)); do
    for b in "${builds[@]}"; do
      t0=$(ms)
      "$lab" op -- env NO_COLOR=1 "$b" -c "$work/cluster.toml" hosts check >/dev/null 2>&1
      rc=$?
      echo "hosts=$n build=$b round=$round rc=$rc $(($(ms) - t0)) ms"
    done
  done
done
