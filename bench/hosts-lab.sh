#!/usr/bin/env bash
# Push a 100 MB file to 10 lab hosts (systemd-nspawn + sshd, tests/lab) with `kbin hosts push`,
# against 10 sequential `scp` runs, then the unchanged re-push. Needs root and the lab.
# With RATE (e.g. RATE=200mbit), each host's link is limited to that rate (tc tbf on its veth in
# the operator namespace), like hosts with their own NICs; without it, all traffic is CPU-bound on
# this machine's cores, which the "hosts" share with the operator.
# usage: [RATE=200mbit] bench/hosts-lab.sh [RUNS]
set -euo pipefail
runs=${1:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
export KBIN_LAB_DIR=/tmp/kbin-lab-bench-hosts
lab=$repo/tests/lab/lab
(cd "$repo" && cargo build --release --quiet)
kbin=$repo/target/release/kbin
work=$(mktemp -d)
trap '"$lab" down >/dev/null 2>&1; rm -rf "$work"' EXIT
"$lab" down >/dev/null 2>&1 || true
"$lab" up 10 >/dev/null
head -c 100000000 /dev/urandom >"$work/blob"
if [ -n "${RATE:-}" ]; then
  for i in $(seq 1 10); do
    "$lab" op -- tc qdisc add dev "v-h$i" root tbf rate "$RATE" burst 256kb latency 50ms
  done
fi
{
  printf '[cluster]\nname = "bench"\n[ssh]\nkey = "%s"\n' "$KBIN_LAB_DIR/ssh/id_ed25519"
  for i in $(seq 1 10); do
    role=node; [ "$i" = 1 ] && role='master", "etcd'
    printf '[[hosts]]\nname = "h%d"\naddress = "10.213.0.%d"\nroles = ["%s"]\n' "$i" $((10 + i)) "$role"
  done
} >"$work/cluster.toml"
cp "$KBIN_LAB_DIR/ssh/known_hosts" "$work/known_hosts"
addrs=$(seq -f '10.213.0.%g' 11 20)
op() { "$lab" op -- "$@"; }
hyperfine --style basic --runs "$runs" --export-markdown "$work/push.md" \
  --prepare "for h in h1 h2 h3 h4 h5 h6 h7 h8 h9 h10; do $lab exec \$h -- rm -f /var/tmp/blob; done" \
  -n "kbin hosts push (10 hosts in parallel)" "$lab op -- $kbin -q -c $work/cluster.toml hosts push $work/blob /var/tmp/blob" \
  -n "10 x scp, one after another" "$lab op -- sh -c 'for a in $(echo $addrs); do scp -q -F $KBIN_LAB_DIR/ssh/config $work/blob root@\$a:/var/tmp/blob; done'"
op "$kbin" -q -c "$work/cluster.toml" hosts push "$work/blob" /var/tmp/blob >/dev/null
hyperfine --style basic --runs "$runs" --export-markdown "$work/repush.md" \
  -n "kbin hosts push, unchanged (10 hosts)" "$lab op -- $kbin -q -c $work/cluster.toml hosts push $work/blob /var/tmp/blob"
op "$kbin" -q -c "$work/cluster.toml" hosts push "$work/blob" /var/tmp/blob --json >"$work/repush.json"
python3 -c "import json; r=json.load(open('$work/repush.json')); print('bytes sent on the unchanged re-push:', sum(h.get('bytes_sent',0) for h in (r if isinstance(r,list) else r.get('hosts',[]))))"
cat "$work/push.md" "$work/repush.md"
