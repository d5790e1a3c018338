#!/usr/bin/env bash
# The stand-ins under real systemd, in the lab: three hosts (h1, h2: master + etcd + node; h3:
# etcd + node), the files the real kbin renders for each, the stand-ins fetched *inside each host*
# from the lab mirror where build.sh --publish put them, every unit started with systemctl, the
# manifests applied from the operator namespace, and every Node Ready with its own pod CIDR.
# Then: the controller-manager leader is stopped and the other one takes over; etcd on h1 is
# stopped and h1's apiserver carries on with the other members (Leases keep being renewed).
# Finally every unit is stopped and must end with Result=success (a clean SIGTERM exit).
#
# This is not kbin's end-to-end test (kbin will install and start all this itself); it shows the
# stand-ins behave as systemd services on lab hosts. Uses its own lab directory
# (KBIN_LAB_DIR, default /tmp/kbin-lab-standins), so a developer's lab is left alone.
#
#   tests/standins/lab-smoke.sh         # root; KEEP=1 leaves the lab up
# shellcheck disable=SC2015 # `A && B || die` is meant: die when either fails
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export KBIN_LAB_DIR=${KBIN_LAB_DIR:-/tmp/kbin-lab-standins}
LAB=$REPO/tests/lab/lab
# the real etcd: the lab's default release, built from etcd's Go modules (cached after the first time)
ETCD_TARBALL=${ETCD_TARBALL:-$("$LAB" etcd-tarball)}
ETCD_BASE=$(basename "$ETCD_TARBALL" .tar.gz) # etcd-v3.6.17-linux-amd64
ETCD_VERSION=${ETCD_BASE#etcd-}
ETCD_VERSION=${ETCD_VERSION%-linux-*}

say() { printf 'lab-smoke: %s\n' "$*" >&2; }
die() { printf 'lab-smoke: FAIL: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root"
[[ -f $ETCD_TARBALL ]] || die "no etcd tarball at $ETCD_TARBALL (tests/lab/lab etcd-tarball makes it)"
if [[ -z "${KBIN:-}" ]]; then
    cargo build -q --manifest-path "$REPO/Cargo.toml"
    KBIN=$(cargo metadata -q --format-version 1 --manifest-path "$REPO/Cargo.toml" --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/kbin
fi

W=$(mktemp -d /tmp/kbin-standins-lab.XXXXXX)
cleanup() {
    local rc=$?
    if [[ $rc != 0 ]]; then
        for h in h1 h2; do
            "$LAB" exec "$h" -- journalctl --no-pager -n 40 -u 'kube*' -u etcd -u containerd -u flanneld >&2 2>/dev/null || true
        done
    fi
    if [[ "${KEEP:-}" == 1 ]]; then say "lab kept at $KBIN_LAB_DIR, work dir $W"; else "$LAB" down >/dev/null 2>&1 || true; rm -rf "$W"; fi
    exit $rc
}
trap cleanup EXIT
"$LAB" down >/dev/null 2>&1 || true

"$LAB" up 3 >/dev/null 2>&1 || die "lab up failed"
say "building and publishing the stand-ins"
"$HERE/build.sh" --out "$W/standins" --etcd-tarball "$ETCD_TARBALL" --publish >"$W/build.out" 2>"$W/build.err" || { cat "$W/build.err" >&2; die "build.sh --publish failed"; }
MIRROR=$("$LAB" mirror url)

A1=$("$LAB" addr h1)
A2=$("$LAB" addr h2)
A3=$("$LAB" addr h3)
HOSTS=(h1 h2 h3)
MASTERS=(h1 h2)
cat >"$W/cluster.toml" <<EOF
[cluster]
name = "labsmoke"
kubernetes_version = "v1.34.2"
etcd_version = "$ETCD_VERSION"
flannel_version = "v0.27.4"
service_cidr = "10.0.0.0/24"
pod_cidr = "10.244.0.0/16"
cluster_dns = "10.0.0.2"
cluster_domain = "cluster.local"

[apiserver]
port = 6443

[ssh]
user = "root"

[[hosts]]
name = "h1"
address = "$A1"
roles = ["master", "etcd", "node"]

[[hosts]]
name = "h2"
address = "$A2"
roles = ["master", "etcd", "node"]

[[hosts]]
name = "h3"
address = "$A3"
roles = ["etcd", "node"]
EOF
"$KBIN" -c "$W/cluster.toml" pki init >"$W/kbin.log" 2>&1 || die "kbin pki init"
for h in "${HOSTS[@]}"; do
    "$KBIN" -c "$W/cluster.toml" render --host "$h" --out "$W/render/$h" >>"$W/kbin.log" 2>&1 || die "kbin render $h"
    tar -C "$W/render/$h" -cf - . | "$LAB" exec "$h" -- tar -C / -xf - || die "copy files to $h"
done

# The binaries come from the mirror, fetched by each host itself.
fetch() { # HOST MIRROR-PATH DEST
    "$LAB" exec "$1" -- bash -c "mkdir -p \"\$(dirname '$3')\" && curl -fsS -o '$3' '$MIRROR/$2' && chmod 755 '$3'" || die "$1: fetch $2"
}
untar() { # HOST MIRROR-PATH DIR [TAR-ARGS...]
    local h=$1 p=$2 d=$3; shift 3
    "$LAB" exec "$h" -- bash -c "mkdir -p '$d' && curl -fsS '$MIRROR/$p' | tar -xz -C '$d' $*" || die "$h: fetch $p"
}
P=/opt/kubernetes/bin
SERVER=kubernetes-server/v1.34.2/kubernetes-server-linux-amd64.tar.gz
for h in "${MASTERS[@]}"; do
    untar "$h" "$SERVER" "$P" --strip-components=3 \
        kubernetes/server/bin/kube-apiserver kubernetes/server/bin/kube-controller-manager kubernetes/server/bin/kube-scheduler
done
for h in "${HOSTS[@]}"; do
    untar "$h" "etcd/$ETCD_VERSION/$ETCD_BASE.tar.gz" /opt/etcd/bin --strip-components=1
done
for h in "${HOSTS[@]}"; do
    fetch "$h" kubelet/v1.34.2/kubelet "$P/kubelet"
    untar "$h" "$SERVER" "$P" --strip-components=3 kubernetes/server/bin/kube-proxy
    fetch "$h" flanneld/v0.27.4/flanneld-amd64 "$P/flanneld"
    fetch "$h" runc/v1.3.3/runc.amd64 /usr/local/sbin/runc
    untar "$h" containerd/v2.1.5/containerd-2.1.5-linux-amd64.tar.gz /usr/local
    "$LAB" exec "$h" -- bash -c "mkdir -p /opt/kubernetes/logs && [[ \$($P/kubelet --version) == 'Kubernetes v1.34.2' ]]" || die "$h: kubelet --version"
done
say "files and binaries in place on ${HOSTS[*]} (from $MIRROR)"

# etcd members start together (each waits for a quorum before it reports ready)
for h in "${HOSTS[@]}"; do
    "$LAB" exec "$h" -- systemctl daemon-reload
    "$LAB" exec "$h" -- systemctl start --no-block etcd
done
for h in "${MASTERS[@]}"; do
    "$LAB" exec "$h" -- systemctl start kube-apiserver kube-controller-manager kube-scheduler || die "$h: start control plane"
done

PKI=$W/pki
API=https://$A1:6443
kc() { "$LAB" op -- curl -sS --cacert "$PKI/ca.crt" --cert "$PKI/$1.crt" --key "$PKI/$1.key" "${@:2}"; }
for _ in $(seq 60); do [[ $(kc super-admin -s "$API/healthz" 2>/dev/null) == ok ]] && break; sleep 0.5; done
[[ $(kc super-admin -s "$API/healthz") == ok ]] || die "apiserver /healthz on h1"
say "control plane up on ${MASTERS[*]}"

TOKEN=$(cat "$PKI/bootstrap-token")
TID=${TOKEN%%.*}
apply() { # PATH JSON
    local c
    c=$(kc super-admin -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/apply-patch+yaml' --data-binary "$2" "$API$1?fieldManager=kbin")
    [[ $c == 200 || $c == 201 ]] || die "apply $1: HTTP $c"
}
apply "/api/v1/namespaces/kube-system/secrets/bootstrap-token-$TID" "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"bootstrap-token-$TID\",\"namespace\":\"kube-system\"},\"type\":\"bootstrap.kubernetes.io/token\",\"stringData\":{\"token-id\":\"$TID\",\"token-secret\":\"${TOKEN#*.}\",\"usage-bootstrap-authentication\":\"true\"}}"
apply /apis/rbac.authorization.k8s.io/v1/clusterroles/kbin:flannel '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"kbin:flannel"},"rules":[{"apiGroups":[""],"resources":["nodes"],"verbs":["get","list","watch"]},{"apiGroups":[""],"resources":["nodes/status"],"verbs":["patch"]}]}'
for b in "kbin:kubelet-bootstrap system:node-bootstrapper Group system:bootstrappers" \
    "kbin:node-autoapprove-bootstrap system:certificates.k8s.io:certificatesigningrequests:nodeclient Group system:bootstrappers" \
    "kbin:cluster-admins cluster-admin Group kbin:cluster-admins" \
    "kbin:flannel kbin:flannel User flannel"; do
    read -r n r k s <<<"$b"
    apply "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/$n" "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRoleBinding\",\"metadata\":{\"name\":\"$n\"},\"roleRef\":{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"ClusterRole\",\"name\":\"$r\"},\"subjects\":[{\"kind\":\"$k\",\"name\":\"$s\"}]}"
done
say "bootstrap token Secret and RBAC applied"

NODE_UNITS=(containerd kubelet kube-proxy flanneld)
for h in "${HOSTS[@]}"; do
    "$LAB" exec "$h" -- systemctl start "${NODE_UNITS[@]}" || die "$h: start node units"
done

nodes_ready() {
    kc admin -s "$API/api/v1/nodes" | python3 -c '
import json, sys
d = json.load(sys.stdin)
ready = {n["metadata"]["name"]: (n["spec"].get("podCIDR"), [c["status"] for c in n["status"].get("conditions", []) if c["type"] == "Ready"]) for n in d["items"]}
ok = set(ready) == {"h1", "h2", "h3"} and all(v[1] == ["True"] and v[0] for v in ready.values()) and len({v[0] for v in ready.values()}) == 3
print(ready)
sys.exit(0 if ok else 1)'
}
for _ in $(seq 60); do nodes_ready >"$W/nodes" 2>&1 && break; sleep 0.5; done
nodes_ready >"$W/nodes" 2>&1 || die "nodes not Ready with distinct pod CIDRs: $(cat "$W/nodes")"
say "ok: every Node Ready with a distinct pod CIDR: $(cat "$W/nodes")"

for h in "${HOSTS[@]}"; do
    for _ in $(seq 20); do "$LAB" exec "$h" -- test -s /run/flannel/subnet.env && break; sleep 0.5; done
    "$LAB" exec "$h" -- grep -q '^FLANNEL_SUBNET=10.244.' /run/flannel/subnet.env || die "$h: no subnet.env"
    "$LAB" exec "$h" -- curl -sf http://127.0.0.1:10248/healthz >/dev/null || die "$h: kubelet healthz"
    "$LAB" exec "$h" -- curl -sf http://127.0.0.1:10256/healthz >/dev/null || die "$h: kube-proxy healthz"
done
for h in "${MASTERS[@]}"; do
    "$LAB" exec "$h" -- curl -sfk https://127.0.0.1:10257/healthz >/dev/null || die "$h: controller-manager healthz"
    "$LAB" exec "$h" -- curl -sfk https://127.0.0.1:10259/healthz >/dev/null || die "$h: scheduler healthz"
done
say "ok: subnet.env on every host; healthz of kubelet, kube-proxy, controller-manager and scheduler"

# ---- controller-manager leader election -------------------------------------------------------
holder() { kc admin -s "$API/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager" | python3 -c 'import json,sys; print(json.load(sys.stdin)["spec"]["holderIdentity"].split("_")[0])'; }
leader=$(holder)
[[ $leader == h1 || $leader == h2 ]] || die "controller-manager leader: $leader"
other=h1
[[ $leader == h1 ]] && other=h2
"$LAB" exec "$leader" -- systemctl stop kube-controller-manager
for _ in $(seq 60); do [[ $(holder) == "$other" ]] && break; sleep 0.5; done
[[ $(holder) == "$other" ]] || die "the controller-manager on $other did not take over from $leader"
say "ok: controller-manager leader $leader stopped, $other took over the Lease"
"$LAB" exec "$leader" -- systemctl start kube-controller-manager

# ---- etcd member down: the apiserver uses the others ------------------------------------------
renew() { kc admin -s "$API/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["spec"]["renewTime"])'; }
"$LAB" exec h1 -- systemctl stop etcd
r1=$(renew h3)
sleep 12
[[ $(kc admin -s "$API/readyz") == ok ]] || die "h1's apiserver is not ready with its local etcd member stopped"
[[ $(renew h3) != "$r1" ]] || die "h3's Lease was not renewed through h1's apiserver with h1's etcd stopped"
nodes_ready >"$W/nodes" 2>&1 || die "nodes not Ready with h1's etcd stopped: $(cat "$W/nodes")"
say "ok: with etcd on h1 stopped, h1's apiserver is ready through the other members and every Node stays Ready"
"$LAB" exec h1 -- systemctl start etcd

for h in "${HOSTS[@]}"; do
    units=("${NODE_UNITS[@]}" etcd)
    [[ $h != h3 ]] && units+=(kube-scheduler kube-controller-manager kube-apiserver)
    "$LAB" exec "$h" -- systemctl stop "${units[@]}"
    for u in "${units[@]}"; do
        r=$("$LAB" exec "$h" -- systemctl show -p Result --value "$u")
        [[ $r == success ]] || die "$h: $u stopped with Result=$r"
    done
done
say "ok: every unit stops cleanly on SIGTERM (Result=success)"
say "PASS"
