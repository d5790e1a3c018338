#!/usr/bin/env bash
# kbin etcd deploy on the lab: fresh hosts to a healthy 3-member cluster (certificates included),
# then the unchanged re-run, with bytes of files sent and restarts; next to a hand-written
# cfssl + scp + ssh script doing the same fresh deploy one host after another
# (bench/etcd-handwritten.sh). Needs root and the lab (tests/lab).
# usage: bench/etcd.sh [RUNS]
set -euo pipefail
runs=${1:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
export KBIN_LAB_DIR=/tmp/kbin-lab-bench-etcd
lab=$repo/tests/lab/lab
(cd "$repo" && cargo build --release --quiet)
kbin=$repo/target/release/kbin
work=$(mktemp -d)
trap '"$lab" down >/dev/null 2>&1; rm -rf "$work"' EXIT
"$lab" down >/dev/null 2>&1 || true
"$lab" up 3 >/dev/null
mirror_out=$("$lab" mirror 2>/dev/null) # read whole: the first line is the default etcd release
read -r sha _ <<<"$mirror_out"
cat >"$work/cluster.toml" <<TOML
[cluster]
name = "bench"
etcd_version = "v3.6.17"
[ssh]
key = "$KBIN_LAB_DIR/ssh/id_ed25519"
[artifacts]
mirror = "$("$lab" mirror url)/etcd-io/etcd/releases/download/{version}/{file}"
[[hosts]]
name = "h1"
address = "10.213.0.11"
roles = ["etcd", "master"]
[[hosts]]
name = "h2"
address = "10.213.0.12"
roles = ["etcd"]
[[hosts]]
name = "h3"
address = "10.213.0.13"
roles = ["etcd"]
TOML
k() { "$lab" op -- env KBIN_CACHE_DIR="$work/cache" "$kbin" -q -c "$work/cluster.toml" "$@"; }
k pin etcd v3.6.17 "$sha" 2>/dev/null
k etcd status >/dev/null 2>&1 || true
ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
fresh_hosts() { "$lab" rm h1 h2 h3 >/dev/null; "$lab" up 3 >/dev/null; cp "$KBIN_LAB_DIR/ssh/known_hosts" "$work/known_hosts"; }

# warm the artifact cache once (download + extract): the benchmark measures the deploy
fresh_hosts
"$lab" op -- env KBIN_CACHE_DIR="$work/cache" "$kbin" -q -c "$work/cluster.toml" pki init
k etcd deploy >/dev/null

echo "| run | fresh: pki init + etcd deploy (ms) | bytes sent | unchanged re-run (ms) | bytes sent | restarts |"
echo "|---|---:|---:|---:|---:|---:|"
for i in $(seq 1 "$runs"); do
  fresh_hosts
  rm -rf "$work/pki"
  t=$(ms)
  "$kbin" -q -c "$work/cluster.toml" pki init
  k etcd deploy --json >"$work/fresh.json"
  fresh=$(($(ms) - t))
  t=$(ms)
  k etcd deploy --json >"$work/rerun.json"
  rerun=$(($(ms) - t))
  read -r fb < <(python3 -c "import json; print(json.load(open('$work/fresh.json'))['bytes_sent'])")
  read -r rb rr < <(python3 -c "import json; r=json.load(open('$work/rerun.json')); print(r['bytes_sent'], len(r['restarted'])+len(r['started']))")
  echo "| $i | $fresh | $fb | $rerun | $rb | $rr |"
done

echo
echo "hand-written cfssl + scp + ssh, one host after another:"
for i in $(seq 1 "$runs"); do
  fresh_hosts
  t=$(ms)
  "$lab" op -- "$repo/bench/etcd-handwritten.sh" "$work/cache/extracted" "$KBIN_LAB_DIR/ssh/config" "$work/hw" >/dev/null
  echo "run $i: $(($(ms) - t)) ms"
done
