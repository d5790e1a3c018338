#!/usr/bin/env bash
# Benchmark: the unchanged `kbin up` re-run on fresh lab hosts with the real components, with and
# without each host's digest cache (`/var/lib/kbin/sha256.cache`): one master and N nodes
# (default 2), unshaped. After the `up`, ROUNDS times (default 3): a re-run with the cache as the
# previous run left it, then the cache removed on every host and a re-run that must read every
# file again (and records them anew). Prints each re-run's time and its stages.
#
#   sudo bash bench/rerun-lab.sh            # needs root (the lab); N=2 ROUNDS=3
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lab-cluster.sh
. "$here/lab-cluster.sh"
bench_setup rerun
trap '"$lab" down >/dev/null 2>&1; [[ -n ${KEEP:-} ]] || rm -rf "$work"' EXIT
n=${N:-2}
k() { "$lab" op -- env KBIN_CACHE_DIR="$work/cache" NO_COLOR=1 "$kbin" -c "$work/cluster.toml" "$@"; }
ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }

"$lab" down >/dev/null 2>&1 || true
"$lab" up $((n + 1)) >/dev/null && "$lab" mirror >/dev/null 2>&1 || { echo "lab up failed" >&2; exit 1; }
mirror=$("$lab" mirror url)
# shellcheck source=tests/lab/upstream.sh
. "$repo/tests/lab/upstream.sh"
bench_cluster bench-rerun "$n" "$work"
upstream_publish || exit 1
upstream_pin >/dev/null || exit 1
upstream_images || exit 1
k -q download >/dev/null 2>&1
t0=$(ms)
k -q up >"$work/up.out" 2>&1 || { tail -n 20 "$work/up.out"; exit 1; }
echo "bench: up 1 master + $n nodes: $(($(ms) - t0)) ms"
rerun() { # LABEL
  local t0 t
  t0=$(ms)
  k up --json >"$work/rerun.json" 2>"$work/rerun.err" || { echo "re-run failed" >&2; tail -n 20 "$work/rerun.err"; exit 1; }
  t=$(($(ms) - t0))
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['bytes_sent']==0 and not d['restarted'], 'not unchanged'; print('bench: re-run, %s: %d ms; ' % (sys.argv[2], int(sys.argv[3])) + ', '.join('%s %d' % (s['name'], s['millis']) for s in d['stages']))" "$work/rerun.json" "$1" "$t" || exit 1
}
sleep 3 # the files' change times older than the 2 s the cache waits for
rerun "cache empty (the up left none: its files were new)"
for ((r = 1; r <= ${ROUNDS:-3}; r++)); do
  rerun "with the cache"
  for ((i = 1; i <= n + 1; i++)); do "$lab" exec "h$i" -- rm -f /var/lib/kbin/sha256.cache; done
  rerun "cache removed on every host"
done
