#!/usr/bin/env bash
# The same certificate set `kbin pki init` issues for bench/gen-cluster.sh N, made the way the
# cfssl-based binary-install tutorials do: one CSR JSON per certificate, `cfssl gencert -initca` for
# each CA, `cfssl gencert ... | cfssljson -bare` for each leaf, one after another.
# usage: bench/cfssl-pki.sh N ALGO OUTDIR    (ALGO: ecdsa-p256 | rsa-2048)
set -euo pipefail
n=${1:?extra workers} algo=${2:?algorithm} out=${3:?output dir}
command -v cfssl >/dev/null || { echo "cfssl not installed: apt-get install golang-cfssl" >&2; exit 1; }
case $algo in
  ecdsa-p256) key='{"algo":"ecdsa","size":256}' ;;
  rsa-2048) key='{"algo":"rsa","size":2048}' ;;
  *) echo "unknown algorithm $algo" >&2; exit 1 ;;
esac
mkdir -p "$out" && cd "$out"
cat > ca-config.json <<'J'
{"signing":{"default":{"expiry":"8760h"},"profiles":{
 "server":{"expiry":"8760h","usages":["signing","key encipherment","server auth"]},
 "client":{"expiry":"8760h","usages":["signing","key encipherment","client auth"]},
 "peer":{"expiry":"8760h","usages":["signing","key encipherment","server auth","client auth"]}}}}
J
csr() { # name cn o hosts-json
  printf '{"CN":"%s","key":%s,"names":[{"O":"%s"}],"hosts":%s}\n' "$2" "$key" "$3" "$4" > "$1-csr.json"
}
ca() { csr "$1" "$2" "" '[]'; cfssl gencert -initca "$1-csr.json" 2>/dev/null | cfssljson -bare "$1"; }
leaf() { # name ca profile cn o hosts
  csr "$1" "$4" "$5" "$6"
  cfssl gencert -ca="$2.pem" -ca-key="$2-key.pem" -config=ca-config.json -profile="$3" "$1-csr.json" 2>/dev/null | cfssljson -bare "$1"
}
ca ca kubernetes-ca; ca etcd-ca etcd-ca; ca front-proxy-ca kubernetes-front-proxy-ca
masters=(cp1:172.16.10.11 cp2:172.16.10.12 cp3:172.16.10.13)
workers=(worker1:172.16.20.11 worker2:172.16.20.12 worker3:172.16.20.13)
for i in $(seq 1 "$n"); do workers+=("extra$i:172.16.$((30 + i / 200)).$((10 + i % 200))"); done
for m in "${masters[@]}"; do
  h=${m%%:*} a=${m#*:}
  leaf "apiserver-$h" ca server kube-apiserver "" "[\"$h\",\"$a\",\"k8s-api.internal.example.com\",\"127.0.0.1\",\"10.96.0.1\",\"kubernetes\",\"kubernetes.default\",\"kubernetes.default.svc\",\"kubernetes.default.svc.cluster.local\",\"k8s.example.com\"]"
  leaf "etcd-server-$h" etcd-ca peer "$h" "" "[\"$h\",\"$a\",\"localhost\",\"127.0.0.1\",\"::1\"]"
  leaf "etcd-peer-$h" etcd-ca peer "$h" "" "[\"$h\",\"$a\",\"localhost\",\"127.0.0.1\",\"::1\"]"
done
for w in "${workers[@]}"; do
  h=${w%%:*} a=${w#*:}
  leaf "kubelet-$h" ca server "system:node:$h" system:nodes "[\"$h\",\"$a\"]"
done
leaf admin ca client kubernetes-admin kbin:cluster-admins '[]'
leaf super-admin ca client kubernetes-super-admin system:masters '[]'
leaf controller-manager ca client system:kube-controller-manager "" '[]'
leaf scheduler ca client system:kube-scheduler "" '[]'
leaf kube-proxy ca client system:kube-proxy "" '[]'
leaf flannel ca client flannel "" '[]'
leaf apiserver-kubelet-client ca client kube-apiserver-kubelet-client "" '[]'
leaf apiserver-etcd-client etcd-ca client kube-apiserver-etcd-client "" '[]'
leaf etcd-healthcheck-client etcd-ca client kube-etcd-healthcheck-client "" '[]'
leaf front-proxy-client front-proxy-ca client front-proxy-client "" '[]'
ca sa service-accounts   # the tutorials' service-account key pair (cfssl has no bare keygen)
ls ./*.pem | grep -vc -- -key.pem
