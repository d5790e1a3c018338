#!/usr/bin/env bash
# Builds kbin's stand-ins and lays them out as the upstream release artifacts of kbin's catalog
# (src/artifacts/catalog.toml), so that kbin downloads them from a mirror exactly like the real
# ones: single binaries where upstream ships binaries, tarballs with upstream's member paths
# where upstream ships tarballs.
#
#   tests/standins/build.sh [--out DIR] [--kubernetes V] [--flannel V] [--etcd-tarball FILE] [--publish]
#
# Layout (kbin's default mirror layout, `<mirror>/<component>/<version>/<file>`, so
# `kbin download --mirror URL` or `[artifacts] mirror = "URL"` finds every component):
#   DIR/kubernetes-server/v1.34.2/kubernetes-server-linux-amd64.tar.gz
#                  (kubernetes/server/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,
#                   kube-proxy}: kbin takes those four out of the pinned server tarball)
#   DIR/kubelet/v1.34.2/kubelet                                    (dl.k8s.io: a single binary)
#   DIR/flanneld/v0.27.4/flanneld-amd64                            (GitHub: a single binary)
#   DIR/containerd/v2.1.5/containerd-2.1.5-linux-amd64.tar.gz      (bin/containerd, bin/ctr, ...)
#   ...
# Each copy of the one binary ends with a trailer `#kbin-standin component=C version=V`, which
# tells it what to be whatever it is installed as, and gives every artifact its own digest.
# Archives are reproducible (sorted, mtime 0, owner 0, gzip -n).
#
# Outputs, besides the files:
#   stdout            one line per artifact: component, version, mirror path, sha256 (tab-separated)
#   DIR/kbin.lock     [[artifact]] entries for every artifact (append to a cluster's kbin.lock)
#   DIR/pin.sh        `"$KBIN" pin COMPONENT VERSION SHA256` lines (run with KBIN=path/to/kbin,
#                     and -c cluster.toml in KBIN_ARGS)
#   DIR/SHA256SUMS    "sha256  path" for every file
# With --publish, every file is also given to the lab mirror (`tests/lab/lab mirror add FILE PATH`,
# which prints "SHA256  URL"; LAB=path overrides the lab script, KBIN_LAB_DIR picks the lab).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$HERE/out
K8S=v1.34.2
FLANNEL=v0.27.4
FLANNEL_CNI=v1.8.0-flannel1
CNI=v1.8.0
CONTAINERD=v2.1.5
RUNC=v1.3.3
CRICTL=v1.34.0
ETCD_TARBALL=""
PUBLISH=0
ARCH=amd64

usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        --kubernetes) K8S=$2; shift 2 ;;
        --flannel) FLANNEL=$2; shift 2 ;;
        --etcd-tarball) ETCD_TARBALL=$2; shift 2 ;;
        --publish) PUBLISH=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "build.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

echo "build.sh: building the stand-ins (release)" >&2
cargo build -q --release --manifest-path "$HERE/Cargo.toml"
BIN=$HERE/target/release/kbin-standin

rm -rf "$OUT"
mkdir -p "$OUT"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
: >"$OUT/kbin.lock"
: >"$OUT/SHA256SUMS"
printf '# pins for the kbin stand-ins; run with KBIN=path/to/kbin and KBIN_ARGS="-c cluster.toml"\n' >"$OUT/pin.sh"

# A copy of the binary that knows it is COMPONENT at VERSION.
standin() { # DEST COMPONENT VERSION
    mkdir -p "$(dirname "$1")"
    cp "$BIN" "$1"
    printf '\n#kbin-standin component=%s version=%s\n' "$2" "$3" >>"$1"
    chmod 755 "$1"
}
# A reproducible .tar.gz of DIR's contents, members named as given.
tarball() { # OUT DIR MEMBERS...
    local out=$1 dir=$2; shift 2
    mkdir -p "$(dirname "$out")"
    tar -C "$dir" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - "$@" | gzip -n -9 >"$out"
}
record() { # COMPONENT VERSION FILE(relative to OUT)
    local sum
    sum=$(sha256sum "$OUT/$3" | cut -d' ' -f1)
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$sum"
    printf '%s  %s\n' "$sum" "$3" >>"$OUT/SHA256SUMS"
    printf '[[artifact]]\ncomponent = "%s"\nversion = "%s"\narch = "%s"\nsha256 = "%s"\nsource = "kbin stand-in (tests/standins/build.sh)"\n\n' "$1" "$2" "$ARCH" "$sum" >>"$OUT/kbin.lock"
    # shellcheck disable=SC2016 # $KBIN is for pin.sh to expand
    printf '"$KBIN" $KBIN_ARGS pin %s %s %s\n' "$1" "$2" "$sum" >>"$OUT/pin.sh"
}

# the server tarball: kubernetes-server-linux-<arch>.tar.gz with kubernetes/server/bin/<binary>
# (upstream's also holds kubectl, kubelet, kubeadm and image tarballs, which kbin does not take)
mkdir -p "$STAGE/server/kubernetes/server/bin"
for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
    standin "$STAGE/server/kubernetes/server/bin/$c" "$c" "$K8S"
done
f=kubernetes-server/$K8S/kubernetes-server-linux-$ARCH.tar.gz
tarball "$OUT/$f" "$STAGE/server" kubernetes/server/bin/kube-apiserver kubernetes/server/bin/kube-controller-manager \
    kubernetes/server/bin/kube-scheduler kubernetes/server/bin/kube-proxy
record kubernetes-server "$K8S" "$f"

# dl.k8s.io single binaries
for c in kubectl kubelet; do
    standin "$OUT/$c/$K8S/$c" "$c" "$K8S"
    record "$c" "$K8S" "$c/$K8S/$c"
done

# flanneld-<arch>, a single binary on GitHub
standin "$OUT/flanneld/$FLANNEL/flanneld-$ARCH" flanneld "$FLANNEL"
record flanneld "$FLANNEL" "flanneld/$FLANNEL/flanneld-$ARCH"

# the flannel CNI plugin: cni-plugin-flannel-linux-<arch>-<base>.tgz holding flannel-<arch>
base=${FLANNEL_CNI%%-*}
mkdir -p "$STAGE/fcni"
standin "$STAGE/fcni/flannel-$ARCH" cni "$FLANNEL_CNI"
f=flannel-cni-plugin/$FLANNEL_CNI/cni-plugin-flannel-linux-$ARCH-$base.tgz
tarball "$OUT/$f" "$STAGE/fcni" "flannel-$ARCH"
record flannel-cni-plugin "$FLANNEL_CNI" "$f"

# CNI plugins: cni-plugins-linux-<arch>-<version>.tgz with ./bridge, ./host-local, ...
mkdir -p "$STAGE/cni"
for p in bridge host-local loopback portmap; do standin "$STAGE/cni/$p" cni "$CNI"; done
f=cni-plugins/$CNI/cni-plugins-linux-$ARCH-$CNI.tgz
tarball "$OUT/$f" "$STAGE/cni" ./bridge ./host-local ./loopback ./portmap
record cni-plugins "$CNI" "$f"

# containerd: containerd-<semver>-linux-<arch>.tar.gz with bin/containerd, bin/ctr, bin/containerd-shim-runc-v2
mkdir -p "$STAGE/containerd/bin"
for p in containerd ctr containerd-shim-runc-v2; do standin "$STAGE/containerd/bin/$p" "$p" "$CONTAINERD"; done
f=containerd/$CONTAINERD/containerd-${CONTAINERD#v}-linux-$ARCH.tar.gz
tarball "$OUT/$f" "$STAGE/containerd" bin/containerd bin/containerd-shim-runc-v2 bin/ctr
record containerd "$CONTAINERD" "$f"

# runc.<arch>, a single binary
standin "$OUT/runc/$RUNC/runc.$ARCH" runc "$RUNC"
record runc "$RUNC" "runc/$RUNC/runc.$ARCH"

# crictl-<version>-linux-<arch>.tar.gz with crictl
mkdir -p "$STAGE/crictl"
standin "$STAGE/crictl/crictl" crictl "$CRICTL"
f=crictl/$CRICTL/crictl-$CRICTL-linux-$ARCH.tar.gz
tarball "$OUT/$f" "$STAGE/crictl" crictl
record crictl "$CRICTL" "$f"

# the real etcd, if given, so that one mirror serves everything
if [[ -n $ETCD_TARBALL ]]; then
    name=$(basename "$ETCD_TARBALL")
    v=${name#etcd-}
    v=${v%%-linux-*}
    mkdir -p "$OUT/etcd/$v"
    cp "$ETCD_TARBALL" "$OUT/etcd/$v/$name"
    record etcd "$v" "etcd/$v/$name"
fi

if [[ $PUBLISH == 1 ]]; then
    LAB=${LAB:-$REPO/tests/lab/lab}
    echo "build.sh: publishing to the lab mirror with $LAB" >&2
    while read -r _ path; do
        "$LAB" mirror add "$OUT/$path" "$path"
    done <"$OUT/SHA256SUMS"
fi
echo "build.sh: $(wc -l <"$OUT/SHA256SUMS") artifacts in $OUT (kbin.lock, pin.sh, SHA256SUMS)" >&2
