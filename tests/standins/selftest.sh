#!/usr/bin/env bash
# Self-test of kbin's stand-ins on loopback, without the lab: a PKI and the host files from the
# real kbin (`pki init`, `render`), a real etcd, and the stand-ins started with exactly the
# command lines and config files kbin renders (paths moved under a temp dir). Runs in a private
# network namespace (unshare -n) holding 127.0.0.1 and the host's address 10.213.0.11, so it
# clashes with nothing else on the machine. Needs root, cargo, curl, openssl, python3.
#
#   tests/standins/selftest.sh            # builds what it needs
#   KBIN=/path/to/kbin STANDIN=/path/to/kbin-standin tests/standins/selftest.sh
#   KEEP=1 ...                            # keep the work dir (logs) after the run
#   KBIN_DOWNLOAD=/path/to/kbin ...       # the kbin for the mirror check (default $KBIN); the
#                                         # check is skipped if that kbin has no `download`
# `A && B || die` is meant: die when either fails.
# shellcheck disable=SC2015
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# the real etcd: the lab's default release, built from etcd's Go modules (cached after the first time)
ETCD_TARBALL=${ETCD_TARBALL:-$("$REPO/tests/lab/lab" etcd-tarball)}
ETCD_BASE=$(basename "$ETCD_TARBALL" .tar.gz) # etcd-v3.6.17-linux-amd64
ETCD_VERSION=${ETCD_BASE#etcd-}
ETCD_VERSION=${ETCD_VERSION%-linux-*}
ADDR=10.213.0.11

say() { printf 'selftest: %s\n' "$*" >&2; }
die() { printf 'selftest: FAIL: %s\n' "$*" >&2; exit 1; }

if [[ "${SELFTEST_IN_NETNS:-}" != 1 ]]; then
    [[ $(id -u) == 0 ]] || die "run as root (it needs a private network namespace)"
    [[ -f "$ETCD_TARBALL" ]] || die "no etcd tarball at $ETCD_TARBALL (tests/lab/lab etcd-tarball makes it; or set ETCD_TARBALL)"
    if [[ -z "${KBIN:-}" ]]; then
        say "building kbin ($REPO)"
        cargo build -q --manifest-path "$REPO/Cargo.toml"
        KBIN=$(cargo metadata -q --format-version 1 --manifest-path "$REPO/Cargo.toml" --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/kbin
    fi
    if [[ -z "${STANDIN:-}" ]]; then
        say "building the stand-ins"
        cargo build -q --release --manifest-path "$HERE/Cargo.toml"
        STANDIN=$HERE/target/release/kbin-standin
    fi
    export KBIN STANDIN ETCD_TARBALL SELFTEST_IN_NETNS=1
    [[ -n ${KBIN_DOWNLOAD:-} ]] && export KBIN_DOWNLOAD
    exec unshare --net -- "$0" "$@"
fi

# ---- inside the private network namespace ------------------------------------------------------
ip link set lo up
ip addr add "$ADDR/32" dev lo

W=$(mktemp -d /tmp/kbin-standins-selftest.XXXXXX)
PIDS=()
declare -A PID
cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ $rc != 0 ]]; then
        say "logs of the failed run:"
        for f in "$W"/log/*.log; do [[ -f $f ]] && { echo "--- $f"; tail -n 25 "$f"; } >&2; done
    fi
    if [[ "${KEEP:-}" == 1 || $rc != 0 ]]; then say "work dir kept: $W"; else rm -rf "$W"; fi
    exit $rc
}
trap cleanup EXIT
mkdir -p "$W/log" "$W/bin"
R=$W/root
PASS=0
ok() { PASS=$((PASS + 1)); say "ok: $*"; }

# ---- PKI and host files from the real kbin ---------------------------------------------------
cat >"$W/cluster.toml" <<EOF
[cluster]
name = "selftest"
kubernetes_version = "v1.34.2"
etcd_version = "$ETCD_VERSION"
flannel_version = "v0.27.4"
service_cidr = "10.0.0.0/24"
pod_cidr = "10.244.0.0/16"
cluster_dns = "10.0.0.2"
cluster_domain = "cluster.local"

[ssh]
user = "root"

[pki]
key_algorithm = "ecdsa-p256"

[[hosts]]
name = "m1"
address = "$ADDR"
roles = ["master", "etcd", "node"]
EOF
"$KBIN" -c "$W/cluster.toml" pki init >"$W/log/kbin.log" 2>&1 || die "kbin pki init failed"
"$KBIN" -c "$W/cluster.toml" render --host m1 --out "$R" >>"$W/log/kbin.log" 2>&1 || die "kbin render failed"
PKI=$W/pki

# Every absolute path kbin renders moves under $R.
relocate() { sed -e "s#/opt/#$R/opt/#g" -e "s#/etc/#$R/etc/#g" -e "s#/var/lib/etcd#$R/var/lib/etcd#g" -e "s#/run/#$R/run/#g"; }
for f in opt/etcd/cfg/etcd.yml opt/kubernetes/cfg/kubelet-config.yaml opt/kubernetes/cfg/kube-proxy-config.yaml; do
    relocate <"$R/$f" >"$R/$f.new" && mv "$R/$f.new" "$R/$f"
done
mkdir -p "$R/run/flannel" "$R/var/lib/etcd" "$R/opt/kubernetes/logs"

tar -xzf "$ETCD_TARBALL" -C "$W/bin" --strip-components=1 "$ETCD_BASE/etcd"
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy flanneld containerd; do
    ln -s "$STANDIN" "$W/bin/$c"
done

# The ExecStart= of a rendered unit as words, relocated, with the binary from $W/bin.
execstart() {
    local unit=$R/usr/lib/systemd/system/$1.service
    local line
    line=$(sed -n '/^ExecStart=/,/[^\\]$/p' "$unit" | sed -e 's/^ExecStart=//' -e 's/\\$//' | tr '\n' ' ' | relocate)
    read -r -a CMD <<<"$line"
    CMD[0]=$W/bin/$(basename "${CMD[0]}")
}
start() { # NAME CMD...: run in the background, log to $W/log/NAME.log
    local name=$1; shift
    "$@" >"$W/log/$name.log" 2>&1 &
    PIDS+=($!)
    PID[$name]=$!
}
wait_for() { # SECONDS DESCRIPTION COMMAND...
    local t=$1 what=$2; shift 2
    for ((i = 0; i < t * 4; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    die "timed out after ${t}s waiting for $what"
}

API=https://$ADDR:6443
CA=$PKI/ca.crt
# curl as a certificate holder; prints the body, the HTTP code is in $W/code
kcurl() { # CERTNAME METHOD PATH [CURL-ARGS...]
    local who=$1 method=$2 path=$3; shift 3
    curl -sS --cacert "$CA" --cert "$PKI/$who.crt" --key "$PKI/$who.key" -X "$method" -o "$W/body" -w '%{http_code}' "$@" "$API$path" >"$W/code" || return 1
    cat "$W/body"
}
code() { cat "$W/code"; }
py() { python3 -c "import json,sys; d=json.load(open('$W/body')); print($1)"; }

# ---- apiserver without etcd: /healthz and /readyz fail ------------------------------------------
execstart kube-apiserver
start kube-apiserver "${CMD[@]}"
wait_for 10 "the apiserver to listen" curl -s --cacert "$CA" -o /dev/null "$API/version"
kcurl super-admin GET /healthz >/dev/null || true
[[ $(code) == 500 ]] || die "healthz without etcd: want 500, got $(code)"
kcurl super-admin GET /readyz >/dev/null || true
[[ $(code) == 500 ]] || die "readyz without etcd: want 500, got $(code)"
ok "apiserver /healthz and /readyz are 500 while etcd is down"

# ---- etcd up: healthy ---------------------------------------------------------------------------
start etcd "$W/bin/etcd" --config-file="$R/opt/etcd/cfg/etcd.yml"
wait_for 30 "apiserver /healthz with etcd" bash -c "[[ \$(curl -s --cacert '$CA' '$API/healthz') == ok ]]"
kcurl super-admin GET /readyz >/dev/null && [[ $(code) == 200 ]] || die "readyz: $(code)"
ok "apiserver /healthz and /readyz are 200 once it reaches etcd over mutual TLS"

kcurl super-admin GET /version >/dev/null && [[ $(code) == 200 ]] && [[ $(py 'd["gitVersion"]') == v1.34.2 ]] || die "/version"
ok "/version answers v1.34.2"

# ---- authentication failures --------------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=evil-ca -keyout "$W/evil-ca.key" -out "$W/evil-ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=kubernetes-super-admin/O=system:masters" -keyout "$W/evil.key" -out "$W/evil.csr" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >"$W/evil.ext"
openssl x509 -req -in "$W/evil.csr" -CA "$W/evil-ca.crt" -CAkey "$W/evil-ca.key" -CAcreateserial -days 1 -extfile "$W/evil.ext" -out "$W/evil.crt" 2>/dev/null
# Upstream asks for client certificates without verifying them in the handshake (Go's
# tls.RequestClientCert); its x509 authenticator rejects one from another CA with 401.
c=$(curl -sS --cacert "$CA" --cert "$W/evil.crt" --key "$W/evil.key" -o "$W/body" -w '%{http_code}' "$API/api/v1/nodes") || die "TLS with a foreign client certificate failed; upstream completes the handshake"
[[ $c == 401 ]] && [[ $(py 'd["reason"]') == Unauthorized ]] || die "a client certificate from another CA (CN=kubernetes-super-admin, O=system:masters): want 401, got $c"
c=$(curl -sS --cacert "$CA" --cert "$W/evil.crt" --key "$W/evil.key" -o /dev/null -w '%{http_code}' "$API/healthz")
[[ $c == 401 ]] || die "foreign certificate on /healthz: want 401 (no fallback to anonymous), got $c"
grep -q "x509: verifying certificate from .* failed" "$W/log/kube-apiserver.log" || die "the apiserver did not log the failed verification"
ok "a client certificate from another CA (claiming system:masters) is 401 Unauthorized, even on /healthz, as upstream"
if curl -sS --cacert "$PKI/etcd/ca.crt" --cert "$W/evil.crt" --key "$W/evil.key" -o /dev/null "https://$ADDR:2379/health" 2>"$W/evil.err"; then
    die "etcd accepted a client certificate from another CA"
fi
ok "etcd (client-cert-auth) refuses it in the TLS handshake ($(head -c 60 "$W/evil.err"))"
c=$(curl -s --cacert "$CA" -H "Authorization: Bearer abcdef.0123456789abcdef" -o "$W/body" -w '%{http_code}' "$API/api/v1/nodes")
[[ $c == 401 ]] && [[ $(py 'd["kind"]+" "+d["reason"]') == "Status Unauthorized" ]] || die "unknown bearer token: want 401 Status, got $c"
ok "an unknown bearer token is 401 with a Status body"
c=$(curl -s --cacert "$CA" -o "$W/body" -w '%{http_code}' "$API/api/v1/nodes")
[[ $c == 403 ]] || die "anonymous list nodes: want 403, got $c"
ok "anonymous requests are 403 for resources"

# ---- kbin's manifests, applied by kbin (server-side apply as the super-admin, system:masters) -------
TOKEN=$(cat "$PKI/bootstrap-token")
TID=${TOKEN%%.*}
TSECRET=${TOKEN#*.}
apply() { # PATH YAML: server-side apply with curl, for the checks of the stand-in's own behaviour
    kcurl super-admin PATCH "$1?fieldManager=kbin&force=true" -H 'Content-Type: application/apply-patch+yaml' --data-binary "$2" >/dev/null
}
crb() { # NAME ROLE KIND SUBJECT
    printf 'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: %s\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: %s\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: %s\n  name: %s\n' "$1" "$2" "$3" "$4"
}
manifests() { # OUT ARGS...: kbin manifests apply --server, JSON report in $W/OUT
    local out=$1; shift
    "$KBIN" -c "$W/cluster.toml" manifests apply --server "$API" --json "$@" >"$W/$out" 2>>"$W/log/kbin.log"
}
outcomes() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(f"{k}={v}" for k, v in sorted(d["counts"].items())), len(d["objects"]))' "$W/$1"; }
# The admin certificate (O=kbin:cluster-admins) has no rights before its binding exists.
kcurl admin GET /api/v1/nodes >/dev/null || true
[[ $(code) == 403 ]] && [[ $(py 'd["reason"]') == Forbidden ]] || die "admin before RBAC: want 403, got $(code)"
ok "the admin certificate is 403 before its ClusterRoleBinding exists (O=kbin:cluster-admins is not system:masters)"
manifests dry0.json --dry-run || die "kbin manifests apply --dry-run failed"
[[ $(outcomes dry0.json) == "would-create=8 8" ]] || die "dry run before anything exists: want 8x would-create, got $(outcomes dry0.json)"
kcurl super-admin GET "/api/v1/namespaces/kube-system/secrets/bootstrap-token-$TID" >/dev/null || true
[[ $(code) == 404 ]] || die "kbin manifests apply --dry-run created the Secret ($(code))"
manifests apply1.json || die "kbin manifests apply failed"
[[ $(outcomes apply1.json) == "created=8 8" ]] || die "first apply: want 8x created, got $(outcomes apply1.json)"
kcurl super-admin GET "/api/v1/namespaces/kube-system/secrets/bootstrap-token-$TID" >/dev/null
rv1=$(py 'd["metadata"]["resourceVersion"]')
[[ $(py 'd["type"]') == bootstrap.kubernetes.io/token ]] && [[ $(py 'd["data"]["token-id"]') == $(printf %s "$TID" | base64) ]] &&
    [[ $(py 'd["data"]["token-secret"]') == $(printf %s "$TSECRET" | base64) ]] || die "the bootstrap token Secret does not hold pki/bootstrap-token"
manifests apply2.json || die "second kbin manifests apply failed"
[[ $(outcomes apply2.json) == "unchanged=8 8" ]] || die "second apply: want 8x unchanged, got $(outcomes apply2.json)"
kcurl super-admin GET "/api/v1/namespaces/kube-system/secrets/bootstrap-token-$TID" >/dev/null
[[ $(py 'd["metadata"]["resourceVersion"]') == "$rv1" ]] || die "applying the same Secret twice changed its resourceVersion"
manifests dry1.json --dry-run && [[ $(outcomes dry1.json) == "exists=8 8" ]] || die "dry run after apply: want 8x exists, got $(outcomes dry1.json)"
kcurl super-admin PATCH /apis/rbac.authorization.k8s.io/v1/clusterroles/kbin:flannel -H 'Content-Type: application/merge-patch+json' \
    --data '{"metadata":{"labels":{"app.kubernetes.io/managed-by":"someone-else"}}}' >/dev/null && [[ $(code) == 200 ]] || die "merge patch of kbin:flannel: $(code)"
manifests apply3.json && [[ $(outcomes apply3.json) == "configured=1 unchanged=7 8" ]] || die "apply after a change: want 1 configured, 7 unchanged, got $(outcomes apply3.json)"
[[ $(python3 -c 'import json,sys; print([o["kind"]+"/"+o["name"] for o in json.load(open(sys.argv[1]))["objects"] if o["outcome"]=="configured"][0])' "$W/apply3.json") == ClusterRole/kbin:flannel ]] || die "the configured object is not ClusterRole/kbin:flannel"
"$KBIN" -c "$W/cluster.toml" manifests render >"$W/manifests.yaml" 2>>"$W/log/kbin.log" || die "kbin manifests render failed"
for f in "$W/manifests.yaml" "$W"/apply?.json "$W"/dry?.json "$W/log/kbin.log"; do
    ! grep -qF -e "$TSECRET" -e "$(printf %s "$TSECRET" | base64)" "$f" || die "the token secret appears in $f"
done
ok "kbin manifests apply --server: 8 objects created, then 8 unchanged (same resourceVersion), 1 configured after someone changed it; --dry-run changes nothing; the token secret is in no output or log"
# stringData (kbin's manifests use data) is merged into data by the stand-in, never stored
apply /api/v1/namespaces/kube-system/secrets/selftest-stringdata '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"selftest-stringdata","namespace":"kube-system"},"stringData":{"k":"v"}}' && [[ $(code) == 201 ]] || die "apply a Secret with stringData: $(code)"
kcurl super-admin GET /api/v1/namespaces/kube-system/secrets/selftest-stringdata >/dev/null
[[ $(py 'd["data"]["k"]') == $(printf v | base64) ]] && [[ $(py '"stringData" in d') == False ]] || die "stringData was not stored as data"
ok "a Secret's stringData is stored as data (base64), as upstream"
CM='{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg","namespace":"kube-flannel"},"data":{"k":"v"}}'
apply /api/v1/namespaces/kube-flannel/configmaps/cfg "$CM" || true
[[ $(code) == 404 ]] && [[ $(py 'd["message"]') == 'namespaces "kube-flannel" not found' ]] || die "apply into a missing namespace: want 404, got $(code)"
apply /api/v1/namespaces/kube-flannel '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"kube-flannel"}}' && [[ $(code) == 201 ]] || die "apply Namespace: $(code)"
apply /api/v1/namespaces/kube-flannel/configmaps/cfg "$CM" && [[ $(code) == 201 ]] || die "apply ConfigMap: $(code)"
kcurl super-admin DELETE /api/v1/namespaces/kube-flannel/configmaps/cfg >/dev/null && [[ $(code) == 200 ]] || die "DELETE ConfigMap: $(code)"
kcurl super-admin GET /api/v1/namespaces/kube-flannel/configmaps/cfg >/dev/null || true
[[ $(code) == 404 ]] || die "GET after DELETE: want 404, got $(code)"
ok "objects can be created only in an existing namespace (404 before the Namespace is applied, 201 after); DELETE works"
apply /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kbin:cluster-admins "$(crb kbin:cluster-admins view Group kbin:cluster-admins)" || true
[[ $(code) == 422 ]] && [[ $(py 'd["reason"]') == Invalid ]] || die "changing a binding's roleRef: want 422 Invalid, got $(code)"
ok "a binding's roleRef cannot change (422 Invalid, as upstream)"
kcurl admin GET /api/v1/nodes >/dev/null && [[ $(code) == 200 ]] || die "admin after RBAC: $(code)"
ok "the admin certificate may list nodes once bound to cluster-admin"
c=$(curl -s --cacert "$CA" -H "Authorization: Bearer $TOKEN" -o "$W/body" -w '%{http_code}' "$API/api/v1/nodes")
[[ $c == 403 ]] || die "bootstrap token listing nodes: want 403, got $c"
ok "the bootstrap token authenticates but may not list nodes (403)"

# ---- node components ------------------------------------------------------------------------------
python3 - "$W/notify.sock" >"$W/notify.txt" 2>&1 <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1])
print(s.recv(4096).decode(), flush=True)
PY
PIDS+=($!)
wait_for 5 "the notify socket" test -S "$W/notify.sock"
execstart containerd
NOTIFY_SOCKET=$W/notify.sock start containerd "${CMD[@]}" --address "$R/run/containerd/containerd.sock"
wait_for 5 "containerd's READY=1" grep -q READY=1 "$W/notify.txt"
[[ -S $R/run/containerd/containerd.sock ]] || die "containerd made no socket"
ok "containerd sends READY=1 to \$NOTIFY_SOCKET and listens on its socket"

execstart kube-controller-manager
start kube-controller-manager "${CMD[@]}" --node-monitor-grace-period=6s
execstart kube-scheduler
start kube-scheduler "${CMD[@]}"
execstart kubelet
KUBELET_CMD=("${CMD[@]}")
KBIN_STANDIN_PERIOD=1 start kubelet "${KUBELET_CMD[@]}"

node_ready() {
    kcurl admin GET /api/v1/nodes/m1 >/dev/null && [[ $(code) == 200 ]] &&
        [[ $(py '[c["status"] for c in d["status"]["conditions"] if c["type"]=="Ready"][0]') == True ]]
}
wait_for 30 "node m1 to be Ready" node_ready
ok "the kubelet bootstrapped with the bootstrap token, got its CSR approved and signed, registered m1, and m1 is Ready"
[[ $(py '[a["address"] for a in d["status"]["addresses"] if a["type"]=="InternalIP"][0]') == "$ADDR" ]] || die "InternalIP is not $ADDR"
ok "m1's InternalIP is the --node-ip $ADDR"

KC=$R/opt/kubernetes/cfg/kubelet.kubeconfig
CUR=$R/opt/kubernetes/ssl/kubelet-client-current.pem
[[ -f $KC && -L $CUR ]] || die "no kubelet.kubeconfig or kubelet-client-current.pem"
grep -q "server: $API" "$KC" || die "kubelet.kubeconfig does not point at $API"
openssl verify -CAfile "$CA" "$CUR" >/dev/null || die "the kubelet client certificate does not verify against the cluster CA"
subj=$(openssl x509 -in "$CUR" -noout -subject -nameopt RFC2253)
[[ $subj == "subject=CN=system:node:m1,O=system:nodes" ]] || die "kubelet cert subject: $subj"
openssl x509 -in "$CUR" -noout -ext extendedKeyUsage | grep -q "TLS Web Client Authentication" || die "kubelet cert lacks clientAuth"
ok "kubelet wrote kubelet-client-current.pem (CN=system:node:m1, O=system:nodes, clientAuth, signed by the cluster CA) and a kubeconfig for $API"

kcurl admin GET /apis/certificates.k8s.io/v1/certificatesigningrequests >/dev/null
[[ $(py 'd["items"][0]["spec"]["username"]') == "system:bootstrap:$TID" ]] || die "the CSR's username is not the bootstrap token's user"
[[ $(py 'd["items"][0]["status"]["conditions"][0]["type"]') == Approved ]] || die "CSR not Approved"
ok "the CSR records spec.username system:bootstrap:$TID and an Approved condition"

hb() { kcurl admin GET /api/v1/nodes/m1 >/dev/null && py '[c["lastHeartbeatTime"] for c in d["status"]["conditions"] if c["type"]=="Ready"][0]'; }
lease() { kcurl admin GET /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/m1 >/dev/null && py 'd["spec"]["renewTime"]'; }
h1=$(hb); l1=$(lease); sleep 2.5; h2=$(hb); l2=$(lease)
[[ $h1 != "$h2" && $l1 != "$l2" ]] || die "no heartbeat: $h1 -> $h2, lease $l1 -> $l2"
ok "heartbeats: Ready lastHeartbeatTime $h1 -> $h2, Lease renewTime $l1 -> $l2"

wait_for 10 "a podCIDR for m1" bash -c "curl -s --cacert '$CA' --cert '$PKI/admin.crt' --key '$PKI/admin.key' '$API/api/v1/nodes/m1' | grep -q '\"podCIDR\":\"10.244.0.0/24\"'"
kcurl admin PATCH /api/v1/nodes/m1 -H 'Content-Type: application/merge-patch+json' --data '{"spec":{"podCIDR":"10.244.9.0/24"}}' >/dev/null || true
[[ $(code) == 422 ]] || die "changing a Node's podCIDR: want 422, got $(code)"
ok "the controller-manager allocated podCIDR 10.244.0.0/24, which cannot change afterwards (422)"

execstart flanneld
NODE_NAME=m1 start flanneld "${CMD[@]}" --subnet-file="$R/run/flannel/subnet.env"
wait_for 10 "flannel's subnet.env" test -f "$R/run/flannel/subnet.env"
grep -qx "FLANNEL_SUBNET=10.244.0.1/24" "$R/run/flannel/subnet.env" && grep -qx "FLANNEL_NETWORK=10.244.0.0/16" "$R/run/flannel/subnet.env" &&
    grep -qx "FLANNEL_IPMASQ=true" "$R/run/flannel/subnet.env" || die "subnet.env: $(cat "$R/run/flannel/subnet.env")"
ok "flanneld wrote subnet.env ($(tr '\n' ' ' <"$R/run/flannel/subnet.env"))"

execstart kube-proxy
KBIN_STANDIN_PERIOD=1 start kube-proxy "${CMD[@]}"
wait_for 10 "kube-proxy healthz" curl -sf http://127.0.0.1:10256/healthz
wait_for 10 "kubelet healthz" curl -sf http://127.0.0.1:10248/healthz
wait_for 10 "controller-manager healthz" curl -sfk https://127.0.0.1:10257/healthz
wait_for 15 "scheduler healthz" curl -sfk https://127.0.0.1:10259/healthz
ok "healthz: kube-proxy :10256, kubelet :10248, controller-manager :10257, scheduler :10259"
kubelet_api() { curl -s --cacert "$CA" -o /dev/null -w '%{http_code}' "$@" "https://$ADDR:10250/healthz"; }
c=$(kubelet_api) && [[ $c == 401 ]] || die "kubelet :10250 without a client certificate: want 401, got $c"
c=$(kubelet_api --cert "$PKI/kube-proxy.crt" --key "$PKI/kube-proxy.key") && [[ $c == 403 ]] || die "kubelet :10250 as system:kube-proxy: want 403, got $c"
c=$(kubelet_api --cert "$PKI/apiserver-kubelet-client.crt" --key "$PKI/apiserver-kubelet-client.key") && [[ $c == 200 ]] || die "kubelet :10250 as the apiserver's kubelet client: want 200, got $c"
ok "kubelet :10250 serves its kbin-issued tlsCertFile; 401 without a certificate, 403 for system:kube-proxy, 200 for kube-apiserver-kubelet-client (system:kubelet-api-admin, by SubjectAccessReview)"

# ---- authorization of nodes ----------------------------------------------------------------------
ncurl() { curl -sS --cacert "$CA" --cert "$CUR" --key "$CUR" -o "$W/body" -w '%{http_code}' "$@"; }
c=$(ncurl -X PATCH -H 'Content-Type: application/merge-patch+json' --data '{"metadata":{"labels":{"x":"y"}}}' "$API/api/v1/nodes/m2/status")
[[ $c == 403 ]] || die "node m1 patching m2: want 403, got $c"
c=$(ncurl "$API/api/v1/namespaces/kube-system/secrets/bootstrap-token-$TID")
[[ $c == 403 ]] || die "node m1 reading a secret: want 403, got $c"
c=$(ncurl "$API/api/v1/nodes/nope")
[[ $c == 404 ]] && [[ $(py 'd["reason"]') == NotFound ]] || die "GET missing node: want 404, got $c"
ok "a node may not write another Node (403) nor read Secrets (403); a missing Node is 404 NotFound"
kcurl admin POST /api/v1/nodes -H 'Content-Type: application/json' --data '{"apiVersion":"v1","kind":"Node","metadata":{"name":"m1"}}' >/dev/null || true
c=$(code)
[[ $c == 409 ]] && [[ $(py 'd["reason"]') == AlreadyExists ]] || die "POST existing node: want 409, got $c"
kcurl admin GET /api/v1/nodes/m1 >/dev/null
kcurl admin PUT /api/v1/nodes/m1 -H 'Content-Type: application/json' --data '{"apiVersion":"v1","kind":"Node","metadata":{"name":"m1","resourceVersion":"1"}}' >/dev/null || true
c=$(code)
[[ $c == 409 ]] && [[ $(py 'd["reason"]') == Conflict ]] || die "PUT with a stale resourceVersion: want 409, got $c"
ok "409 AlreadyExists on a second POST, 409 Conflict on a stale resourceVersion"

# ---- two apiservers share state through etcd -----------------------------------------------------
execstart kube-apiserver
start kube-apiserver-2 "${CMD[@]}" --bind-address=127.0.0.1 --secure-port=6444 --token-auth-file="$PKI/token.csv"
wait_for 10 "the second apiserver" curl -sf --cacert "$CA" https://127.0.0.1:6444/healthz
c=$(curl -s --cacert "$CA" --cert "$PKI/admin.crt" --key "$PKI/admin.key" -o "$W/body" -w '%{http_code}' https://127.0.0.1:6444/api/v1/nodes/m1)
[[ $c == 200 && $(py 'd["metadata"]["name"]') == m1 ]] || die "the second apiserver does not see m1 ($c)"
ok "a second apiserver on the same etcd serves the same Node"
# kbin's token.csv holds the bootstrap token's value: the token file wins where it is given.
STATIC=$(cut -d, -f1 "$PKI/token.csv")
whoami() { curl -s --cacert "$CA" -H "Authorization: Bearer $STATIC" -H 'Content-Type: application/json' -X POST \
    --data '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' -o "$W/body" "$1/apis/authentication.k8s.io/v1/selfsubjectreviews" && py 'd["status"]["userInfo"]["username"]'; }
[[ $(whoami https://127.0.0.1:6444) == kubelet-bootstrap ]] || die "--token-auth-file user: $(cat "$W/body")"
[[ $(whoami "$API") == "system:bootstrap:$TID" ]] || die "bootstrap token user: $(cat "$W/body")"
ok "--token-auth-file users (kubelet-bootstrap from kbin's token.csv) and bootstrap token users, as SelfSubjectReview shows"

# ---- node lifecycle and kubelet restart ---------------------------------------------------------
kill "${PID[kubelet]}"
wait_for 20 "m1 to turn Ready=Unknown" bash -c "curl -s --cacert '$CA' --cert '$PKI/admin.crt' --key '$PKI/admin.key' '$API/api/v1/nodes/m1' | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if [c[\"status\"] for c in d[\"status\"][\"conditions\"] if c[\"type\"]==\"Ready\"][0]==\"Unknown\" else 1)'"
! curl -sf http://127.0.0.1:10248/healthz >/dev/null 2>&1 || die "kubelet healthz still answers after it stopped"
ok "with the kubelet stopped, the controller-manager marks m1 Ready=Unknown after the grace period"
KBIN_STANDIN_PERIOD=1 start kubelet "${KUBELET_CMD[@]}"
wait_for 15 "m1 to be Ready again" node_ready
grep -q "TLS bootstrapping" "$W/log/kubelet.log" && die "the restarted kubelet bootstrapped again instead of using its kubeconfig"
ok "a restarted kubelet uses its kubeconfig (no new bootstrap) and m1 is Ready again"
kill "${PID[kubelet]}"
rm -f "$CUR"
KBIN_STANDIN_PERIOD=1 start kubelet "${KUBELET_CMD[@]}"
wait_for 20 "a new client certificate" test -L "$CUR"
grep -q "TLS bootstrapping" "$W/log/kubelet.log" || die "the kubelet did not bootstrap again without its client certificate"
wait_for 15 "m1 to be Ready after the new bootstrap" node_ready
ok "a kubelet whose client certificate is gone bootstraps again (upstream does the same)"
kill "${PID[kubelet]}"
serial1=$(openssl x509 -in "$CUR" -noout -serial)
KBIN_STANDIN_PERIOD=1 KBIN_STANDIN_ROTATE_AFTER=2 start kubelet "${KUBELET_CMD[@]}"
wait_for 30 "the kubelet to rotate its client certificate" grep -q "rotated the client certificate" "$W/log/kubelet.log"
[[ $(openssl x509 -in "$CUR" -noout -serial) != "$serial1" ]] || die "kubelet-client-current.pem did not change"
kcurl admin GET /apis/certificates.k8s.io/v1/certificatesigningrequests >/dev/null
[[ $(py '[c["status"]["conditions"][0]["type"] for c in d["items"] if c["spec"]["username"]=="system:node:m1"][0]') == Approved ]] || die "no approved renewal CSR from system:node:m1"
wait_for 15 "m1 to be Ready with the rotated certificate" node_ready
ok "rotateCertificates: the kubelet renews its client certificate with a CSR of its own, approved as selfnodeclient"

# ---- etcd down again: healthz fails -----------------------------------------------------------
kill "${PID[etcd]}"
wait_for 20 "healthz to fail without etcd" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' --cacert '$CA' '$API/healthz') == 500 ]]"
ok "apiserver /healthz is 500 again once etcd is stopped"

# ---- packaging: kbin downloads the stand-ins from a mirror laid out by build.sh ------------------
KBIN_DOWNLOAD=${KBIN_DOWNLOAD:-$KBIN}
if "$KBIN_DOWNLOAD" download --help >/dev/null 2>&1; then
    "$HERE/build.sh" --out "$W/mirror" --etcd-tarball "$ETCD_TARBALL" >"$W/log/build.log" 2>&1 || die "build.sh failed"
    (cd "$W/mirror" && exec python3 -m http.server 8080 --bind 127.0.0.1) >"$W/log/mirror.log" 2>&1 &
    PIDS+=($!)
    wait_for 10 "the mirror" curl -sf -o /dev/null http://127.0.0.1:8080/SHA256SUMS
    mkdir -p "$W/dl"
    cp "$W/cluster.toml" "$W/dl/cluster.toml"
    printf '\n[apiserver]\nport = 6443\n' >>"$W/dl/cluster.toml"
    cp "$W/mirror/kbin.lock" "$W/dl/kbin.lock"
    KBIN_CACHE_DIR=$W/dl/cache "$KBIN_DOWNLOAD" -c "$W/dl/cluster.toml" download -q --mirror http://127.0.0.1:8080 --extract "$W/dl/x" >"$W/dl/out.tsv" 2>"$W/log/download.log" ||
        die "kbin download from the stand-in mirror failed"
    [[ $(wc -l <"$W/dl/out.tsv") == "$(wc -l <"$W/mirror/SHA256SUMS")" ]] || die "kbin downloaded $(wc -l <"$W/dl/out.tsv") artifacts, the mirror has $(wc -l <"$W/mirror/SHA256SUMS")"
    [[ $("$W/dl/x/kubelet/kubelet" --version) == "Kubernetes v1.34.2" ]] || die "the downloaded kubelet does not say it is v1.34.2"
    [[ -x $W/dl/x/containerd/containerd && -x $W/dl/x/cni-plugins/bridge ]] || die "tarball members missing after kbin's extraction"
    for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
        [[ $("$W/dl/x/$c/$c" --version) == "Kubernetes v1.34.2" ]] || die "$c did not come out of the kubernetes-server tarball as a v1.34.2 $c"
    done
    [[ $(grep -c $'^kubernetes-server\t' "$W/dl/out.tsv") == 1 ]] || die "the server tarball was not downloaded exactly once: $(cat "$W/dl/out.tsv")"
    ok "kbin download --mirror fetched and verified all $(wc -l <"$W/dl/out.tsv") artifacts of build.sh against its kbin.lock"
else
    say "skipped: this kbin has no download command (the artifacts branch adds it)"
fi

say "PASS: $PASS checks"
