#!/usr/bin/env bash
# End-to-end: a whole cluster built by kbin on real lab hosts (systemd, sshd, nginx, keepalived,
# etcd v3.6.17 built from its Go modules) with the real Kubernetes components: kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl v1.37.2, flanneld
# v0.28.11, containerd, runc, the CNI plugins and crictl, built from their official Go modules by
# tests/upstream/build.sh, served by the lab mirror in upstream's release layout and pinned with
# `kbin pin`.
#
# Scenario (issues 6 and 11): `up` with one master and two workers -> the real apiserver is ready,
# every node Ready with a client certificate from TLS bootstrapping approved by the controller-
# manager, leader leases held, flannel subnets, kube-proxy healthy with its iptables rules,
# apiserver->kubelet TLS verified -> add a second master (a new address: the cluster file gains
# it, comments kept) -> `lb deploy` on two LB hosts -> every node heartbeating -> the VIP answers
# TLS with a certificate that names it -> nginx stops on the VIP holder -> the VIP moves and still
# answers. `status` is checked at each step. Plus: the unchanged re-run (timed), --dry-run, a failed
# master update rolled back, and kubectl through the VIP while the MASTER LB host is powered off.
# Each check prints "ok - ..." or "FAIL - ..."; the last line counts them.
# usage: tests/lab/e2e-cluster.sh [path/to/kbin]   (default: target/release/kbin, built if missing)
set -uo pipefail
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
repo=$(cd "$here/../.." && pwd)
kbin=${1:-$repo/target/release/kbin}
[[ -x $kbin ]] || (cd "$repo" && cargo build --release --quiet) || exit 1

export KBIN_LAB_DIR=${KBIN_LAB_DIR_E2E_CLUSTER:-/tmp/kbin-lab-e2e-cluster}
lab=$here/lab
work=$(mktemp -d /tmp/kbin-e2e-cluster.XXXXXX)
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"
finish() {
  "$lab" down >/dev/null 2>&1 || true
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
  suite_verdict e2e-cluster
}
trap 'finish; exit $?' EXIT

ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
k() { "$lab" op -- env KBIN_CACHE_DIR="$work/cache" NO_COLOR=1 "$kbin" -c "$work/cluster.toml" "$@"; }
# a python assertion over a JSON file: pyj FILE 'expression using d'
pyj() { python3 -c "import json,sys; d=json.load(open('$1')); sys.exit(0 if ($2) else 1)"; }
vip=10.213.0.100
# curl from the operator namespace, verifying the apiserver cert against the cluster CA
kc() { "$lab" op -- curl -sS --max-time 5 --cacert "$work/pki/ca.crt" --cert "$work/pki/super-admin.crt" --key "$work/pki/super-admin.key" "$@"; }

"$lab" down >/dev/null 2>&1 || true
"$lab" up 7 >/dev/null || { fail "lab up 7"; exit 1; }
"$lab" mirror >/dev/null 2>&1 || { fail "lab mirror"; exit 1; }
mirror=$("$lab" mirror url)
# shellcheck source=tests/lab/upstream.sh
. "$here/upstream.sh"
upstream_publish || { fail "upstream components built from their Go modules and published to the lab mirror"; exit 1; }

cat >"$work/cluster.toml" <<TOML
# e2e cluster: one master, two workers; a second master and the LB pair come later
[cluster]
name = "e2e"
kubernetes_version = "v1.37.2"
etcd_version = "v3.6.17"
flannel_version = "v0.28.11"

[apiserver]
vip = "$vip"
# the nodes talk to master1 until \`kbin repoint-nodes\` moves them
endpoint = "10.213.0.11"

[ssh]
key = "$KBIN_LAB_DIR/ssh/id_ed25519"
connect_timeout_secs = 3

[lb]
interface = "eth0"
virtual_router_id = 51

[artifacts]
mirror = "$mirror"

# The lab's hosts are containers: only the machine's own network namespace may set the
# kernel-wide conntrack limit, so kube-proxy must not try (a VM needs no such setting)
[kube_proxy.config]
conntrack = { maxPerCore = 0 }

# the lab's hosts share one disk with the machine and with each other: the kubelet's default
# eviction thresholds (imagefs 15 %, nodefs 10 % free) would taint every node with disk-pressure
# whenever the machine's disk is busy. Kept low, as kind does; a VM keeps the defaults.
[kubelet.config]
# the lab's hosts run cgroup v1 (the machine's memory controller is held by v1 hierarchies, see
# tests/lab/README.md): the kubelet of 1.35 and later starts there only with this, said knowingly
failCgroupV1 = false
evictionHard = { "nodefs.available" = "1%", "imagefs.available" = "1%", "nodefs.inodesFree" = "1%" }

[[hosts]]
name = "h1"
address = "10.213.0.11"
roles = ["etcd", "master", "node"]

[[hosts]]
name = "h2"
address = "10.213.0.12"
roles = ["etcd", "node"]

[[hosts]]
name = "h3"
address = "10.213.0.13"
roles = ["etcd", "node"]
TOML
cp "$KBIN_LAB_DIR/ssh/known_hosts" "$work/known_hosts"
upstream_pin || { fail "kbin pin of every upstream build"; exit 1; }
# the images (pause, CoreDNS, metrics-server) every node imports; `up` waits for the add-ons
upstream_images || { fail "images built from their sources and published to the lab mirror"; exit 1; }

# regression: in a container /sys/class/net shows the machine's NICs (every host "shared" a MAC)
# and built-in br_netfilter has no /sys/module entry; both made `hosts check` fail on good hosts
k hosts check >"$work/check.out" 2>&1
check "hosts check passes on the fresh lab hosts (distinct MACs, built-in modules count)" bash -c "grep -q '3 hosts checked: 0 errors' '$work/check.out'"

# --- cgroup v1 without failCgroupV1 = false: up refuses before anything is changed (issue 27) ----
# the lab's hosts run cgroup v1; the kubelet of 1.35 and later would exit there in a crash loop
check "hosts check shows each host's cgroup version (v1 here)" bash -c "[ \$(grep -c '^  cgroup      v1\$' '$work/check.out') -eq 3 ]"
grep -v '^failCgroupV1 = false$' "$work/cluster.toml" >"$work/cgroup-v1.toml"
check "... the copy of the cluster file without failCgroupV1 = false has none" bash -c "! grep -q failCgroupV1 '$work/cgroup-v1.toml' && grep -q failCgroupV1 '$work/cluster.toml'"
"$lab" op -- env KBIN_CACHE_DIR="$work/cache" NO_COLOR=1 "$kbin" -c "$work/cgroup-v1.toml" up >"$work/cgroup.out" 2>"$work/cgroup.err"
rc=$?
check "cgroup v1 and no failCgroupV1 = false: up refuses (exit 2) naming each node and the fix" bash -c "[ $rc -eq 2 ] && for h in h1 h2 h3; do grep -q \"\[preflight\] \$h: the host runs cgroup v1, and the kubelet of Kubernetes v1.37.2 refuses to start on it\" '$work/cgroup.err' || exit 1; done && grep -q 'systemd.unified_cgroup_hierarchy=1' '$work/cgroup.err'"
check "... before any download, etcd or master stage; nothing installed on h1" bash -c "! grep -q '^\[up\] \(download\|etcd\|masters\)' '$work/cgroup.err' && ! \"$lab\" exec h1 -- test -e /usr/lib/systemd/system/etcd.service && ! \"$lab\" exec h1 -- test -e /opt/kubernetes/bin/kube-apiserver"

# --- a node's kubelet port is taken: up refuses before anything is changed (issue 12) ------------------
"$lab" exec h3 -- systemd-run --quiet --unit=squatter python3 -c 'import socket, time
s = socket.socket(); s.bind(("0.0.0.0", 10250)); s.listen(); time.sleep(600)' >/dev/null
squatting() { "$lab" exec h3 -- ss -Hltn 'sport = :10250' | grep -q .; }
for _ in $(seq 20); do squatting && break; sleep 0.25; done
check "something else listens on h3:10250" squatting
k up >"$work/squat.out" 2>"$work/squat.err"
rc=$?
check "port 10250 taken on h3: up refuses (exit 2) naming h3 and the port" bash -c "[ $rc -eq 2 ] && grep -q '\[preflight\] h3: port 10250 is already in use' '$work/squat.err'"
check "... before any download, etcd or master stage; nothing installed on h1" bash -c "! grep -q '^\[up\] \(download\|etcd\|masters\)' '$work/squat.err' && ! \"$lab\" exec h1 -- test -e /usr/lib/systemd/system/etcd.service && ! \"$lab\" exec h1 -- test -e /opt/kubernetes/bin/kube-apiserver"
"$lab" exec h3 -- systemctl stop squatter

# --- up: one master, two workers ------------------------------------------------------------------
k -q download >/dev/null 2>&1 # warm the cache: the timing below is the deploy itself
t0=$(ms)
k up --json >"$work/up1.json" 2>"$work/up1.err"
rc=$? t_up=$(($(ms) - t0))
check "up (1 master, 2 workers) exits 0 ($t_up ms)" test $rc -eq 0
[[ $rc -eq 0 ]] || { tail -n 40 "$work/up1.err"; exit 1; }
for stage in pki download etcd masters manifests nodes; do
  grep -q "^\[up\] $stage" "$work/up1.err" || fail "up prints its $stage stage"
done
k status --json >"$work/status1.json" 2>/dev/null
# --- certificates as they are on the hosts (issue 15) -------------------------------------------------------
k pki check --hosts --json >"$work/certs1.json" 2>"$work/certs1.err"
rc=$?
check "pki check --hosts on the fresh cluster exits 0: every file as in pki/, signed by its CA" bash -c "[ $rc -eq 0 ]"
check "... every node holds kubelet-client-current from TLS bootstrapping, about a year left, no local copy" python3 -c "
import json, sys
d = json.load(open('$work/certs1.json'))
rows = [(h['host'], f) for h in d['hosts'] for f in h['files']]
ok = all(any('kubelet-client-current' in f['path'] and (f['days_left'] or 0) > 300 and f['local'] == 'no-local-copy' for n, f in rows if n == node) for node in ('h1', 'h2', 'h3'))
sys.exit(0 if ok else 1)"
good=$("$lab" exec h3 -- cat /opt/kubernetes/ssl/kubelet.crt)
"$lab" exec h2 -- cat /opt/kubernetes/ssl/kubelet.crt | "$lab" exec h3 -- sh -c 'cat >/opt/kubernetes/ssl/kubelet.crt'
k pki check --hosts --json >"$work/certs2.json" 2>/dev/null
rc=$?
check "h2's kubelet.crt copied onto h3: pki check --hosts exits 1 naming h3's file as differing" bash -c "[ $rc -eq 1 ] && python3 -c \"import json,sys; d=json.load(open('$work/certs2.json')); bad=[(h['host'], f['path']) for h in d['hosts'] for f in h['files'] if f['local']=='differs']; sys.exit(0 if bad==[('h3','/opt/kubernetes/ssl/kubelet.crt')] else 1)\""
printf '%s\n' "$good" | "$lab" exec h3 -- sh -c 'cat >/opt/kubernetes/ssl/kubelet.crt'
check "status: h1 h2 h3 registered and Ready" pyj "$work/status1.json" "sorted(n['name'] for n in d['nodes'] if n['ready'])==['h1','h2','h3']"
check "status: every unit active on every host" pyj "$work/status1.json" "all(s=='active' for h in d['hosts'] for s in h['units'].values())"
check "status: 3 etcd members healthy" pyj "$work/status1.json" "sum(m['healthy'] for m in d['etcd'])==3"
check "status: binary versions and cert days reported" pyj "$work/status1.json" "[h for h in d['hosts'] if h['name']=='h1'][0]['versions'].get('kube-apiserver','').endswith('v1.37.2') and [h for h in d['hosts'] if h['name']=='h1'][0]['cert_days_left']['apiserver']>300"
check "the apiserver on h1 answers the admin kubeconfig's CA and the node list" test "$(kc -o /dev/null -w '%{http_code}' https://10.213.0.11:6443/api/v1/nodes)" = 200

# --- the real components, as a user would check them -------------------------------------------------
check "the real kube-apiserver answers /readyz (real kubectl, admin.kubeconfig)" test "$(kc_admin -- get --raw /readyz 2>/dev/null)" = ok
kc_admin -- get nodes -o json >"$work/nodes.json" 2>/dev/null
check "kubectl get nodes: h1 h2 h3 Ready, kubelet v1.37.2" pyj "$work/nodes.json" "sorted(n['metadata']['name'] for n in d['items'] if any(c['type']=='Ready' and c['status']=='True' for c in n['status']['conditions']) and n['status']['nodeInfo']['kubeletVersion']=='v1.37.2')==['h1','h2','h3']"
kc_admin -- get csr -o json >"$work/csr.json" 2>/dev/null
tokid=$(cut -d. -f1 "$work/pki/bootstrap-token")
check "each node's client certificate came from TLS bootstrapping, auto-approved by the controller-manager" pyj "$work/csr.json" "sorted(c['spec']['username'] for c in d['items'] if c['spec']['signerName']=='kubernetes.io/kube-apiserver-client-kubelet' and c['status'].get('certificate') and any(x['type']=='Approved' and x['reason']=='AutoApproved' for x in c['status'].get('conditions',[])))==['system:bootstrap:$tokid']*3"
client_cert_ok() { # NODE: the kubelet's client certificate is system:node:NODE, signed by the cluster CA
  "$lab" exec "$1" -- cat /opt/kubernetes/ssl/kubelet-client-current.pem >"$work/$1-client.pem" &&
    openssl x509 -in "$work/$1-client.pem" -noout -subject | grep -q "CN *= *system:node:$1" &&
    openssl verify -CAfile "$work/pki/ca.crt" "$work/$1-client.pem" >/dev/null
}
check "h1 h2 h3 hold kubelet client certificates for system:node:<name> signed by the cluster CA" bash -c "$(declare -f client_cert_ok); lab='$lab' work='$work'; for n in h1 h2 h3; do client_cert_ok \$n || exit 1; done"
leases_held() {
  local l
  for l in kube-controller-manager kube-scheduler; do
    kc_admin -- -n kube-system get lease "$l" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null | grep -q '^h1_' || return 1
  done
}
check "the controller-manager and the scheduler hold their leader leases (h1)" leases_held
check "each node has its flannel subnet (podCIDR, flannel's annotation, /run/flannel/subnet.env)" bash -c "
  python3 -c \"import json,sys; d=json.load(open('$work/nodes.json')); sys.exit(0 if all(n['spec'].get('podCIDR','').startswith('10.244.') and n['metadata']['annotations'].get('flannel.alpha.coreos.com/public-ip')==[a['address'] for a in n['status']['addresses'] if a['type']=='InternalIP'][0] for n in d['items']) else 1)\" &&
  for n in h1 h2 h3; do \"$lab\" exec \$n -- grep -q '^FLANNEL_SUBNET=10.244.' /run/flannel/subnet.env || exit 1; done"
check "kube-proxy is healthy on every node and programmed the kubernetes Service in iptables" bash -c "
  for a in 11 12 13; do [ \"\$(\"$lab\" op -- curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://10.213.0.\$a:10256/healthz)\" = 200 ] || exit 1; done &&
  for n in h1 h2 h3; do \"$lab\" exec \$n -- iptables -t nat -S KUBE-SERVICES | grep -q -- '-d 10.96.0.1/32 .*dport 443' || exit 1; done"
kubelet_tls() { local n; for n in h1 h2 h3; do [[ $(kc_admin -- get --raw "/api/v1/nodes/$n/proxy/healthz" 2>/dev/null) == ok ]] || return 1; done; }
check "apiserver->kubelet TLS verified: /api/v1/nodes/<node>/proxy/healthz answers for every node" kubelet_tls
check "... with --kubelet-certificate-authority in force on the apiserver" bash -c "\"$lab\" exec h1 -- systemctl show -p ExecStart --value kube-apiserver | grep -q -- '--kubelet-certificate-authority=/opt/kubernetes/ssl/ca.crt'"

# --- unchanged re-run ---------------------------------------------------------------------------------
t0=$(ms)
k up --json >"$work/up2.json" 2>"$work/up2.err"
rc=$? t_rerun=$(($(ms) - t0))
check "unchanged re-run exits 0 in $t_rerun ms (target <= 3000)" test $rc -eq 0 -a $t_rerun -le 3000
# where the re-run's time went, stage by stage (what a slow machine's figure is made of)
python3 -c "import json; d=json.load(open('$work/up2.json')); print('bench: unchanged re-run stages: ' + ', '.join('%s %d ms' % (s['name'], s['millis']) for s in d['stages']))" 2>/dev/null || true
check "unchanged re-run sends nothing and (re)starts nothing" pyj "$work/up2.json" "d['bytes_sent']==0 and not d['started'] and not d['restarted']"
check "unchanged re-run: every manifest unchanged" pyj "$work/up2.json" "d['manifests'] and all(o['outcome']=='unchanged' for o in d['manifests'])"
k up --dry-run >"$work/dry.out" 2>"$work/dry.err"
rc=$?
check "up --dry-run on an up-to-date cluster exits 0 and plans nothing" bash -c "[ $rc -eq 0 ] && ! grep -q '^\[dry-run\].*would \(create\|replace\|start\|restart\)' '$work/dry.err' && grep -q 'planned in .*: 0 services would start, 0 would restart' '$work/dry.err'"
echo "bench: up (1 master, 2 workers) ${t_up} ms; unchanged re-run ${t_rerun} ms"

# --- a second master: a new address goes into the file ----------------------------------------------
h1_cert=$(sha256sum <"$work/pki/hosts/h1/apiserver.crt")
k master add 10.213.0.14 --json >"$work/m2.json" 2>"$work/m2.err"
check "master add 10.213.0.14 exits 0" test $? -eq 0
check "the cluster file gains h4 as a master, its comments kept" bash -c "grep -q '^# e2e cluster' '$work/cluster.toml' && grep -q '^# the nodes talk to master1' '$work/cluster.toml' && python3 -c \"import tomllib,sys; d=tomllib.load(open('$work/cluster.toml','rb')); h=[x for x in d['hosts'] if x['address']=='10.213.0.14']; sys.exit(0 if h and h[0]['name']=='h4' and h[0]['roles']==['master'] else 1)\""
check "h4 got its own apiserver cert naming it and the VIP; h1's is untouched" bash -c "openssl x509 -in '$work/pki/hosts/h4/apiserver.crt' -noout -ext subjectAltName | grep -q 'IP Address:10.213.0.14' && openssl x509 -in '$work/pki/hosts/h4/apiserver.crt' -noout -ext subjectAltName | grep -q 'IP Address:$vip' && [ \"\$(sha256sum <'$work/pki/hosts/h1/apiserver.crt')\" = '$h1_cert' ]"
check "h4's apiserver is ready and serves the shared state (it lists h1..h3)" bash -c "[ \"\$(\"$lab\" op -- curl -sS --max-time 5 --cacert '$work/pki/ca.crt' --cert '$work/pki/super-admin.crt' --key '$work/pki/super-admin.key' https://10.213.0.14:6443/api/v1/nodes | python3 -c 'import json,sys; print(len(json.load(sys.stdin)[\"items\"]))')\" = 3 ]"
k master add h4 --json >"$work/m2b.json" 2>/dev/null
check "master add h4 again is a no-op" pyj "$work/m2b.json" "all(not m['changed'] and not m['started'] and not m['restarted'] for m in d['masters'])"

# --- the LB pair ------------------------------------------------------------------------------------
cat >>"$work/cluster.toml" <<TOML

[[hosts]]
name = "h5"
address = "10.213.0.15"
roles = ["lb"]
lb_priority = 120

[[hosts]]
name = "h6"
address = "10.213.0.16"
roles = ["lb"]
lb_priority = 100
TOML
k lb deploy --json >"$work/lb.json" 2>"$work/lb.err"
check "lb deploy exits 0" test $? -eq 0
check "lb deploy: exactly one holder (h5, the higher priority), /healthz 200 through the VIP" pyj "$work/lb.json" "d['holder']=='h5' and d['healthz']==200"
check "curl to https://$vip:6443 validates the cert for the VIP name against the cluster CA" test "$(kc https://$vip:6443/healthz)" = ok
check "nginx on h5 and h6 proxies to both masters" bash -c "for h in h5 h6; do \"$lab\" exec \$h -- grep -q 'server 10.213.0.11:6443' /etc/nginx/nginx.conf && \"$lab\" exec \$h -- grep -q 'server 10.213.0.14:6443' /etc/nginx/nginx.conf || exit 1; done"
k status --json >"$work/status2.json" 2>/dev/null
check "status: h5 holds the VIP, h6 does not" pyj "$work/status2.json" "d['vip']['holders']==['h5']"

# --- a third master once the LB runs: nginx reloads (same main process), no restart ------------------
pid_before=$("$lab" exec h5 -- systemctl show -p MainPID --value nginx)
k master add 10.213.0.17 --name h7 >/dev/null 2>"$work/m3.err"
check "master add 10.213.0.17 (a third master, after the LB) exits 0" test $? -eq 0
check "both LB hosts proxy to the third master too" bash -c "for h in h5 h6; do \"$lab\" exec \$h -- grep -q 'server 10.213.0.17:6443' /etc/nginx/nginx.conf || exit 1; done"
check "nginx was reloaded, not restarted (same main process on h5)" test "$("$lab" exec h5 -- systemctl show -p MainPID --value nginx)" = "$pid_before"
check "the VIP answers after the reload" test "$(kc https://$vip:6443/healthz)" = ok

# --- every node registered and heartbeating ------------------------------------------------------------
renew() { kc "https://$vip:6443/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["spec"]["renewTime"])'; }
declare -A r1
for n in h1 h2 h3; do r1[$n]=$(renew $n); done
sleep 12
beating=1
for n in h1 h2 h3; do [[ $(renew $n) != "${r1[$n]}" ]] || beating=0; done
check "every node's Lease is renewed (heartbeat) through the VIP" test $beating -eq 1

# --- the VIP holder loses nginx: the VIP moves and still answers ------------------------------------------
"$lab" exec h5 -- systemctl stop nginx
moved=0
for _ in $(seq 40); do
  if "$lab" exec h6 -- ip -o addr show | grep -q " $vip/"; then moved=1; break; fi
  sleep 0.5
done
check "nginx stopped on h5: the VIP moves to h6" test $moved -eq 1
check "the VIP still answers TLS for its name (through h6)" test "$(kc https://$vip:6443/healthz)" = ok
k status --json >"$work/status3.json" 2>/dev/null
check "status: h6 holds the VIP, nginx on h5 is not active" pyj "$work/status3.json" "d['vip']['holders']==['h6'] and [h for h in d['hosts'] if h['name']=='h5'][0]['units']['nginx']!='active'"
"$lab" exec h5 -- systemctl start nginx

# --- a failed master update is rolled back --------------------------------------------------------------
mkdir -p "$work/templates"
sed 's#--tls-cert-file=[^ ]*#--tls-cert-file=/nonexistent/apiserver.crt#' "$repo/unit-templates/kube-apiserver.service.hbs" >"$work/templates/kube-apiserver.service.hbs"
before_unit=$("$lab" exec h4 -- sha256sum /usr/lib/systemd/system/kube-apiserver.service)
before_lb=$("$lab" exec h5 -- sha256sum /etc/nginx/nginx.conf)
sed -i 's#^name = "e2e"#name = "e2e"\ntemplates_dir = "templates"#' "$work/cluster.toml"
k master add h4 --timeout 15 >"$work/bad.out" 2>"$work/bad.err"
rc=$?
sed -i '/^templates_dir = "templates"$/d' "$work/cluster.toml"
check "a master update that cannot start fails (exit 1) and says it rolled back" bash -c "[ $rc -eq 1 ] && grep -q '^\[rollback\] h4' '$work/bad.err'"
check "after the rollback h4 has its previous unit and a ready apiserver; the LB config is unchanged" bash -c "[ \"\$(\"$lab\" exec h4 -- sha256sum /usr/lib/systemd/system/kube-apiserver.service)\" = '$before_unit' ] && [ \"\$(\"$lab\" exec h5 -- sha256sum /etc/nginx/nginx.conf)\" = '$before_lb' ] && [ \"\$(\"$lab\" op -- curl -sS --max-time 5 --cacert '$work/pki/ca.crt' https://10.213.0.14:6443/healthz)\" = ok ]"

# --- status tells the truth about a stopped component ------------------------------------------------------
"$lab" exec h3 -- systemctl stop kube-proxy
k status --json >"$work/status4.json" 2>/dev/null
check "status: kube-proxy on h3 is reported inactive" pyj "$work/status4.json" "[h for h in d['hosts'] if h['name']=='h3'][0]['units']['kube-proxy']!='active'"
k up --json >"$work/up3.json" 2>/dev/null
check "up brings the stopped kube-proxy back (and only it)" pyj "$work/up3.json" "d['started']==['h3/kube-proxy'] and d['bytes_sent']==0"

# --- master remove (issue 16): the LB upstreams first, then its control plane, then the file ------------
k master remove h7 --json >"$work/mremove.json" 2>"$work/mremove.err"
rc=$?
check "master remove h7 exits 0" test $rc -eq 0
check "... nginx on h5 and h6 no longer proxies to h7, the others stay" bash -c "for h in h5 h6; do ! \"$lab\" exec \$h -- grep -q 'server 10.213.0.17:6443' /etc/nginx/nginx.conf && \"$lab\" exec \$h -- grep -q 'server 10.213.0.11:6443' /etc/nginx/nginx.conf || exit 1; done"
check "... h7's kube-apiserver, controller-manager and scheduler are stopped and disabled" bash -c "for u in kube-apiserver kube-controller-manager kube-scheduler; do [ \"\$(\"$lab\" exec h7 -- systemctl is-enabled \$u 2>/dev/null)\" != enabled ] && ! \"$lab\" exec h7 -- systemctl is-active -q \$u || exit 1; done"
h7_gone() { ! grep -q '10.213.0.17' "$work/cluster.toml" && grep -q '^# e2e cluster' "$work/cluster.toml" && [[ $(kc "https://$vip:6443/healthz") == ok ]]; }
check "... the cluster file lost h7, its comments kept; kubectl through the VIP still works" h7_gone
file_before=$(sha256sum "$work/cluster.toml" | cut -d' ' -f1)
k master remove h1 >"$work/mremove2.out" 2>&1
rc=$?
check "master remove h1 is refused (exit 2), the refusal naming h1 and that nothing changed" bash -c "[ $rc -eq 2 ] && grep -q '^error: .*h1.*nothing was changed' '$work/mremove2.out'"
check "... the cluster file unchanged (its digest), h1 still a master, its apiserver active" bash -c "[ \"\$(sha256sum '$work/cluster.toml' | cut -d' ' -f1)\" = '$file_before' ] && python3 -c \"import tomllib,sys; h={x['name']: x for x in tomllib.load(open('$work/cluster.toml','rb'))['hosts']}; sys.exit(0 if 'master' in h['h1']['roles'] else 1)\" && [ \"\$(\"$lab\" exec h1 -- systemctl is-active kube-apiserver)\" = active ]"

# --- the MASTER LB host loses power: kubectl keeps working through the VIP ------------------------------
holds() { "$lab" exec "$1" -- ip -o addr show 2>/dev/null | grep -q " $vip/"; }
for _ in $(seq 40); do holds h5 && break; sleep 0.5; done # nginx is back on h5: it takes the VIP back
check "h5 (priority 120) holds the VIP again once its nginx is back" holds h5
check "kubectl through the VIP lists the nodes" bash -c "[ \"\$(\"$lab\" op -- '$kubectl' --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' --server https://$vip:6443 --request-timeout=5s get nodes -o name | wc -l)\" = 3 ]"
"$lab" stop h5
moved=0
for _ in $(seq 40); do holds h6 && { moved=1; break; }; sleep 0.5; done
check "h5 powered off: the VIP moves to h6" test $moved -eq 1
through_vip() { # 10 requests over ~5 s, every one answered
  local i
  for i in $(seq 10); do
    kc_admin "https://$vip:6443" -- get nodes -o name >/dev/null 2>&1 || return 1
    sleep 0.5
  done
}
check "kubectl keeps working through the VIP while the MASTER LB host is off" through_vip
suite_end
