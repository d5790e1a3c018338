#!/usr/bin/env bash
# kbin up and kbin repoint-nodes on the lab, with the real Kubernetes components built from their
# Go modules (tests/upstream/build.sh; cached, so only the first run builds them).
#   up:      one master + two nodes (etcd on all three) from fresh hosts, then the unchanged re-run
#   repoint: NODES nodes (h1 is master and node) plus a second master and the LB pair; the nodes
#            move from master1 to the VIP with --batch 1, back to master1 with --batch 5, and to
#            the VIP again with --batch 5
# Needs root and the lab (tests/lab). Prints one line per measurement.
# usage: bench/cluster.sh [NODES]    (default 10)
set -euo pipefail
nodes=${1:-10}
repo=$(cd "$(dirname "$0")/.." && pwd)
export KBIN_LAB_DIR=/tmp/kbin-lab-bench-cluster
lab=$repo/tests/lab/lab
(cd "$repo" && cargo build --release --quiet)
kbin=$repo/target/release/kbin
work=$(mktemp -d)
trap '"$lab" down >/dev/null 2>&1; rm -rf "$work"' EXIT
ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
k() { "$lab" op -- env KBIN_CACHE_DIR="$work/cache" "$kbin" -q -c "$work/cluster.toml" "$@"; }
timed() { local t0; t0=$(ms); "$@" >/dev/null || { echo "bench: FAILED: $*" >&2; return 1; }; echo $(($(ms) - t0)); }
measure() { local label=$1 t; shift; t=$(timed "$@"); printf '%-48s %6s ms\n' "$label" "$t"; }

total=$((nodes + 3)) # the nodes, master2, two LB hosts
"$lab" down >/dev/null 2>&1 || true
"$lab" up "$total" >/dev/null
"$lab" mirror >/dev/null 2>&1
mirror=$("$lab" mirror url)
LAB=$lab "$repo/tests/upstream/build.sh" --out "$work/upstream" --publish >"$work/upstream.list"
addr() { echo "10.213.0.$((10 + $1))"; }
{
  cat <<TOML
[cluster]
name = "bench"
kubernetes_version = "v1.37.2"
etcd_version = "v3.6.17"
flannel_version = "v0.28.11"
[apiserver]
vip = "10.213.0.100"
endpoint = "10.213.0.11"
[ssh]
user = "kbin"
key = "$KBIN_LAB_DIR/ssh/id_ed25519"
# the first login of the sudo user on a host starts its systemd user session: slow under load
connect_timeout_secs = 30
[lb]
interface = "eth0"
[artifacts]
mirror = "$mirror"
# lab hosts are containers: kube-proxy leaves the kernel-wide conntrack limit alone
[kube_proxy.config]
conntrack = { maxPerCore = 0 }
[kubelet.config]
# the lab runs cgroup v1: the kubelet of 1.35 and later starts there only with this
failCgroupV1 = false
TOML
  for i in 1 2 3; do printf '[[hosts]]\nname = "h%d"\naddress = "%s"\nroles = [%s]\n' "$i" "$(addr $i)" "$([[ $i == 1 ]] && echo '"etcd", "master", "node"' || echo '"etcd", "node"')"; done
} >"$work/cluster.toml"
cp "$KBIN_LAB_DIR/ssh/known_hosts" "$work/known_hosts"
while IFS=$'\t' read -r comp ver _ sum; do k pin "$comp" "$ver" "$sum" >/dev/null; done <"$work/upstream.list"
k download >/dev/null 2>&1
measure "up, 1 master + 2 nodes, fresh hosts" k up
for r in 1 2 3; do measure "up, unchanged re-run $r" k up; done

for ((i = 4; i <= nodes; i++)); do printf '[[hosts]]\nname = "h%d"\naddress = "%s"\nroles = ["node"]\n' "$i" "$(addr $i)" >>"$work/cluster.toml"; done
m2=$((nodes + 1)) l1=$((nodes + 2)) l2=$((nodes + 3))
printf '[[hosts]]\nname = "h%d"\naddress = "%s"\nroles = ["master"]\n' "$m2" "$(addr $m2)" >>"$work/cluster.toml"
printf '[[hosts]]\nname = "h%d"\naddress = "%s"\nroles = ["lb"]\nlb_priority = 120\n' "$l1" "$(addr $l1)" >>"$work/cluster.toml"
printf '[[hosts]]\nname = "h%d"\naddress = "%s"\nroles = ["lb"]\nlb_priority = 100\n' "$l2" "$(addr $l2)" >>"$work/cluster.toml"
measure "up, grown to $nodes nodes + 2 masters + LB pair" k up
for r in 1 2 3; do measure "up, unchanged re-run $r ($total hosts)" k up; done
measure "repoint $nodes nodes to the VIP, batch 1" k repoint-nodes --vip --batch 1
measure "repoint $nodes nodes to master1, batch 5" k repoint-nodes --endpoint 10.213.0.11 --batch 5
measure "repoint $nodes nodes to the VIP, batch 5" k repoint-nodes --vip --batch 5
measure "repoint, nothing to do" k repoint-nodes --vip
