#!/usr/bin/env bash
# End-to-end: a cluster that runs workloads, offline (issue 14), on the real components built from
# their Go modules (tests/upstream/build.sh) and images built here (tests/upstream/images.sh:
# pause, CoreDNS, metrics-server from their Go modules, busybox from Debian); no host has a route
# to any registry.
#
# Scenario: the artifacts and images go into a bundle; the bundle is loaded into an empty cache and
# the mirror stopped -> `up` of one master (not a node) and three nodes: every node imports the
# images, CoreDNS runs on two nodes, metrics-server behind the aggregation layer -> a Deployment
# of two busybox httpd replicas on two nodes behind a ClusterIP and a NodePort Service -> from a
# pod on the third node: the ClusterIP, the Service's DNS name and each backend pod's IP answer;
# the NodePort answers from the operator; kubectl logs, exec and top nodes work -> a backend pod
# deleted is replaced while the Service keeps answering -> the unchanged re-run sends and imports
# nothing -> a tampered image archive is refused before it reaches any node.
# Each check prints "ok - ..." or "FAIL - ..."; the last line counts them.
# usage: tests/lab/e2e-workloads.sh [path/to/kbin]   (default: target/release/kbin, built if missing)
set -uo pipefail
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
repo=$(cd "$here/../.." && pwd)
kbin=${1:-$repo/target/release/kbin}
[[ -x $kbin ]] || (cd "$repo" && cargo build --release --quiet) || exit 1

export KBIN_LAB_DIR=${KBIN_LAB_DIR_E2E_WORKLOADS:-/tmp/kbin-lab-e2e-workloads}
lab=$here/lab
work=$(mktemp -d /tmp/kbin-e2e-workloads.XXXXXX)
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"
finish() {
  "$lab" down >/dev/null 2>&1 || true
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
  suite_verdict e2e-workloads
}
trap 'finish; exit $?' EXIT

cache=$work/cache
k() { "$lab" op -- env KBIN_CACHE_DIR="$cache" NO_COLOR=1 "$kbin" -c "$work/cluster.toml" "$@"; }
pyj() { python3 -c "import json,sys; d=json.load(open('$1')); sys.exit(0 if ($2) else 1)"; }
kc() { kc_admin -- "$@"; }
# retry CMD... up to N times, a second apart: retry N CMD...
retry() { local n=$1 i; shift; for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 1; done; return 1; }

"$lab" down >/dev/null 2>&1 || true
"$lab" up 4 >/dev/null || { fail "lab up 4"; exit 1; }
"$lab" mirror >/dev/null 2>&1 || { fail "lab mirror"; exit 1; }
mirror=$("$lab" mirror url)
# shellcheck source=tests/lab/upstream.sh
. "$here/upstream.sh"
upstream_publish || { fail "upstream components built from their Go modules and published to the lab mirror"; exit 1; }

cat >"$work/cluster.toml" <<TOML
# e2e workloads: one master that is not a node, three nodes
[cluster]
name = "e2e-workloads"
kubernetes_version = "v1.37.2"
etcd_version = "v3.6.17"
flannel_version = "v0.28.11"
# kube-proxy in nftables mode (GA): the Service checks below run on its rules (issue 27)
proxy_mode = "nftables"

[ssh]
key = "$KBIN_LAB_DIR/ssh/id_ed25519"
connect_timeout_secs = 3

[artifacts]
mirror = "$mirror"

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

# a mirror for one registry: containerd gets hosts.toml for it (nothing serves it: the lab is offline)
[registries."registry.k8s.io"]
mirrors = ["https://10.213.0.1:5000"]

[[hosts]]
name = "h1"
address = "10.213.0.11"
roles = ["etcd", "master"]

[[hosts]]
name = "h2"
address = "10.213.0.12"
roles = ["node"]

[[hosts]]
name = "h3"
address = "10.213.0.13"
roles = ["node"]

[[hosts]]
name = "h4"
address = "10.213.0.14"
roles = ["node"]
TOML
cp "$KBIN_LAB_DIR/ssh/known_hosts" "$work/known_hosts"
upstream_pin || { fail "kbin pin of every upstream build"; exit 1; }
upstream_images || { fail "images built from their sources and published to the lab mirror"; exit 1; }

# --- no registry anywhere ----------------------------------------------------------------------
no_registry() { local h r; for h in h1 h2 h3 h4; do for r in registry.k8s.io registry-1.docker.io; do
  "$lab" exec $h -- curl -sS --max-time 3 -o /dev/null "https://$r/v2/" 2>/dev/null && { echo "$h reaches $r" >&2; return 1; }
done; done; return 0; }
check "no host (h1 h2 h3 h4) has a route to a registry (registry.k8s.io, docker.io do not resolve or answer)" no_registry

# --- a bundle with every artifact and image, loaded into an empty cache, the mirror stopped -------
KBIN_CACHE_DIR=$work/online-cache "$lab" op -- env KBIN_CACHE_DIR="$work/online-cache" NO_COLOR=1 "$kbin" -c "$work/cluster.toml" bundle create "$work/bundle.tar" >/dev/null 2>"$work/bundle.err"
rc=$?
check "bundle create exits 0 and carries the five images" bash -c "[ $rc -eq 0 ] && tar -xOf '$work/bundle.tar' kbin.lock | grep -c '^component = \"image:' | grep -qx 5"
k bundle load "$work/bundle.tar" >"$work/load.out" 2>"$work/load.err"
rc=$?
check "bundle load into an empty cache verifies every file, images included" bash -c "[ $rc -eq 0 ] && grep -q '^image:coredns' '$work/load.out' && grep -q 'image:pause registry.k8s.io/pause:3.10.1 (amd64): sha256' '$work/load.err'"
"$lab" mirror stop >/dev/null 2>&1

# --- up: every node imports the images, the add-ons run ------------------------------------------
k up --json >"$work/up1.json" 2>"$work/up1.err"
rc=$?
check "up from the bundle with the mirror stopped exits 0" test $rc -eq 0
[[ $rc -eq 0 ]] || { tail -n 40 "$work/up1.err"; exit 1; }
check "no download: every artifact and image came from the bundle" bash -c "! grep -q ' from http' '$work/up1.err'"
check "each node imported the five images into containerd's k8s.io namespace" bash -c "for h in h2 h3 h4; do grep -q \"^\[node\] \$h: imported kbin.test/apiclient:v1 docker.io/library/busybox:1.35.0 registry.k8s.io/coredns/coredns:v1.14.7 registry.k8s.io/metrics-server/metrics-server:v0.8.0 registry.k8s.io/pause:3.10.1 into containerd\" '$work/up1.err' || exit 1; done"
check "... pinned, so the kubelet's image garbage collection keeps them" bash -c "\"$lab\" exec h3 -- ctr -n k8s.io images ls name==registry.k8s.io/pause:3.10.1 | grep -q 'io.cri-containerd.pinned=pinned'"
check "containerd's sandbox image and registry mirror come from the cluster file" bash -c "\"$lab\" exec h2 -- grep -q 'sandbox = \"registry.k8s.io/pause:3.10.1\"' /etc/containerd/config.toml && \"$lab\" exec h2 -- grep -q '\[host.\"https://10.213.0.1:5000\"\]' /etc/containerd/certs.d/registry.k8s.io/hosts.toml && \"$lab\" exec h2 -- containerd config dump | grep -q \"config_path = '/etc/containerd/certs.d'\""
check "up waited for the add-ons: CoreDNS 2/2, metrics-server 1/1 with its API Available" pyj "$work/up1.json" "{a['name']: (a['ready'], a['replicas'], a['api_available']) for a in d['addons']} == {'coredns': (2, 2, None), 'metrics-server': (1, 1, True)}"

kc get pods -n kube-system -l k8s-app=kube-dns -o json >"$work/dns.json" 2>/dev/null
check "CoreDNS Running on two different nodes" pyj "$work/dns.json" "len(d['items'])==2 and all(p['status']['phase']=='Running' for p in d['items']) and len({p['spec']['nodeName'] for p in d['items']})==2"
k status --json >"$work/status.json" 2>/dev/null
check "kbin status shows CoreDNS ready on its nodes" pyj "$work/status.json" "[(a['ready'], a['replicas'], len(a['nodes'])) for a in d['addons'] if a['name']=='coredns']==[(2, 2, 2)]"

# --- a web Deployment behind a ClusterIP and a NodePort Service ------------------------------------
cat >"$work/web.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: httpd
        image: docker.io/library/busybox:1.35.0
        imagePullPolicy: Never
        command: ["sh", "-c", "echo \"hello from $(hostname)\" >/var/www/index.html; echo web serving; exec httpd -f -v -p 8080 -h /var/www"]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
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
rolled_out() { kc rollout status deploy/web --timeout=90s >/dev/null 2>&1; }
check "web: 2 replicas roll out" rolled_out
kc get pods -l app=web -o json >"$work/web.json" 2>/dev/null
check "web's two replicas run on two different nodes" pyj "$work/web.json" "len({p['spec']['nodeName'] for p in d['items'] if p['status']['phase']=='Running'})==2"
third=$(python3 -c "import json; d=json.load(open('$work/web.json')); print(sorted({'h2','h3','h4'}-{p['spec']['nodeName'] for p in d['items']})[0])")
kc run client --image=docker.io/library/busybox:1.35.0 --image-pull-policy=Never --overrides="{\"spec\":{\"nodeName\":\"$third\"}}" --command -- sleep 3600 >/dev/null 2>&1
kc wait --for=condition=Ready pod/client --timeout=60s >/dev/null 2>&1
# GET through busybox wget from the client pod, into a file (its stdout is the kubectl stream),
# bounded by `timeout`: wget -T crashes in Debian's busybox 1.35
get() { kc exec client -- sh -c "timeout 5 wget -q -O /tmp/page '$1' && cat /tmp/page" 2>/dev/null; }
cip=$(kc get svc web -o jsonpath='{.spec.clusterIP}' 2>/dev/null)
answers() { get "$1" | grep -q '^hello from web-'; }
check "from a pod on the third node ($third): the Service by its ClusterIP $cip answers" answers "http://$cip/"
check "... by its name web.default.svc.cluster.local (cluster DNS)" answers http://web.default.svc.cluster.local/
pods_ok() {
  local name ip
  while read -r name ip; do
    [[ $(get "http://$ip:8080/") == "hello from $name" ]] || { echo "pod $name at $ip did not answer" >&2; return 1; }
  done < <(kc get pods -l app=web -o jsonpath='{range .items[*]}{.metadata.name} {.status.podIP}{"\n"}{end}' 2>/dev/null)
}
check "... and each backend pod by its pod IP across nodes (flannel vxlan)" pods_ok
check "the NodePort answers from the operator's side (every node)" bash -c "for n in 12 13 14; do \"$lab\" op -- curl -sS --max-time 3 http://10.213.0.\$n:30080/ | grep -q '^hello from web-' || exit 1; done"
# nftables mode: kube-proxy's Service rules are in its nftables table, none in iptables' chains
# (kube-proxy's KUBE-SERVICES, KUBE-NODEPORTS, KUBE-SVC-*, KUBE-SEP-*; the kubelet's own
# KUBE-FIREWALL or KUBE-KUBELET-CANARY are no Service rules)
nft_rules() { for h in h2 h3 h4; do
  "$lab" exec $h -- nft list table ip kube-proxy >"$work/nft.$h" 2>&1 || { echo "$h: $(head -c 300 "$work/nft.$h")" >&2; return 1; }
  grep -q "$cip" "$work/nft.$h" && grep -q 'nodeport' "$work/nft.$h" || { echo "$h: the kube-proxy table has no rule for $cip or no nodeport chain" >&2; return 1; }
  "$lab" exec $h -- iptables-save >"$work/ipt.$h" 2>&1 || return 1
  ! grep -qE '^:KUBE-(SERVICES|NODEPORTS|SVC-|SEP-|EXT-)' "$work/ipt.$h" || { echo "$h: iptables holds kube-proxy chains: $(grep -E '^:KUBE-' "$work/ipt.$h" | tr '\n' ' ')" >&2; return 1; }
done; }
check "kube-proxy (nftables mode): every node's Service rules in nftables (the ClusterIP, NodePorts), none in iptables' KUBE-* Service chains" nft_rules
logs_ok() { kc logs deploy/web 2>/dev/null | grep -q 'web serving'; }
exec_ok() { [[ $(kc exec client -- hostname 2>/dev/null) == client ]]; }
check "kubectl logs shows the web server's output (apiserver->kubelet, verified TLS)" logs_ok
check "kubectl exec runs in the pod" exec_ok
top_ok() { kc top nodes --no-headers 2>/dev/null | awk '{print $1}' | sort | tr '\n' ' ' | grep -qx 'h2 h3 h4 '; }
check "kubectl top nodes lists every node (metrics-server through the aggregation layer)" retry 60 top_ok
# the apiservers check metrics-server's certificate (kbin's, for metrics-server.kube-system.svc)
# against the kubernetes CA instead of trusting whatever answers on its endpoint
ms_verified() {
  [[ -z $(kc get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.spec.insecureSkipTLSVerify}') ]] &&
    [[ $(kc get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.spec.caBundle}' | base64 -d) == "$(cat "$work/pki/ca.crt")" ]] &&
    [[ $(kc -n kube-system get secret metrics-server-tls -o jsonpath='{.data.tls\.crt}' | base64 -d) == "$(cat "$work/pki/metrics-server.crt")" ]]
}
check "... metrics-server serves kbin's certificate, checked against the CA (caBundle, no insecureSkipTLSVerify)" ms_verified
# the check is real: with another CA in the caBundle the apiservers refuse what metrics-server serves
ca_bundle() { kc patch apiservice v1beta1.metrics.k8s.io --type merge -p "{\"spec\":{\"caBundle\":\"$(base64 -w0 "$1")\"}}" >/dev/null; }
metrics_api() { kc get --raw /apis/metrics.k8s.io/v1beta1/nodes >/dev/null 2>&1; }
# refused: the APIService is Available=False and says why is the certificate (x509 / unknown
# authority), not a timeout or metrics-server being down; held 5 polls in a row (1 s apart)
metrics_refused_x509() {
  local st msg
  st=$(kc get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null)
  msg=$(kc get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Available")].message}' 2>/dev/null)
  [[ $st == False && $msg =~ x509|unknown\ authority|certificate\ signed\ by ]] || return 1
  ! metrics_api
}
held() { local i; for i in 1 2 3 4 5; do "$@" || return 1; sleep 1; done; }
refused_and_held() { retry 60 metrics_refused_x509 && held metrics_refused_x509; }
ca_bundle "$work/pki/front-proxy-ca.crt"
check "... the patch took: the APIService's caBundle is the front-proxy CA" bash -c "[ \"\$(\"$lab\" op -- \"$kubectl\" --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.spec.caBundle}' | base64 -d)\" = \"\$(cat '$work/pki/front-proxy-ca.crt')\" ]"
check "... with another CA in the APIService's caBundle, the apiservers refuse metrics-server: Available=False for an x509 reason, held 5 polls" refused_and_held
ca_bundle "$work/pki/ca.crt"
check "... and with the cluster CA back, the metrics API answers again" retry 90 metrics_api

# --- a backend pod deleted: replaced, and the Service keeps answering ------------------------------
victim=$(kc get pods -l app=web -o jsonpath='{.items[0].metadata.name}' 2>/dev/null)
kc exec client -- sh -c 'ok=0; bad=0; for i in $(seq 40); do if timeout 3 wget -q -O /tmp/p http://web/; then ok=$((ok+1)); else bad=$((bad+1)); fi; sleep 0.25; done; echo "$ok $bad"' >"$work/loop.out" 2>&1 &
loop=$!
sleep 2
kc delete pod "$victim" --wait=false >/dev/null 2>&1
wait $loop
check "backend $victim deleted: the Service answered every one of 40 requests at the first attempt ($(cat "$work/loop.out"))" bash -c "[ \"\$(cat '$work/loop.out')\" = '40 0' ]"
replaced() { rolled_out && ! kc get pod "$victim" >/dev/null 2>&1; }
check "... and the Deployment replaced it (2 ready again)" retry 30 replaced
kc get pods -A -o json >"$work/pods.json" 2>/dev/null
check "kubectl get pods -A: every pod Running, none waiting on an image (no ImagePullBackOff, ErrImagePull)" pyj "$work/pods.json" "all(p['status']['phase']=='Running' for p in d['items']) and not any(c.get('state',{}).get('waiting',{}).get('reason','') in ('ImagePullBackOff','ErrImagePull','ErrImageNeverPull') for p in d['items'] for c in p['status'].get('containerStatuses',[]))"

# --- unchanged re-run: nothing sent, nothing imported ------------------------------------------------
k up --json >"$work/up2.json" 2>"$work/up2.err"
rc=$?
check "unchanged re-run exits 0, sends 0 bytes, (re)starts nothing" bash -c "[ $rc -eq 0 ] && python3 -c \"import json,sys; d=json.load(open('$work/up2.json')); sys.exit(0 if d['bytes_sent']==0 and not d['started'] and not d['restarted'] else 1)\""
check "... imports no image and leaves every manifest and add-on object unchanged" bash -c "! grep -q 'imported' '$work/up2.err' && python3 -c \"import json,sys; d=json.load(open('$work/up2.json')); sys.exit(0 if d['manifests'] and all(o['outcome']=='unchanged' for o in d['manifests']) else 1)\""

# --- a tampered image archive is refused before it reaches any node --------------------------------
# the mirror serves other bytes for the busybox archive than its digest; a cache without the
# good copy (everything else hard-linked from the run's cache) must fetch it
before=$("$lab" exec h2 -- sha256sum /var/lib/kbin/images/busybox.tar | cut -d' ' -f1)
good=$(awk -F'\t' '$1 == "busybox" {print $3}' "$work/images.list")
sum=$(awk -F'\t' '$1 == "busybox" {print $4}' "$work/images.list")
cp "$good" "$work/tampered.tar"
printf 'X' | dd of="$work/tampered.tar" bs=1 seek=5000 conv=notrunc status=none
"$lab" mirror add "$work/tampered.tar" images/busybox-tampered.oci.tar >/dev/null 2>&1
cp -al "$cache" "$work/cache2"
rm -f "$work/cache2/sha256/$sum" "$work/cache2/images/$sum.json"
cp "$work/cluster.toml" "$work/cluster.good.toml"
sed -i "s#images/busybox-1.35.0-linux-amd64.oci.tar#images/busybox-tampered.oci.tar#" "$work/cluster.toml"
"$lab" op -- env KBIN_CACHE_DIR="$work/cache2" NO_COLOR=1 "$kbin" -c "$work/cluster.toml" up >"$work/tamper.out" 2>"$work/tamper.err"
rc=$?
check "a mirror serving a tampered image archive: up fails naming the digest mismatch" bash -c "[ $rc -ne 0 ] && grep -q 'digest mismatch for http://.*/images/busybox-tampered.oci.tar' '$work/tamper.err'"
check "... before any node was touched, and the tampered bytes were not cached" bash -c "! grep -q '^\[\(node\|push\|master\)\]' '$work/tamper.err' && [ \"\$(\"$lab\" exec h2 -- sha256sum /var/lib/kbin/images/busybox.tar | cut -d' ' -f1)\" = '$before' ] && [ ! -e '$work/cache2/sha256/$sum' ]"
cp "$work/cluster.good.toml" "$work/cluster.toml"

# --- node remove (issue 16): drained through the API, its services and pod network gone ------------------
victim_node=$(kc get pods -l app=web -o jsonpath='{.items[0].spec.nodeName}' 2>/dev/null)
k node remove "$victim_node" --json >"$work/nremove.json" 2>"$work/nremove.err"
rc=$?
check "node remove $victim_node (running a web pod) exits 0" test $rc -eq 0
no_pods_left() { # the API binds no pod to the node any more
  local bound
  bound=$(kc get pods -A --field-selector "spec.nodeName=$victim_node" -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} {end}' 2>&1) || { echo "cannot list pods: $bound" >&2; return 1; }
  [[ -z $bound ]] || { echo "pods still bound to $victim_node: $bound" >&2; return 1; }
}
check "... its Node is deleted" bash -c "! \"$lab\" op -- \"$kubectl\" --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' get node '$victim_node' >/dev/null 2>&1"
check "... the API binds no pod to it any more (its web pod was evicted and replaced)" retry 30 no_pods_left
check "... kubelet, kube-proxy, flanneld, containerd stopped and disabled; flannel.1 and cni0 gone" bash -c "for u in kubelet kube-proxy flanneld containerd; do \"$lab\" exec '$victim_node' -- systemctl is-active -q \$u && exit 1; [ \"\$(\"$lab\" exec '$victim_node' -- systemctl is-enabled \$u 2>/dev/null)\" = enabled ] && exit 1; done; ! \"$lab\" exec '$victim_node' -- ip link show flannel.1 >/dev/null 2>&1 && ! \"$lab\" exec '$victim_node' -- ip link show cni0 >/dev/null 2>&1"
check "... the cluster file lost it" bash -c "! grep -q 'name = \"$victim_node\"' '$work/cluster.toml'"
check "... web rolled onto the other nodes and still answers" retry 60 bash -c "$(declare -f kc kc_admin rolled_out); lab='$lab' kubectl='$kubectl' work='$work'; rolled_out && \"$lab\" op -- curl -sS --max-time 3 http://$([[ $victim_node == h2 ]] && echo 10.213.0.13 || echo 10.213.0.12):30080/ | grep -q '^hello from web-'"

# --- Secrets encrypted at rest, an audit trail, and a key rotation (issue 15) ------------------------
etcd_raw() { "$lab" exec h1 -- /opt/etcd/bin/etcdctl --endpoints https://10.213.0.11:2379 --cacert /opt/etcd/ssl/ca.crt --cert /opt/etcd/ssl/server.crt --key /opt/etcd/ssl/server.key get "/registry/secrets/$1" --print-value-only 2>/dev/null; }
kc create secret generic s1 --from-literal=password=kbin-plain-text-canary >/dev/null 2>&1
key1=$(sed -n 's/^ *- name: \(key-.*\)$/\1/p' "$work/pki/encryption-config.yaml" | head -n 1)
stored_under() { [[ $(etcd_raw "$1" | head -c 200 | tr -d '\0') == k8s:enc:aescbc:v1:$2:* ]]; }
s1_encrypted() { stored_under default/s1 "$key1" && ! etcd_raw default/s1 | grep -aq kbin-plain-text-canary; }
check "a Secret created after up is stored encrypted in etcd (k8s:enc:aescbc:v1:$key1), not in plain text" s1_encrypted
check "... and reads back in plain text through the API" bash -c "[ \"\$(\"$lab\" op -- \"$kubectl\" --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' get secret s1 -o jsonpath='{.data.password}' | base64 -d)\" = kbin-plain-text-canary ]"
check "the master's audit log records the create of that Secret, without its data" bash -c "\"$lab\" exec h1 -- grep '\"resource\":\"secrets\"' /opt/kubernetes/logs/kube-apiserver-audit.log | grep '\"verb\":\"create\"' | grep -q '\"name\":\"s1\"' && ! \"$lab\" exec h1 -- grep -q kbin-plain-text-canary /opt/kubernetes/logs/kube-apiserver-audit.log && ! \"$lab\" exec h1 -- grep -q \"\$(printf kbin-plain-text-canary | base64)\" /opt/kubernetes/logs/kube-apiserver-audit.log"
check "the encryption config on the master is private (0600) and is the one in pki/" bash -c "[ \"\$(\"$lab\" exec h1 -- stat -c %a /opt/kubernetes/cfg/encryption-config.yaml)\" = 600 ] && [ \"\$(\"$lab\" exec h1 -- sha256sum /opt/kubernetes/cfg/encryption-config.yaml | cut -d' ' -f1)\" = \"\$(sha256sum '$work/pki/encryption-config.yaml' | cut -d' ' -f1)\" ]"
sleep 1 # the new key's name carries the second it was made in
k pki rotate-encryption-key --json >"$work/rotate.json" 2>"$work/rotate.err"
rc=$?
key2=$(sed -n 's/^ *- name: \(key-.*\)$/\1/p' "$work/pki/encryption-config.yaml" | head -n 1)
check "pki rotate-encryption-key exits 0 through its three stages; one key left, a new one" bash -c "[ $rc -eq 0 ] && [ \"\$(grep -c '^ *- name: key-' '$work/pki/encryption-config.yaml')\" -eq 1 ] && [ '$key2' != '$key1' ] && grep -q '3/3' '$work/rotate.err'"
[[ $rc -eq 0 ]] || tail -n 30 "$work/rotate.err"
all_new() {
  local k list
  list=$(kc get secrets -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{" "}{end}' 2>/dev/null)
  # the list is what it should be: s1 and the bootstrap token's Secret at least
  [[ " $list " == *" default/s1 "* && " $list " == *" kube-system/bootstrap-token-"* ]] || { echo "the Secret list is not the cluster's: '$list'" >&2; return 1; }
  for k in $list; do
    stored_under "$k" "$key2" || { echo "$k is not under $key2" >&2; return 1; }
  done
}
check "after the rotation every Secret in etcd (s1 and the bootstrap token's among them) is stored under the new key" all_new
check "... and s1 still reads back" bash -c "[ \"\$(\"$lab\" op -- \"$kubectl\" --kubeconfig '$work/pki/kubeconfigs/admin.kubeconfig' get secret s1 -o jsonpath='{.data.password}' | base64 -d)\" = kbin-plain-text-canary ]"
suite_end
