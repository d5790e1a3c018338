#!/usr/bin/env bash
# End-to-end: day two on the real components (issues 16, 27): `kbin upgrade` of etcd v3.5.36 ->
# v3.6.17, then of Kubernetes v1.36.3 -> v1.37.2 (all built from their Go modules by
# tests/upstream/build.sh), `kbin upgrade --rollback`, the skew refusal, and `kbin etcd restore`.
#
# Scenario: `up` of two masters, three nodes (etcd on h1 h2 h3) and an LB host with the VIP, on
# v1.36.3 and etcd v3.5.36; a web Deployment (three busybox httpd replicas, one per node, a
# PodDisruptionBudget) behind a NodePort Service; an in-cluster API client on every node (a
# DaemonSet); during each upgrade step a loop over the NodePorts and a loop through the VIP run ->
# etcd to v3.6.17 (a snapshot, each member's v2store checked, one member at a time): every request
# through the VIP and of the in-cluster client succeeds -> upgrade --dry-run changes nothing -> a
# kubelet made to fail on the new release (an ExecStartPre drop-in on h3, the first node) is
# switched back at once: exit 1 naming h3, h4 and h5 untouched -> the drop-in removed, upgrade
# completes: every component reports v1.37.2, the v1.36.3 binaries are still on the hosts, every
# request through the VIP and of the in-cluster client succeeded, >= 99 % of the NodePort loop's
# -> upgrade --rollback: every host back on v1.36.3, the cluster file too, etcd left on v3.6.17,
# the same client checks -> an upgrade that skips a minor release is refused (exit 2), nothing
# changed -> pki renew + up (the renewal rollout) -> the CA rotations -> etcd restore (etcdutl, on
# etcd 3.6) of a snapshot taken with `etcd backup`: a namespace created after it is gone, every node
# Ready, status clean -> master remove of a master and etcd member behind the VIP.
# Each check prints "ok - ..." or "FAIL - ..."; the last line counts them; `bench:` lines carry
# the figures BENCHMARKS.md quotes.
# usage: tests/lab/e2e-upgrade.sh [path/to/kbin]   (default: target/release/kbin, built if missing)
set -uo pipefail
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
repo=$(cd "$here/../.." && pwd)
kbin=${1:-$repo/target/release/kbin}
[[ -x $kbin ]] || (cd "$repo" && cargo build --release --quiet) || exit 1

export KBIN_LAB_DIR=${KBIN_LAB_DIR_E2E_UPGRADE:-/tmp/kbin-lab-e2e-upgrade}
lab=$here/lab
work=$(mktemp -d /tmp/kbin-e2e-upgrade.XXXXXX)
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"
finish() {
  loop_stop
  "$lab" down >/dev/null 2>&1 || true
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
  suite_verdict e2e-upgrade
}
trap 'finish; exit $?' EXIT

ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
k() { "$lab" op -- env KBIN_CACHE_DIR="$work/cache" NO_COLOR=1 "$kbin" -c "$work/cluster.toml" "$@"; }
pyj() { python3 -c "import json,sys; d=json.load(open('$1')); sys.exit(0 if ($2) else 1)"; }
kc() { kc_admin -- "$@"; }
retry() { local n=$1 i; shift; for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 1; done; return 1; }
vip=10.213.0.100
nodes=(h3 h4 h5)

# The client: GETs from the operator's side, round robin over the three NodePorts, one line per
# request (200 or the failure) into $work/loop.<name>, until loop_stop. Several loops may run at
# once (the NodePort loop beside the VIP loop); loop_stop ends them all.
loop_pids=() loop_names=()
loop_start() {
  : >"$work/loop.$1"
  "$lab" op -- bash -c 'while [ ! -e "$1.stop" ]; do for ip in 10.213.0.13 10.213.0.14 10.213.0.15; do
      c=$(curl -s -o /dev/null -w "%{http_code}" --max-time 2 "http://$ip:30080/"); echo "$c $ip $(date +%s.%N)" >>"$1"; sleep 0.05; done; done' \
    loop "$work/loop.$1" &
  loop_pids+=($!)
  loop_names+=("$1")
}
# The same through the VIP: the apiserver's /readyz with the super-admin certificate, each
# request once (no retry), on a new connection.
vip_loop_start() {
  : >"$work/loop.$1"
  "$lab" op -- bash -c 'while [ ! -e "$1.stop" ]; do
      c=$(curl -s -o "$1.body" -w "%{http_code}" --max-time 2 --cacert "$2/ca.crt" --cert "$2/super-admin.crt" --key "$2/super-admin.key" "https://$3:6443/readyz?verbose"); echo "$c $(date +%s%3N)" >>"$1"
      # what a failed answer said (which readiness check failed), for the log
      [ "$c" = 200 ] || { echo "$c $(date +%s%3N): $(grep -v "^\[+\]" "$1.body" 2>/dev/null | tr "\n" " " | head -c 300)" >>"$1.failed"; }
      sleep 0.1; done' \
    loop "$work/loop.$1" "$work/pki" "$vip" &
  loop_pids+=($!)
  loop_names+=("$1")
}
# A client through the VIP, as the upgrade steps' client: GET /api/v1/namespaces/default (an API
# read served from etcd) with the super-admin certificate, each request once on a new connection.
# /readyz is a probe of one apiserver's own readiness (its etcd check has a 2 s deadline on this
# busy machine), not a client request; the renewal and removal loops keep asking it.
api_loop_start() {
  : >"$work/loop.$1"
  "$lab" op -- bash -c 'while [ ! -e "$1.stop" ]; do
      c=$(curl -s -o "$1.body" -w "%{http_code}" --max-time 2 --cacert "$2/ca.crt" --cert "$2/super-admin.crt" --key "$2/super-admin.key" "https://$3:6443/api/v1/namespaces/default"); echo "$c $(date +%s%3N)" >>"$1"
      [ "$c" = 200 ] || { echo "$c $(date +%s%3N): $(head -c 300 "$1.body" 2>/dev/null | tr "\n" " ")" >>"$1.failed"; }
      sleep 0.1; done' \
    loop "$work/loop.$1" "$work/pki" "$vip" &
  loop_pids+=($!)
  loop_names+=("$1")
}
loop_stop() {
  local n p
  for n in "${loop_names[@]}"; do touch "$work/loop.$n.stop"; done
  for p in "${loop_pids[@]}"; do wait "$p" 2>/dev/null; done
  for n in "${loop_names[@]}"; do rm -f "$work/loop.$n.stop"; done
  loop_pids=() loop_names=()
}
# availability NAME: "ok total percent" of the loop's requests
availability() { awk '{n++; if ($1 == 200) ok++} END {printf "%d %d %.2f\n", ok, n, n ? 100 * ok / n : 0}' "$work/loop.$1"; }
# failed NAME T0_MS: each failed request of the NodePort loop, seconds after T0 (for the log)
failed_at() { awk -v t0="$2" '$1 != 200 {printf "bench: %s: %s from %s at +%.1f s\n", n, $1, $2, $3 - t0 / 1000}' n="$1" "$work/loop.$1"; }
# the workload whole before a measured loop starts: 3/3 ready and every NodePort answering 3 times
# in a row (the tail of an earlier step is not counted against the next one)
whole() {
  kc rollout status deploy/web --timeout=90s >/dev/null 2>&1 || return 1
  local i; for i in 1 2 3; do retry 30 np_ok || return 1; done
}
at_least_99() { awk -v p="$3" -v n="$2" 'BEGIN {exit !(n >= 50 && p >= 99)}'; }

"$lab" down >/dev/null 2>&1 || true
"$lab" up 6 >/dev/null || { fail "lab up 6"; exit 1; }
"$lab" mirror >/dev/null 2>&1 || { fail "lab mirror"; exit 1; }
mirror=$("$lab" mirror url)
# shellcheck source=tests/lab/upstream.sh
. "$here/upstream.sh"
upstream_publish || { fail "upstream components built from their Go modules and published to the lab mirror"; exit 1; }
check "the mirror serves v1.36.3 and v1.37.2 builds of kubernetes-server and kubelet, etcd v3.5.36 and v3.6.17" bash -c "grep -q 'kubernetes-server/v1.37.2/' '$work/upstream.list' && grep -q 'kubelet/v1.37.2/kubelet' '$work/upstream.list' && grep -q 'kubelet/v1.36.3/kubelet' '$work/upstream.list' && grep -q 'etcd/v3.5.36/' '$work/upstream.list' && grep -q 'etcd/v3.6.17/' '$work/upstream.list'"

cat >"$work/cluster.toml" <<TOML
# e2e upgrade: two masters behind the VIP, three nodes
[cluster]
name = "e2e-upgrade"
kubernetes_version = "v1.36.3" # the release the cluster runs
etcd_version = "v3.5.36"
flannel_version = "v0.28.11"

[apiserver]
vip = "$vip"

[ssh]
key = "$KBIN_LAB_DIR/ssh/id_ed25519"
connect_timeout_secs = 3

[lb]
interface = "eth0"
virtual_router_id = 53

[artifacts]
mirror = "$mirror"

[kube_proxy.config]
conntrack = { maxPerCore = 0 }

# the lab's hosts share one disk (see tests/lab/e2e-workloads.sh)
[kubelet.config]
# the lab's hosts run cgroup v1 (the machine's memory controller is held by v1 hierarchies, see
# tests/lab/README.md): the kubelet of 1.35 and later starts there only with this, said knowingly
failCgroupV1 = false
evictionHard = { "nodefs.available" = "1%", "imagefs.available" = "1%", "nodefs.inodesFree" = "1%" }

[[hosts]]
name = "h1"
address = "10.213.0.11"
roles = ["etcd", "master"]

[[hosts]]
name = "h2"
address = "10.213.0.12"
roles = ["etcd", "master"]

[[hosts]]
name = "h3"
address = "10.213.0.13"
roles = ["etcd", "node"]

[[hosts]]
name = "h4"
address = "10.213.0.14"
roles = ["node"]

[[hosts]]
name = "h5"
address = "10.213.0.15"
roles = ["node"]

[[hosts]]
name = "h6"
address = "10.213.0.16"
roles = ["lb"]
TOML
cp "$KBIN_LAB_DIR/ssh/known_hosts" "$work/known_hosts"
upstream_pin || { fail "kbin pin of every upstream build"; exit 1; }
upstream_images || { fail "images built from their sources and published to the lab mirror"; exit 1; }

# relayed (the lab's link is fast, so --relay forces it): etcd, the masters and the LB start as
# soon as their own files are in, alongside the nodes' files fanning out
k up --relay >"$work/up.out" 2>&1
rc=$?
check "up --relay (2 masters behind the VIP, 3 nodes) on v1.36.3 exits 0" test $rc -eq 0
[[ $rc -eq 0 ]] || { tail -n 40 "$work/up.out"; exit 1; }
check "... relayed: its files went host to host" bash -c "grep -q '^\[up\] relay: [0-9]* transfers to [0-9]* hosts' '$work/up.out' && grep -q '^\[relay\] h[0-9]*: .* from h[0-9]*$' '$work/up.out'"
check "the Kubernetes binaries sit in their release directory, switched by symlinks" bash -c "[ \"\$(\"$lab\" exec h3 -- readlink /opt/kubernetes/bin/kubelet)\" = /opt/kubernetes/releases/v1.36.3/kubelet ] && [ \"\$(\"$lab\" exec h1 -- readlink /opt/kubernetes/bin/kube-apiserver)\" = /opt/kubernetes/releases/v1.36.3/kube-apiserver ]"

cat >"$work/web.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}
      terminationGracePeriodSeconds: 5
      containers:
      - name: httpd
        image: docker.io/library/busybox:1.35.0
        imagePullPolicy: Never
        command: ["sh", "-c", "echo \"hello from $(hostname)\" >/var/www/index.html; exec httpd -f -p 8080 -h /var/www"]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
---
apiVersion: v1
kind: Service
metadata: {name: web-np, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
YAML
kc apply -f "$work/web.yaml" >/dev/null 2>"$work/web.err"
check "web: 3 replicas roll out behind a NodePort and a PodDisruptionBudget" bash -c "\"$lab\" op -- \"$kubectl\" --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' rollout status deploy/web --timeout=120s >/dev/null 2>&1"
np_ok() { for n in 13 14 15; do "$lab" op -- curl -sS --max-time 3 "http://10.213.0.$n:30080/" | grep -q '^hello from web-' || return 1; done; }
check "the NodePort answers on every node" retry 20 np_ok

# The in-cluster client of the upgrade steps: the apiclient on every node (a DaemonSet: a drain
# leaves its pods, a kubelet restart keeps their containers), each asking the apiserver through
# the kubernetes Service with its service-account token every 250 ms, each request once on a new
# TLS connection; each node's counter answers on NodePort 30082 of that node (a Service with
# externalTrafficPolicy Local: a node's port reaches its own pod).
cat >"$work/upclient.yaml" <<'YAML'
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: upclient, namespace: default}
spec:
  selector: {matchLabels: {app: upclient}}
  template:
    metadata: {labels: {app: upclient}}
    spec:
      containers:
      - name: apiclient
        image: kbin.test/apiclient:v1
        imagePullPolicy: Never
        env: [{name: APICLIENT_INTERVAL_MS, value: "250"}]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: upclient, namespace: default}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: upclient}
  ports: [{port: 8080, targetPort: 8080, nodePort: 30082}]
YAML
kc apply -f "$work/upclient.yaml" >/dev/null 2>"$work/upclient.err"
# "ok fail" summed over the three nodes' clients; fails if one does not answer
up_counts() {
  local n out ok=0 bad=0
  for n in 13 14 15; do
    out=$("$lab" op -- curl -sS --max-time 3 "http://10.213.0.$n:30082/counts" 2>/dev/null)
    [[ $out =~ ^ok=([0-9]+)\ fail=([0-9]+) ]] || { echo "no answer from 10.213.0.$n:30082 ($out)" >&2; return 1; }
    ok=$((ok + BASH_REMATCH[1])) bad=$((bad + BASH_REMATCH[2]))
  done
  echo "$ok $bad"
}
upclient_up() { local c; c=$(up_counts) || return 1; read -r o f <<<"$c"; ((f == 0 && o >= 15)); }
check "an in-cluster client on every node asks the apiserver, every answer 200" retry 90 upclient_up
# the in-cluster client across a step: START is "ok fail" before it; every request of the step
# succeeded and there were some
upclient_failures() { local n; for n in 13 14 15; do "$lab" op -- curl -sS --max-time 3 "http://10.213.0.$n:30082/failures" 2>/dev/null | sed "s/^/upclient 10.213.0.$n: /"; done; }
upclient_held() { # OK0 FAIL0
  local c o f; c=$(up_counts) || return 1; read -r o f <<<"$c"
  echo "bench: in-cluster client: $((o - $1)) ok, $((f - $2)) failed" >&2
  ((f == $2)) || upclient_failures >&2
  ((f == $2 && o - $1 >= 20))
}

kubelet_of() { "$lab" exec "$1" -- /opt/kubernetes/bin/kubelet --version 2>/dev/null | awk '{print $2}'; }
node_versions() { kc get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.nodeInfo.kubeletVersion} {end}' 2>/dev/null; }

# --- etcd a minor release up (issue 27): v3.5.36 -> v3.6.17, one member at a time ---------------
etcd_of() { "$lab" exec "$1" -- /opt/etcd/bin/etcd --version 2>/dev/null | awk '/^etcd Version:/ {print $3}'; }
check "etcd v3.5.36 on h1 h2 h3, etcdutl beside it" bash -c "for h in h1 h2 h3; do [ \"\$(\"$lab\" exec \$h -- /opt/etcd/bin/etcd --version | awk '/^etcd Version:/ {print \$3}')\" = 3.5.36 ] && \"$lab\" exec \$h -- test -x /opt/etcd/bin/etcdutl || exit 1; done"
sed -i 's/^etcd_version = "v3.5.36"/etcd_version = "v3.6.17"/' "$work/cluster.toml"
whole || echo "e2e: the web workload is not whole before the etcd loop"
read -r uc_ok uc_fail < <(up_counts)
api_loop_start etcd
loop_start etcd-np
t0=$(ms)
k upgrade --json >"$work/etcd-up.json" 2>"$work/etcd-up.err"
rc=$? t_etcd=$(($(ms) - t0))
loop_stop
check "upgrade of etcd v3.5.36 -> v3.6.17 exits 0 ($t_etcd ms)" test $rc -eq 0
[[ $rc -eq 0 ]] || tail -n 30 "$work/etcd-up.err"
check "... took an etcd snapshot first, and checked the v2store of every member before moving" bash -c "ls '$work'/backups/etcd-e2e-upgrade-*-before-etcd-v3.6.17.db >/dev/null 2>&1 && [ \$(grep -c '^\[upgrade\] h[123]: v2store: no custom content' '$work/etcd-up.err') -eq 3 ]"
check "... restarted the members one at a time: each reports v3.6.17" bash -c "for h in h1 h2 h3; do [ \"\$(\"$lab\" exec \$h -- /opt/etcd/bin/etcd --version | awk '/^etcd Version:/ {print \$3}')\" = 3.6.17 ] || exit 1; done" 
check "... the Kubernetes hosts untouched (nothing switched)" pyj "$work/etcd-up.json" "all(not m['changed'] for m in d['masters']) and d['nodes'] == [] and sorted(d['etcd']) == ['h1', 'h2', 'h3']"
k etcd status --json >"$work/etcd-status.json" 2>/dev/null
check "... 3 members healthy on v3.6.17" pyj "$work/etcd-status.json" "len(d['members']) == 3 and all(m['healthy'] and m.get('version', '').startswith('3.6.17') for m in d['members'])"
read -r ok_n total pct < <(availability etcd)
echo "bench: etcd v3.5.36 -> v3.6.17 (3 members): $t_etcd ms; $ok_n/$total requests through the VIP ok ($pct %)"
sed 's/^/bench: etcd upgrade: a request through the VIP answered /' "$work/loop.etcd.failed" 2>/dev/null
check "... every API request through the VIP succeeded meanwhile, first attempt ($ok_n/$total)" bash -c "[ $total -ge 20 ] && [ $ok_n -eq $total ]"
check "... the in-cluster client's every request succeeded meanwhile" upclient_held "$uc_ok" "$uc_fail"
read -r ok_n total pct < <(availability etcd-np)
check "... the web workload kept answering on its NodePorts ($ok_n/$total)" at_least_99 "$ok_n" "$total" "$pct"

# --- the plan ---------------------------------------------------------------------------------
sed -i 's/^kubernetes_version = "v1.36.3"/kubernetes_version = "v1.37.2"/' "$work/cluster.toml"
k upgrade --dry-run >"$work/dry.out" 2>&1
rc=$?
check "upgrade --dry-run exits 0 and shows the plan per host" bash -c "[ $rc -eq 0 ] && grep -q '^\[plan\] h1: master: v1.36.3 -> v1.37.2' '$work/dry.out' && grep -q '^\[plan\] h5: node: v1.36.3 -> v1.37.2' '$work/dry.out' && grep -q 'would switch /opt/kubernetes/bin/kubelet to /opt/kubernetes/releases/v1.37.2/kubelet' '$work/dry.out' && grep -q 'would cordon' '$work/dry.out'"
check "... and changes nothing (links, Nodes schedulable)" bash -c "[ \"\$(\"$lab\" exec h3 -- readlink /opt/kubernetes/bin/kubelet)\" = /opt/kubernetes/releases/v1.36.3/kubelet ] && ! \"$lab\" exec h3 -- test -e /opt/kubernetes/releases/v1.37.2 && [ -z \"\$(\"$lab\" op -- \"$kubectl\" --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' get nodes -o jsonpath='{.items[*].spec.unschedulable}')\" ]"

# --- a node whose new kubelet fails: switched back at once, the upgrade stops -------------------
"$lab" exec h3 -- sh -c 'mkdir -p /etc/systemd/system/kubelet.service.d && printf "[Service]\nExecStartPre=/bin/sh -c \"! readlink /opt/kubernetes/bin/kubelet | grep -q v1.37.2\"\n" >/etc/systemd/system/kubelet.service.d/10-e2e-fail.conf && systemctl daemon-reload'
whole || echo "e2e: the web workload is not whole before the fail loop"
loop_start fail
t0=$(ms)
k upgrade --timeout 40 >"$work/up-fail.out" 2>&1
rc=$?
loop_stop
check "upgrade with h3's new kubelet failing exits 1 naming h3" bash -c "[ $rc -eq 1 ] && grep -q 'h3' '$work/up-fail.out' && grep -q '^\[rollback\] h3' '$work/up-fail.out'"
check "... the masters were upgraded first (one at a time)" bash -c "kb() { \"$lab\" exec \$1 -- /opt/kubernetes/bin/kube-apiserver --version; }; kb h1 | grep -q v1.37.2 && kb h2 | grep -q v1.37.2"
check "... h3 is back on v1.36.3: its kubelet link, and the kubelet it runs says v1.36.3" bash -c "[ \"\$(\"$lab\" exec h3 -- readlink /opt/kubernetes/bin/kubelet)\" = /opt/kubernetes/releases/v1.36.3/kubelet ] && \"$lab\" exec h3 -- sh -c '\$(readlink /proc/\$(pidof kubelet)/exe) --version' | grep -qx 'Kubernetes v1.36.3'"
h3_back() { node_versions | grep -q 'h3=v1.36.3' && [[ -z $(kc get node h3 -o jsonpath='{.spec.unschedulable}' 2>/dev/null) ]] && kc get node h3 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True; }
check "... h3's Node Ready on v1.36.3, uncordoned" retry 30 h3_back
check "... h4 and h5 untouched (v1.36.3, nothing of v1.37.2 on them)" bash -c "for h in h4 h5; do \"$lab\" exec \$h -- test -e /opt/kubernetes/releases/v1.37.2 && exit 1; done; node_v=\$(\"$lab\" op -- \"$kubectl\" --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.nodeInfo.kubeletVersion} {end}'); echo \"\$node_v\" | grep -q 'h4=v1.36.3' && echo \"\$node_v\" | grep -q 'h5=v1.36.3'"
read -r ok_n total pct < <(availability fail)
failed_at fail "$t0"
echo "bench: failed upgrade: $ok_n/$total requests ok ($pct %)"

# --- the upgrade completes --------------------------------------------------------------------
"$lab" exec h3 -- sh -c 'rm /etc/systemd/system/kubelet.service.d/10-e2e-fail.conf && systemctl daemon-reload'
whole || echo "e2e: the web workload is not whole before the up loop"
read -r uc_ok uc_fail < <(up_counts)
loop_start up
api_loop_start up-vip
vip_loop_start up-readyz # /readyz beside it: a figure, not a gate
t0=$(ms)
k upgrade --relay --json >"$work/up.json" 2>"$work/up.err" # the lab's links are fast: force the relay
rc=$? t_up=$(($(ms) - t0))
loop_stop
check "upgrade to v1.37.2 exits 0 ($t_up ms)" test $rc -eq 0
[[ $rc -eq 0 ]] || tail -n 30 "$work/up.err"
check "... relayed the new binaries: each left the operator once, the nodes passed them on" bash -c "[ \$(grep -c '^\[relay\] h[345]: kubelet from the operator' '$work/up.err') -eq 1 ] && [ \$(grep -c '^\[relay\] h[345]: kubelet from h[345]$' '$work/up.err') -ge 1 ]"
check "... took an etcd snapshot next to the cluster file first" bash -c "ls '$work'/backups/etcd-e2e-upgrade-*-before-v1.37.2.db >/dev/null 2>&1"
check "... drained each node (its web pod evicted), one at a time, and uncordoned it" bash -c "for h in h3 h4 h5; do grep -q \"^\[drain\] \$h: cordoned\" '$work/up.err' && grep -q \"^\[upgrade\] \$h: uncordoned\" '$work/up.err' || exit 1; done"
read -r ok_n total pct < <(availability up)
failed_at up "$t0"
echo "bench: upgrade v1.36.3 -> v1.37.2 (2 masters, 3 nodes): $t_up ms; $ok_n/$total requests ok ($pct %)"
python3 -c "import json; d=json.load(open('$work/up.json')); [print('bench: node', n['host'], n['millis'], 'ms') for n in d['nodes']]" 2>/dev/null
check "the web workload's NodePorts answered >= 99 % of the requests during the upgrade ($ok_n/$total)" at_least_99 "$ok_n" "$total" "$pct"
read -r ok_n total pct < <(availability up-vip)
sed 's/^/bench: upgrade: a request through the VIP answered /' "$work/loop.up-vip.failed" 2>/dev/null
read -r r_ok r_total r_pct < <(availability up-readyz)
echo "bench: upgrade: /readyz through the VIP answered 200 $r_ok/$r_total times"
sed 's/^/bench: upgrade: \/readyz through the VIP answered /' "$work/loop.up-readyz.failed" 2>/dev/null
check "... every API request through the VIP succeeded during the upgrade, first attempt ($ok_n/$total)" bash -c "[ $total -ge 50 ] && [ $ok_n -eq $total ]"
check "... the in-cluster client's every request succeeded during the upgrade" upclient_held "$uc_ok" "$uc_fail"
check "every node's kubelet reports v1.37.2" bash -c "[ \"\$(\"$lab\" op -- \"$kubectl\" --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' get nodes -o jsonpath='{range .items[*]}{.status.nodeInfo.kubeletVersion} {end}')\" = 'v1.37.2 v1.37.2 v1.37.2 ' ]"
check "the apiserver through the VIP reports v1.37.2" bash -c "\"$lab\" op -- \"$kubectl\" --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' --server https://$vip:6443 version -o json | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)[\"serverVersion\"][\"gitVersion\"] != \"v1.37.2\")'"
versions_are() { # V: every component on every host reports V
  # the output is read whole before it is matched: `cmd | grep -q` under pipefail fails when grep
  # exits on the first line while cmd (kubectl prints two) is still writing (SIGPIPE)
  local h c out
  says() { out=$("$lab" exec "$1" -- "${@:3}" 2>&1); [[ $out == *"$2"* ]] || { echo "$1 ${3##*/}: ${out:-no output}" >&2; return 1; }; }
  for h in h1 h2; do
    for c in kube-apiserver kube-controller-manager kube-scheduler; do says $h "$1" /opt/kubernetes/bin/$c --version || return 1; done
    says $h "Client Version: $1" /opt/kubernetes/bin/kubectl version --client || return 1
  done
  for h in "${nodes[@]}"; do for c in kubelet kube-proxy; do says $h "$1" /opt/kubernetes/bin/$c --version || return 1; done; done
}
check "every component on every host reports v1.37.2 (apiserver, controller-manager, scheduler, kubectl, kubelet, kube-proxy)" versions_are v1.37.2
check "the v1.36.3 binaries are still on the hosts" bash -c "for h in h1 h2; do \"$lab\" exec \$h -- test -x /opt/kubernetes/releases/v1.36.3/kube-apiserver || exit 1; done; for h in h3 h4 h5; do \"$lab\" exec \$h -- test -x /opt/kubernetes/releases/v1.36.3/kubelet || exit 1; done"
check "the running kube-apiserver and kubelet processes are the new ones" bash -c "\"$lab\" exec h1 -- sh -c 'readlink /proc/\$(pidof kube-apiserver)/exe' | grep -q v1.37.2 && \"$lab\" exec h4 -- sh -c 'readlink /proc/\$(pidof kubelet)/exe' | grep -q v1.37.2"
check "the web Deployment is whole again (3/3)" bash -c "\"$lab\" op -- \"$kubectl\" --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' rollout status deploy/web --timeout=60s >/dev/null 2>&1"
t0=$(ms)
k upgrade >"$work/up-again.out" 2>&1
rc=$? t_again=$(($(ms) - t0))
check "an unchanged re-run exits 0, switches and restarts nothing ($t_again ms)" bash -c "[ $rc -eq 0 ] && ! grep -q 'restarted\|cordoned' '$work/up-again.out'"

# --- rollback -----------------------------------------------------------------------------------
whole || echo "e2e: the web workload is not whole before the rollback loop"
read -r uc_ok uc_fail < <(up_counts)
loop_start rollback
api_loop_start rollback-vip
vip_loop_start rollback-readyz # /readyz beside it: a figure, not a gate
t0=$(ms)
k upgrade --rollback --json >"$work/rollback.json" 2>"$work/rollback.out"
rc=$? t_rb=$(($(ms) - t0))
loop_stop
check "upgrade --rollback exits 0 ($t_rb ms)" test $rc -eq 0
[[ $rc -eq 0 ]] || tail -n 30 "$work/rollback.out"
check "... nodes first, then masters" bash -c "n=\$(grep -n '^\[drain\] h3: cordoned' '$work/rollback.out' | head -1 | cut -d: -f1); m=\$(grep -n '^\[master\] h1: ' '$work/rollback.out' | head -1 | cut -d: -f1); [ -n \"\$n\" ] && [ -n \"\$m\" ] && [ \$n -lt \$m ]"
check "... sent no binary again (its report: < 1 MB to any host, none relayed): the previous release was still there" pyj "$work/rollback.json" "len(d['masters']) == 2 and len(d['nodes']) == 3 and all(o['bytes_sent'] < 1000000 for o in d['masters'] + [n['outcome'] for n in d['nodes']]) and d['relay'].get('operator_bytes', 0) == 0"
read -r ok_n total pct < <(availability rollback)
failed_at rollback "$t0"
echo "bench: rollback v1.37.2 -> v1.36.3: $t_rb ms; $ok_n/$total requests ok ($pct %)"
check "the web workload's NodePorts answered >= 99 % of the requests during the rollback ($ok_n/$total)" at_least_99 "$ok_n" "$total" "$pct"
read -r ok_n total pct < <(availability rollback-vip)
sed 's/^/bench: rollback: a request through the VIP answered /' "$work/loop.rollback-vip.failed" 2>/dev/null
read -r r_ok r_total r_pct < <(availability rollback-readyz)
echo "bench: rollback: /readyz through the VIP answered 200 $r_ok/$r_total times"
sed 's/^/bench: rollback: \/readyz through the VIP answered /' "$work/loop.rollback-readyz.failed" 2>/dev/null
check "... every API request through the VIP succeeded during the rollback, first attempt ($ok_n/$total)" bash -c "[ $total -ge 50 ] && [ $ok_n -eq $total ]"
check "... the in-cluster client's every request succeeded during the rollback" upclient_held "$uc_ok" "$uc_fail"
check "... the rollback left etcd on v3.6.17 and said how to undo an etcd change" bash -c "grep -q 'etcd is not rolled back' '$work/rollback.out' && for h in h1 h2 h3; do [ \"\$(\"$lab\" exec \$h -- /opt/etcd/bin/etcd --version | awk '/^etcd Version:/ {print \$3}')\" = 3.6.17 ] || exit 1; done"
check "every component on every host reports v1.36.3 again" versions_are v1.36.3
check "the cluster file says v1.36.3 again, its comment kept" grep -q '^kubernetes_version = "v1.36.3" # the release the cluster runs' "$work/cluster.toml"

# --- skew ---------------------------------------------------------------------------------------
sed -i 's/^kubernetes_version = "v1.36.3"/kubernetes_version = "v1.38.0"/' "$work/cluster.toml"
k upgrade >"$work/skew.out" 2>&1
rc=$?
check "an upgrade v1.36 -> v1.38 is refused (exit 2) naming the rule and the versions" bash -c "[ $rc -eq 2 ] && grep -q 'one minor release at a time: h1 runs v1.36.3, and v1.38.0 skips v1.37' '$work/skew.out'"
check "... nothing changed" bash -c "[ \"\$(\"$lab\" exec h1 -- readlink /opt/kubernetes/bin/kube-apiserver)\" = /opt/kubernetes/releases/v1.36.3/kube-apiserver ] && ! grep -q '^\[\(master\|node\|drain\)\]' '$work/skew.out'"
sed -i 's/^kubernetes_version = "v1.38.0"/kubernetes_version = "v1.36.3"/' "$work/cluster.toml"
kc delete -f "$work/upclient.yaml" --wait=false >/dev/null 2>&1

# --- renewal rollout (issue 15): renewed leaves placed, only the services that use them restarted ----
k -q pki renew apiserver kubelet/h4 >/dev/null 2>"$work/renew.err"
vip_loop_start renew
t_renew=$(ms)
k up --json >"$work/renew-up.json" 2>"$work/renew-up.err"
rc=$?
loop_stop
check "pki renew apiserver kubelet/h4, then up: exits 0" test $rc -eq 0
check "... restarted exactly each master's kube-apiserver (one at a time) and h4's kubelet" pyj "$work/renew-up.json" "sorted(d['restarted'])==['h1/kube-apiserver', 'h2/kube-apiserver', 'h4/kubelet'] and d['started']==[]"
read -r ok_n total pct < <(availability renew)
echo "bench: renewal rollout (2 apiservers, 1 kubelet): $ok_n/$total requests through the VIP ok ($pct %)"
# each master is out of the LB upstreams while it restarts: the VIP answers every request
check "... each master left the LB upstreams while it restarted" bash -c "[ \$(grep -c 'out of the LB upstreams while it restarts' '$work/renew-up.err') -eq 2 ]"
check "... the VIP answered every request meanwhile ($ok_n/$total)" bash -c "[ $total -ge 20 ] && [ $ok_n -eq $total ]"
# a failed request with its curl answer (000: no answer within 2 s) and when, for the log
awk -v t0="$t_renew" '$1 != 200 {printf "bench: renewal: a request through the VIP answered %s at +%.1f s of the up\n", $1, ($2 - t0) / 1000}' "$work/loop.renew"
same_file() { [[ $("$lab" exec "$1" -- sha256sum "$2" | cut -d' ' -f1) == $(sha256sum "$3" | cut -d' ' -f1) ]]; }
renewed_on_hosts() { same_file h1 /opt/kubernetes/ssl/apiserver.crt "$work/pki/hosts/h1/apiserver.crt" && same_file h2 /opt/kubernetes/ssl/apiserver.crt "$work/pki/hosts/h2/apiserver.crt" && same_file h4 /opt/kubernetes/ssl/kubelet.crt "$work/pki/hosts/h4/kubelet.crt"; }
check "... the hosts hold the renewed certificates" renewed_on_hosts

# --- CA rotation (issue 15): kubernetes, etcd and front-proxy CAs with no failed request --------
cat >"$work/apiclient.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: apiclient, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: apiclient}}
  template:
    metadata: {labels: {app: apiclient}}
    spec:
      containers:
      - name: apiclient
        image: kbin.test/apiclient:v1
        imagePullPolicy: Never
        env: [{name: APICLIENT_INTERVAL_MS, value: "250"}]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: apiclient, namespace: default}
spec:
  type: NodePort
  selector: {app: apiclient}
  ports: [{port: 8080, targetPort: 8080, nodePort: 30081}]
YAML
kc apply -f "$work/apiclient.yaml" >/dev/null 2>"$work/apiclient.err"
# counts: "ok=N fail=M" from the pod (it asks the apiserver with its service-account token)
counts() { "$lab" op -- curl -sS --max-time 3 "http://10.213.0.13:30081/counts" 2>/dev/null; }
apiclient_up() { [[ $(counts) =~ ^ok=([0-9]+)\ fail=0 ]] && (( BASH_REMATCH[1] >= 5 )); }
check "an in-cluster client asks the apiserver with its service-account token, every answer 200" retry 90 apiclient_up
pki_sum() { (cd "$work/pki" && find . -type f ! -name .kbin-lock -print0 | sort -z | xargs -0 sha256sum | sha256sum); }

# refused with nothing changed: a host that does not answer, a node NotReady
before=$(pki_sum)
"$lab" exec h5 -- systemctl stop ssh.socket ssh.service >/dev/null 2>&1
k pki rotate-ca kubernetes >"$work/rot-unreach.out" 2>&1
rc=$?
"$lab" exec h5 -- systemctl start ssh.service >/dev/null 2>&1
check "rotate-ca with h5 unreachable is refused (exit 2) naming it, pki/ unchanged" bash -c "[ $rc -eq 2 ] && grep -q 'h5' '$work/rot-unreach.out' && [ '$(pki_sum)' = '$before' ]"
"$lab" exec h5 -- systemctl stop kubelet
h5_not_ready() { [[ $(kc get node h5 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) != True ]]; }
retry 120 h5_not_ready
k pki rotate-ca kubernetes >"$work/rot-notready.out" 2>&1
rc=$?
"$lab" exec h5 -- systemctl start kubelet
check "rotate-ca with h5 NotReady is refused (exit 2) naming it, pki/ unchanged" bash -c "[ $rc -eq 2 ] && grep -q 'h5: the Node is not Ready' '$work/rot-notready.out' && [ '$(pki_sum)' = '$before' ]"
h5_ready() { ! h5_not_ready; }
retry 120 h5_ready

# the admin's loop: kubectl through the VIP with pki/kubeconfigs/admin.kubeconfig as kbin keeps it
kc_loop_pid=""
kc_loop_start() {
  : >"$work/kcloop.$1"
  "$lab" op -- bash -c 'while [ ! -e "$1.stop" ]; do
      if "$2" --kubeconfig "$3" --request-timeout=5s get --raw /api >/dev/null 2>>"$1.err"; then echo 200 >>"$1"; else echo "fail $(date +%s%3N)" >>"$1"; fi; sleep 0.1; done' \
    loop "$work/kcloop.$1" "$kubectl" "$work/pki/kubeconfigs/admin.kubeconfig" &
  kc_loop_pid=$!
  kc_loop_name=$1
}
kc_loop_stop() { touch "$work/kcloop.$kc_loop_name.stop"; wait "$kc_loop_pid" 2>/dev/null; rm -f "$work/kcloop.$kc_loop_name.stop"; }
kc_avail() { awk '{n++; if ($1 == 200) ok++} END {printf "%d %d\n", ok, n}' "$work/kcloop.$1"; }
read -r c0_ok c0_fail < <(counts | sed 's/ok=\([0-9]*\) fail=\([0-9]*\)/\1 \2/')
old_ca=$work/old-kubernetes-ca.crt
cp "$work/pki/ca.crt" "$old_ca"

# kubernetes CA, killed once the second stage began, then resumed
kc_loop_start ca
t0=$(ms)
k pki rotate-ca kubernetes >"$work/rot-ca1.out" 2>&1 &
rot_pid=$!
started_reissue() { grep -q '2/3 reissue' "$work/rot-ca1.out"; }
retry 600 started_reissue
sleep 5
pkill -9 -f -- "-c $work/cluster.toml pki rotate-ca" || true
wait "$rot_pid" 2>/dev/null
check "rotate-ca kubernetes killed during its second stage" bash -c "grep -q '2/3 reissue' '$work/rot-ca1.out' && ! grep -q '3/3 finish' '$work/rot-ca1.out'"
k pki rotate-ca kubernetes --json >"$work/rot-ca2.json" 2>"$work/rot-ca2.err"
rc=$?
t_ca=$(( $(ms) - t0 ))
kc_loop_stop
check "... run again, it resumes where it stood and completes (exit 0, $t_ca ms in all)" bash -c "[ $rc -eq 0 ] && grep -q 'resuming' '$work/rot-ca2.err' && grep -q 'no host holds, trusts or uses the old kubernetes CA' '$work/rot-ca2.err'"
[[ $rc -eq 0 ]] || tail -n 30 "$work/rot-ca2.err"
check "... each node's kubelet got a client certificate of the new CA" pyj "$work/rot-ca2.json" "sorted(d['kubelet_clients'])==['h3','h4','h5']"
read -r ok_n total < <(kc_avail ca)
echo "bench: kubernetes CA rotation: $ok_n/$total admin requests through the VIP ok"
check "... the admin's kubectl loop through the VIP saw no failed request ($ok_n/$total)" bash -c "[ $total -ge 50 ] && [ $ok_n -eq $total ]"
read -r c1_ok c1_fail < <(counts | sed 's/ok=\([0-9]*\) fail=\([0-9]*\)/\1 \2/')
echo "bench: kubernetes CA rotation: the in-cluster client's requests ok $((c1_ok - c0_ok)), failed $((c1_fail - c0_fail))"
[[ $c1_fail -eq 0 ]] || "$lab" op -- curl -sS --max-time 3 "http://10.213.0.13:30081/failures" | sed 's/^/apiclient: /'
check "... the in-cluster client (service-account token, ca.crt from kube-root-ca.crt) saw no failed request ($((c1_ok - c0_ok)) ok)" bash -c "[ $((c1_ok - c0_ok)) -ge 100 ] && [ $c1_fail -eq 0 ]"
# independently of kbin: every certificate on every host, checked with openssl against the old CA
signed_by_old() {
  local h f
  for h in h1 h2 h3 h4 h5; do
    for f in $("$lab" exec "$h" -- sh -c 'ls /opt/kubernetes/ssl/*.crt /opt/kubernetes/ssl/kubelet-client-current.pem 2>/dev/null'); do
      "$lab" exec "$h" -- cat "$f" | awk '/BEGIN CERT/,/END CERT/' >"$work/hostcert.pem"
      if openssl verify -CAfile "$old_ca" "$work/hostcert.pem" >/dev/null 2>&1 || grep -qF "$(sed -n 2p "$old_ca")" "$work/hostcert.pem"; then echo "$h:$f"; fi
    done
  done
}
left=$(signed_by_old)
check "afterwards no certificate on any host is, or is signed by, the old kubernetes CA${left:+ (left: $left)}" test -z "$left"
check "... the old pair is retired in pki/retired/, ca.crt holds one certificate" bash -c "ls -d '$work'/pki/retired/ca-* >/dev/null && [ \$(grep -c 'BEGIN CERT' '$work/pki/ca.crt') -eq 1 ] && ! cmp -s '$work/pki/ca.crt' '$old_ca'"
check "... pki check --hosts is clean (exit 0)" bash -c "NO_COLOR=1 \"$lab\" op -- env KBIN_CACHE_DIR='$work/cache' '$kbin' -c '$work/cluster.toml' pki check --hosts >'$work/rot-check.out' 2>&1"
ms_new_ca() {
  kc get --raw /apis/metrics.k8s.io/v1beta1/nodes >/dev/null 2>&1 &&
    [[ $(kc get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.spec.caBundle}' | base64 -d) == "$(cat "$work/pki/ca.crt")" ]] &&
    ! openssl verify -CAfile "$old_ca" "$work/pki/metrics-server.crt" >/dev/null 2>&1
}
check "... the metrics API answers, its APIService trusting only the new CA, metrics-server's certificate the new CA's" retry 90 ms_new_ca
check "... every node Ready, the web Deployment 3/3" bash -c "[ \"\$(\"$lab\" op -- \"$kubectl\" --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' get deploy web -o jsonpath='{.status.readyReplicas}')\" = 3 ]"

# etcd CA, with quorum watched on every round: each member's /health with the current pki/
# files, one token per member. etcd v3.5 answers /health true only after a linearizable Range
# succeeded (server/etcdserver/api/etcdhttp/metrics.go, checkV3Health): the leader confirmed its
# leadership with a majority, so one T in a round proves the cluster had its quorum then.
#   T healthy                 N up, between leaders ("RAFT NO LEADER", or a read cut by "leader changed")
#   F up, /health false for another reason      S up, no answer within 2 s (curl exit 28)
#   D down: connection refused (curl exit 7)    Xn any other error, n is curl's exit code
# A round with quorum has a T. A round without one is the election after a leadership handover
# (etcd's /health says false while the members have no leader) when at most one member is down
# and the next round has a T again; anything else is a lost quorum. Apart from quorum: at most
# one member is down in any round (members restart one at a time).
etcd_loop() {
  "$lab" op -- bash -c 'while [ ! -e "$1.stop" ]; do line="$(date +%s%3N)"; for ip in 10.213.0.11 10.213.0.12 10.213.0.13; do
      body=$(curl -s --max-time 2 --cacert "$2/etcd/ca.crt" --cert "$2/etcd/healthcheck-client.crt" --key "$2/etcd/healthcheck-client.key" "https://$ip:2379/health"); rc=$?
      case $rc:$body in
        0:*"\"health\":\"true\""*) s=T ;; *"RAFT NO LEADER"*|*"leader changed"*) s=N ;; 0:*"\"health\":\"false\""*) s=F ;;
        7:*) s=D ;; 28:*) s=S ;; *) s=X$rc ;;
      esac
      line="$line $s"; done
      echo "$line" >>"$1"; sleep 0.2; done' loop "$work/etcdloop" "$work/pki" &
  etcd_pid=$!
}
: >"$work/etcdloop"
etcd_loop
kc_loop_start etcd
t0=$(ms)
k pki rotate-ca etcd --json >"$work/rot-etcd.json" 2>"$work/rot-etcd.err"
rc=$?
t_etcd=$(( $(ms) - t0 ))
kc_loop_stop
touch "$work/etcdloop.stop"; wait "$etcd_pid" 2>/dev/null
check "rotate-ca etcd exits 0 ($t_etcd ms)" test $rc -eq 0
[[ $rc -eq 0 ]] || tail -n 30 "$work/rot-etcd.err"
# prints "rounds lost elections two_down slow", and each round without quorum or with two
# members down on stderr
quorum() {
  awk '{ t = 0; down = 0; for (i = 2; i <= NF; i++) { if ($i == "T") t++; if ($i == "D" || $i ~ /^X/) down++; if ($i == "S") slow++ }
         T[NR] = t; DN[NR] = down; L[NR] = $0 }
    END { lost = 0; el = 0; two = 0
      for (r = 1; r <= NR; r++) {
        if (DN[r] >= 2) { two++; print "etcd round with two members down: " L[r] > "/dev/stderr" }
        if (T[r] == 0) { if (DN[r] <= 1 && r < NR && T[r + 1] >= 1) el++; else { lost++; print "etcd round without quorum: " L[r] > "/dev/stderr" } } }
      print NR, lost, el, two, slow + 0 }' "$1"
}
read -r rounds no_quorum elections two_down slow < <(quorum "$work/etcdloop")
echo "bench: etcd CA rotation: $rounds health rounds, $no_quorum without quorum, $elections one-round elections (the leadership handovers), $two_down with two members down, $slow slow answers (> 2 s); members restarted one at a time"
check "... etcd kept its quorum in every round ($rounds rounds)" bash -c "[ $rounds -ge 20 ] && [ $no_quorum -eq 0 ]"
check "... at most one etcd member was down at any moment" test "$two_down" -eq 0
check "... the leader handed its leadership to another member before each of its restarts" bash -c "[ \$(grep -c 'etcd leadership handed to' '$work/rot-etcd.err') -ge 2 ] && ! grep -q 'could not hand the etcd leadership\|after handing the etcd leadership' '$work/rot-etcd.err'"
read -r ok_n total < <(kc_avail etcd)
check "... the admin's loop through the VIP saw no failed request ($ok_n/$total)" bash -c "[ $total -ge 20 ] && [ $ok_n -eq $total ]"
check "... no etcd certificate kbin placed is the old etcd CA's" bash -c "for h in h1 h2 h3; do \"$lab\" exec \$h -- cat /opt/etcd/ssl/ca.crt | grep -c 'BEGIN CERT' | grep -qx 1 || exit 1; done; ls -d '$work'/pki/retired/etcd-ca-* >/dev/null"

read -r ce_ok ce_fail < <(counts | sed 's/ok=\([0-9]*\) fail=\([0-9]*\)/\1 \2/')
echo "bench: etcd CA rotation: the in-cluster client's requests ok $((ce_ok - c1_ok)), failed $((ce_fail - c1_fail))"

# front-proxy CA: the aggregated metrics API (the apiserver's front-proxy client certificate) works after
kc_loop_start fp
k pki rotate-ca front-proxy --json >"$work/rot-fp.json" 2>"$work/rot-fp.err"
rc=$?
kc_loop_stop
check "rotate-ca front-proxy exits 0" test $rc -eq 0
[[ $rc -eq 0 ]] || tail -n 30 "$work/rot-fp.err"
read -r ok_n total < <(kc_avail fp)
check "... the admin's loop through the VIP saw no failed request ($ok_n/$total)" bash -c "[ $total -ge 20 ] && [ $ok_n -eq $total ]"
metrics_api() { kc get --raw /apis/metrics.k8s.io/v1beta1/nodes >/dev/null 2>&1; }
check "... the aggregated metrics API answers through the new front-proxy client certificate" retry 90 metrics_api
read -r c2_ok c2_fail < <(counts | sed 's/ok=\([0-9]*\) fail=\([0-9]*\)/\1 \2/')
echo "bench: front-proxy CA rotation: the in-cluster client's requests ok $((c2_ok - ce_ok)), failed $((c2_fail - ce_fail))"
check "the in-cluster client saw no failed request through all three rotations ($((c2_ok - c0_ok)) ok)" bash -c "[ $c2_fail -eq 0 ]"
[[ $c2_fail -eq 0 ]] || "$lab" op -- curl -sS --max-time 3 "http://10.213.0.13:30081/failures" | sed 's/^/apiclient: /'

# service-account key: the first run stops before the old key is dropped (pods hold tokens it
# signed until their kubelets refresh them); with the pods restarted, --drop-after 0 finishes
k pki rotate-sa-key --json >"$work/rot-sa1.json" 2>"$work/rot-sa1.err"
rc=$?
check "rotate-sa-key exits 0, both keys accepted, the new one signing, and stops before dropping the old one" bash -c "[ $rc -eq 0 ] && grep -q 'stopped before dropping the old key' '$work/rot-sa1.err' && [ \$(\"$lab\" exec h1 -- grep -c 'BEGIN PUBLIC KEY' /opt/kubernetes/ssl/sa.pub) -eq 2 ]"
[[ $rc -eq 0 ]] || tail -n 30 "$work/rot-sa1.err"
read -r c3_ok c3_fail < <(counts | sed 's/ok=\([0-9]*\) fail=\([0-9]*\)/\1 \2/')
check "... the in-cluster client (token signed by the old key) saw no failed request ($((c3_ok - c2_ok)) ok meanwhile)" bash -c "[ $((c3_fail - c2_fail)) -eq 0 ] && [ $((c3_ok - c2_ok)) -ge 20 ]"
[[ $c3_fail -eq $c2_fail ]] || "$lab" op -- curl -sS --max-time 3 "http://10.213.0.13:30081/failures" | sed 's/^/apiclient: /'
kc -n default rollout restart deploy/apiclient >/dev/null
kc -n kube-system rollout restart deploy/coredns deploy/metrics-server >/dev/null
restarted() { kc -n default rollout status deploy/apiclient --timeout=5s >/dev/null 2>&1 && kc -n kube-system rollout status deploy/coredns --timeout=5s >/dev/null 2>&1 && kc -n kube-system rollout status deploy/metrics-server --timeout=5s >/dev/null 2>&1; }
retry 120 restarted
k pki rotate-sa-key --drop-after 0 --json >"$work/rot-sa2.json" 2>"$work/rot-sa2.err"
rc=$?
check "rotate-sa-key --drop-after 0, once the pods were restarted: exits 0, only the new key accepted on every master" bash -c "[ $rc -eq 0 ] && for h in h1 h2; do [ \$(\"$lab\" exec \$h -- grep -c 'BEGIN PUBLIC KEY' /opt/kubernetes/ssl/sa.pub) -eq 1 ] || exit 1; done && ls '$work'/pki/retired/sa-*/sa.key >/dev/null"
[[ $rc -eq 0 ]] || tail -n 30 "$work/rot-sa2.err"
apiclient_fresh() { [[ $(counts) =~ ^ok=([0-9]+)\ fail=0 ]] && (( BASH_REMATCH[1] >= 20 )); }
check "... the restarted in-cluster client's token (new key) is accepted, no failed request" retry 60 apiclient_fresh
check "... the metrics API answers (metrics-server's new token)" retry 90 metrics_api

# --- etcd restore -------------------------------------------------------------------------------
# a snapshot of the cluster as it runs now (`etcd backup` prints its path), then a namespace
k etcd backup --json >"$work/backup.json" 2>"$work/backup.err"
rc=$?
snap=$(python3 -c "import json; print(json.load(open('$work/backup.json'))['path'])" 2>/dev/null)
check "etcd backup exits 0 and wrote a snapshot it verified next to the cluster file, its digest as reported" bash -c "[ $rc -eq 0 ] && grep -q 'snapshot verified' '$work/backup.err' && [ -s '$snap' ] && case '$snap' in '$work'/backups/*) ;; *) exit 1 ;; esac && python3 -c \"import json,hashlib,sys; d=json.load(open('$work/backup.json')); sys.exit(0 if d['sha256']==hashlib.sha256(open('$snap','rb').read()).hexdigest() else 1)\""
kc create namespace after-snapshot >/dev/null 2>&1
check "a namespace created after the snapshot exists" bash -c "\"$lab\" op -- \"$kubectl\" --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' get ns after-snapshot >/dev/null 2>&1"
k etcd restore --dry-run "$snap" >"$work/restore-dry.out" 2>&1
rc=$?
check "etcd restore --dry-run exits 0 and changes nothing" bash -c "[ $rc -eq 0 ] && \"$lab\" op -- \"$kubectl\" --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' get ns after-snapshot >/dev/null 2>&1"
t0=$(ms)
k etcd restore "$snap" >"$work/restore.out" 2>&1
rc=$? t_restore=$(($(ms) - t0))
check "etcd restore of the snapshot taken before the namespace exits 0 ($t_restore ms)" test $rc -eq 0
[[ $rc -eq 0 ]] || tail -n 30 "$work/restore.out"
check "... the apiservers were stopped before etcd and started after" bash -c "a=\$(grep -n 'stopped kube-apiserver' '$work/restore.out' | head -1 | cut -d: -f1); e=\$(grep -n 'restored the snapshot' '$work/restore.out' | head -1 | cut -d: -f1); s=\$(grep -n 'started kube-apiserver' '$work/restore.out' | tail -1 | cut -d: -f1); [ -n \"\$a\" ] && [ -n \"\$e\" ] && [ -n \"\$s\" ] && [ \$a -lt \$e ] && [ \$e -lt \$s ]"
gone() { ! kc get ns after-snapshot >/dev/null 2>&1 && kc get deploy web >/dev/null 2>&1; }
check "after the restore the namespace is gone and the cluster's objects are back" retry 30 gone
all_ready() { [[ $(kc get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status} {end}' 2>/dev/null) == "True True True " ]]; }
check "every node Ready" retry 60 all_ready
# the add-ons' pods come back on their own after the restore (metrics-server's API a little later)
status_clean() { k status >"$work/status.out" 2>&1; }
check "kbin status is clean (exit 0)" retry 120 status_clean
check "three etcd members, all started" bash -c "[ \$(\"$lab\" exec h1 -- env ETCDCTL_API=3 /opt/etcd/bin/etcdctl --endpoints=https://10.213.0.11:2379 --cacert /opt/etcd/ssl/ca.crt --cert /opt/etcd/ssl/server.crt --key /opt/etcd/ssl/server.key member list | grep -c ', started, ') -eq 3 ]"

# --- master remove of a running master while the VIP serves ----------------------------------------
vip_loop_start mremove
k master remove h2 >"$work/mremove.out" 2>&1
rc=$?
loop_stop
check "master remove h2 (a master and an etcd member) exits 0" test $rc -eq 0
[[ $rc -eq 0 ]] || tail -n 20 "$work/mremove.out"
read -r ok_n total pct < <(availability mremove)
echo "bench: master remove h2: $ok_n/$total requests through the VIP ok ($pct %)"
check "... the VIP answered every request meanwhile ($ok_n/$total)" bash -c "[ $total -ge 20 ] && [ $ok_n -eq $total ]"
check "... the LB upstreams no longer name h2, h1 stays" bash -c "! \"$lab\" exec h6 -- grep -q 'server 10.213.0.12:6443' /etc/nginx/nginx.conf && \"$lab\" exec h6 -- grep -q 'server 10.213.0.11:6443' /etc/nginx/nginx.conf"
check "... its etcd member is gone (two members left, both started)" bash -c "l=\$(\"$lab\" exec h1 -- env ETCDCTL_API=3 /opt/etcd/bin/etcdctl --endpoints=https://10.213.0.11:2379 --cacert /opt/etcd/ssl/ca.crt --cert /opt/etcd/ssl/server.crt --key /opt/etcd/ssl/server.key member list); ! echo \"\$l\" | grep -q h2 && [ \$(echo \"\$l\" | grep -c ', started, ') -eq 2 ]"
check "... the cluster file no longer lists h2, its comments kept" bash -c "! grep -q '10.213.0.12' '$work/cluster.toml' && grep -q '^# e2e upgrade' '$work/cluster.toml'"
file_before=$(sha256sum "$work/cluster.toml" | cut -d' ' -f1)
k master remove h1 >"$work/mremove-last.out" 2>&1
rc=$?
check "master remove of the last master is refused (exit 2) naming the rule" bash -c "[ $rc -eq 2 ] && grep -q 'last master' '$work/mremove-last.out'"
check "... the cluster file unchanged (its digest), h1 still a master, its apiserver active" bash -c "[ \"\$(sha256sum '$work/cluster.toml' | cut -d' ' -f1)\" = '$file_before' ] && python3 -c \"import tomllib,sys; h={x['name']: x for x in tomllib.load(open('$work/cluster.toml','rb'))['hosts']}; sys.exit(0 if 'master' in h['h1']['roles'] else 1)\" && [ \"\$(\"$lab\" exec h1 -- systemctl is-active kube-apiserver)\" = active ]"
suite_end
