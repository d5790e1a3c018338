#!/usr/bin/env bash
# Builds the real upstream components kbin installs from their official Go modules, caches the
# binaries outside the repo, and lays them out as the upstream release artifacts of kbin's catalog
# (src/artifacts/catalog.toml), so that kbin downloads them from a mirror exactly like the real
# release files: single binaries where upstream ships binaries, archives with upstream's member
# paths where upstream ships archives.
#
#   tests/upstream/build.sh [--out DIR] [--publish] [--build-only | --etcd-only]
#
# What is built (the versions the lab's clusters run):
#   k8s.io/kubernetes v1.37.2      kube-apiserver kube-controller-manager kube-scheduler kubelet
#   (K8S, the default: clusters    kube-proxy kubectl (helper modules tests/upstream/kubernetes/<v>:
#   are made with it, the          upstream's go.mod replaces its staging modules with ./staging,
#   operator's kubectl) and        which `go install pkg@version` refuses; the helper replaces each
#   v1.36.3 (K8S_UPGRADE_FROM:     with the published module of the same release, v0.37.2, v0.36.3)
#   tests/lab/e2e-upgrade.sh starts there and upgrades to K8S)
#   go.etcd.io/etcd/{server,etcdctl,etcdutl}/v3 v3.6.17 (ETCD, the default) and v3.5.36
#                                  (ETCD_UPGRADE_FROM)  etcd etcdctl etcdutl (static, no cgo,
#                                  upstream's GitSHA ldflag; helper modules tests/upstream/etcd/<v>:
#                                  each module's go.mod replaces the other etcd modules with ../api
#                                  and so on, which `go install pkg@version` refuses)
#   github.com/flannel-io/flannel v0.28.11                flanneld (cgo, as upstream on amd64; without
#                                  the TencentCloud VPC backend, whose SDK module the proxy lacks)
#   github.com/containernetworking/plugins v1.10.0        bridge host-local loopback portmap
#   github.com/containernetworking/plugins v0.9.1         the flannel CNI plugin (plugins/meta/flannel,
#                                  its home before flannel-io/cni-plugin; the Go module proxy does not
#                                  serve github.com/flannel-io/cni-plugin), packed as upstream packs
#                                  cni-plugin v1.9.1-flannel1
#   github.com/containerd/containerd/v2 v2.3.7            containerd containerd-shim-runc-v2 ctr
#   github.com/opencontainers/runc v1.5.3                 runc (cgo + libseccomp, tags seccomp)
#   sigs.k8s.io/cri-tools v1.37.0                         crictl
#
# Caches (outside the repo, re-used across runs; KBIN_UPSTREAM_CACHE, default
# /var/cache/kbin-lab/upstream): go/{mod,build} are GOMODCACHE and GOCACHE; bin/<component>/<version>/
# holds the binaries with a .recipe stamp: a build is re-used when its recipe (module, version, flags,
# Go version) is unchanged. bin/etcd/<version>/ also holds the release tarball
# etcd-<version>-linux-amd64.tar.gz, packed when the binaries are built (what `tests/lab/lab
# etcd-tarball` prints and `tests/lab/lab mirror` serves). No built binary ever lands in the repo.
#
# Mirror layout (kbin's default `<mirror>/<component>/<version>/<file>`):
#   DIR/kubernetes-server/v1.37.2/kubernetes-server-linux-amd64.tar.gz   kubernetes/server/bin/*
#   DIR/kubelet/v1.37.2/kubelet, DIR/kubectl/v1.37.2/kubectl              dl.k8s.io single binaries
#   DIR/etcd/v3.6.17/etcd-v3.6.17-linux-amd64.tar.gz                      etcd-v3.6.17-linux-amd64/
#                                                                          {etcd,etcdctl,etcdutl}
#   DIR/flanneld/v0.28.11/flanneld-amd64                                   GitHub single binary
#   DIR/flannel-cni-plugin/v1.9.1-flannel1/cni-plugin-flannel-linux-amd64-v1.9.1.tgz   flannel-amd64
#   DIR/cni-plugins/v1.10.0/cni-plugins-linux-amd64-v1.10.0.tgz          ./bridge ./host-local ...
#   DIR/containerd/v2.3.7/containerd-2.3.7-linux-amd64.tar.gz             bin/containerd ...
#   DIR/runc/v1.5.3/runc.amd64                                             single binary
#   DIR/crictl/v1.37.0/crictl-v1.37.0-linux-amd64.tar.gz                   crictl
# (and the same for v1.36.3 and etcd v3.5.36). Archives are reproducible (sorted, mtime 0, owner 0,
# gzip -n), so their digests are stable for one build; they are not upstream's digests, so a
# cluster pins them with `kbin pin`.
#
# Outputs besides the files: stdout, one line per artifact (component, version, path, sha256,
# tab-separated); DIR/pin.sh (`"$KBIN" $KBIN_ARGS pin C V SHA256` lines); DIR/SHA256SUMS;
# DIR/bin/ (kubectl for the operator). With --publish every file also goes to the lab mirror
# (`tests/lab/lab mirror add`). --build-only builds (or finds cached) binaries and stops.
# --etcd-only builds (or finds cached) only etcd and prints one line per etcd release, the default
# first: etcd, version, the cached tarball's absolute path, sha256 (tab-separated); DIR is untouched.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LABCACHE=${KBIN_LAB_CACHE:-/var/cache/kbin-lab}
CACHE=${KBIN_UPSTREAM_CACHE:-$LABCACHE/upstream}
OUT=$HERE/out
PUBLISH=0
BUILD_ONLY=0
ETCD_ONLY=0
ARCH=amd64

# Kubernetes: K8S is the default release, the one clusters are made with (and the operator's
# kubectl); K8S_UPGRADE_FROM is where tests/lab/e2e-upgrade.sh starts before upgrading to K8S.
# K8S_VERSIONS is every release built, each with its helper module in kubernetes/<version>.
K8S=v1.37.2
K8S_UPGRADE_FROM=v1.36.3
K8S_VERSIONS=("$K8S" "$K8S_UPGRADE_FROM")
# etcd, the same way: ETCD is the default, ETCD_UPGRADE_FROM the release an upgrade starts on
# (>= 3.5.26, which an upgrade to 3.6 needs); each has its helper module in etcd/<version>.
ETCD=v3.6.17
ETCD_UPGRADE_FROM=v3.5.36
ETCD_VERSIONS=("$ETCD" "$ETCD_UPGRADE_FROM")
# what upstream's build puts in go.etcd.io/etcd/api/v3/version.GitSHA without a git checkout
# (scripts/build_lib.sh: `git rev-parse --short HEAD || echo GitNotFound`): a module zip has none
ETCD_GIT_SHA=GitNotFound
FLANNEL=v0.28.11
# flannel backends left out of flanneld (see build_flannel); the lab's clusters use vxlan
FLANNEL_WITHOUT=(tencentvpc)
FLANNEL_CNI=v1.9.1-flannel1 # the label flannel v0.28.3 and later pair with; built from the plugin's old home
FLANNEL_CNI_SOURCE=v0.9.1 # containernetworking/plugins, plugins/meta/flannel
CNI=v1.10.0
CONTAINERD=v2.3.7
RUNC=v1.5.3
CRICTL=v1.37.0

usage() { sed -n '2,60p' "$0" | sed 's/^# \{0,1\}//'; }
say() { echo "build.sh: $*" >&2; }
die() { say "$1"; [[ -n ${2:-} ]] && echo "hint: $2" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        --publish) PUBLISH=1; shift ;;
        --build-only) BUILD_ONLY=1; shift ;;
        --etcd-only) ETCD_ONLY=1; shift ;;
        --etcd-tarball) die "--etcd-tarball is gone: build.sh builds etcd ${ETCD_VERSIONS[*]} itself" \
            "drop the option; the etcd tarballs are in DIR/etcd/<version>/ and in the output lines" ;;
        -h | --help) usage; exit 0 ;;
        *) echo "build.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $BUILD_ONLY == 1 && $ETCD_ONLY == 1 ]] && die "--build-only and --etcd-only do not go together" "use one of them"

# Go from its default place when it is not on PATH (root shells, `tests/lab/lab etcd-tarball`)
command -v go >/dev/null || [[ ! -x /usr/local/go/bin/go ]] || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || die "go is not on PATH" "install Go 1.26 or newer (/usr/local/go/bin)"
export GOMODCACHE=$LABCACHE/go/mod GOCACHE=$LABCACHE/go/build GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
export GOPROXY=${GOPROXY:-https://proxy.golang.org}
mkdir -p "$GOMODCACHE" "$GOCACHE" "$CACHE/bin"
GOVERSION=$(go env GOVERSION)

ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }

# The source of MODULE@VERSION, copied out of the module cache into a writable build directory.
# Prints the directory.
module_src() { # MODULE VERSION
    local dir
    dir=$(go mod download -json "$1@$2" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if "Error" in d else print(d["Dir"])') \
        || die "cannot fetch $1@$2 from the Go module proxy" "check GOPROXY ($GOPROXY) and the network"
    local work=$CACHE/src/${1//\//_}@$2
    if [[ ! -d $work ]]; then
        mkdir -p "$(dirname "$work")"
        rm -rf "$work.tmp"
        cp -r "$dir" "$work.tmp"
        chmod -R u+w "$work.tmp"
        mv "$work.tmp" "$work"
    fi
    echo "$work"
}

# build COMPONENT VERSION RECIPE FUNCTION: runs FUNCTION DEST unless DEST holds a build of the
# same recipe; the binaries end up in $CACHE/bin/COMPONENT/VERSION.
build() {
    local comp=$1 ver=$2 recipe="$3 go=$GOVERSION" fn=$4
    local dest=$CACHE/bin/$comp/$ver
    if [[ -f $dest/.recipe && $(cat "$dest/.recipe") == "$recipe" ]]; then
        say "$comp $ver: cached ($dest)"
        return
    fi
    say "$comp $ver: building from source (Go $GOVERSION)"
    local t0 tmp
    t0=$(ms)
    tmp=$dest.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp"
    "$fn" "$tmp" || die "$comp $ver: the build failed" "see the go output above"
    printf '%s' "$recipe" >"$tmp/.recipe"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    say "$comp $ver: built in $((($(ms) - t0) / 1000)) s"
}

# A reproducible .tar.gz of DIR's contents, members named as given.
tarball() { # OUT DIR MEMBERS...
    local out=$1 dir=$2; shift 2
    mkdir -p "$(dirname "$out")"
    tar -C "$dir" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - "$@" | gzip -n -6 >"$out"
}

# Module zips keep only vendor/modules.txt of a vendored module, which would make go use an empty
# vendor tree: build from the module's go.sum-checked dependencies instead.
modflag() { echo -mod=mod; }

k8s_ldflags() { # VERSION
    local ld="-s -w" p v=$1
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $p.gitVersion=$v -X $p.gitMajor=$(cut -d. -f1 <<<"${v#v}") -X $p.gitMinor=$(cut -d. -f2 <<<"$v")"
        ld+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    echo "$ld"
}
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
KV=$K8S # the version build_kubernetes builds
build_kubernetes() {
    local pkgs=() c
    for c in "${K8S_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    # upstream builds every one of these static, without cgo, with these tags
    (cd "$HERE/kubernetes/$KV" && CGO_ENABLED=0 go build -mod=readonly -trimpath -tags=selinux,notest \
        -ldflags "$(k8s_ldflags "$KV")" -o "$1/" "${pkgs[@]}")
}
etcd_ldflags() { echo "-X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_GIT_SHA"; }
EV=$ETCD # the version build_etcd builds
# etcd, etcdctl and etcdutl (each its module's root package; upstream builds them static, without
# cgo) in DEST/etcd-<v>-linux-<arch>/, and upstream's release tarball of them next to it
build_etcd() {
    local base=etcd-$EV-linux-$ARCH c mod
    mkdir -p "$1/$base"
    for c in etcd:server etcdctl:etcdctl etcdutl:etcdutl; do
        mod=go.etcd.io/etcd/${c#*:}/v3
        (cd "$HERE/etcd/$EV" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$(etcd_ldflags)" \
            -o "$1/$base/${c%%:*}" "$mod") || return 1
    done
    local got
    got=$("$1/$base/etcd" --version | sed -n 's/^etcd Version: //p')
    [[ $got == "${EV#v}" ]] || { say "the etcd built from the $EV modules says it is version '$got'"; return 1; }
    got=$("$1/$base/etcdctl" version | sed -n 's/^etcdctl version: //p')
    [[ $got == "${EV#v}" ]] || { say "the etcdctl built from the $EV modules says it is version '$got'"; return 1; }
    got=$("$1/$base/etcdutl" version | sed -n 's/^etcdutl version: //p')
    [[ $got == "${EV#v}" ]] || { say "the etcdutl built from the $EV modules says it is version '$got'"; return 1; }
    chmod 755 "$1/$base"
    tarball "$1/$base.tar.gz" "$1" "$base"
}
etcd_tarball_of() { echo "$CACHE/bin/etcd/$1/etcd-$1-linux-$ARCH.tar.gz"; } # VERSION
build_flannel() {
    local src b
    src=$(module_src github.com/flannel-io/flannel "$FLANNEL")
    # main.go imports every backend for its init(). The Go module proxy serves no zip of
    # github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc v1.3.208 (403; only its .mod),
    # which only the TencentCloud VPC backend needs: flanneld is built without that backend.
    for b in "${FLANNEL_WITHOUT[@]}"; do
        sed -i "\|^\t_ \"github.com/flannel-io/flannel/pkg/backend/$b\"\$|d" "$src/main.go"
        ! grep -q "pkg/backend/$b\"" "$src/main.go" || { say "flanneld: cannot drop the $b backend from main.go"; return 1; }
    done
    (cd "$src" && CGO_ENABLED=1 go build -trimpath -o "$1/flanneld" \
        -ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL -extldflags -static" .)
}
build_flannel_cni() {
    local src
    src=$(module_src github.com/containernetworking/plugins "$FLANNEL_CNI_SOURCE")
    (cd "$src" && CGO_ENABLED=0 go build $(modflag) -trimpath -ldflags "-s -w" -o "$1/flannel" ./plugins/meta/flannel)
}
build_cni() {
    local src
    src=$(module_src github.com/containernetworking/plugins "$CNI")
    (cd "$src" && CGO_ENABLED=0 go build $(modflag) -trimpath \
        -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI" \
        -o "$1/" ./plugins/main/bridge ./plugins/ipam/host-local ./plugins/main/loopback ./plugins/meta/portmap)
}
build_containerd() {
    local src ld="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2"
    src=$(module_src github.com/containerd/containerd/v2 "$CONTAINERD")
    (cd "$src" && CGO_ENABLED=0 go build $(modflag) -trimpath -tags "no_btrfs urfave_cli_no_docs" -ldflags "$ld" \
        -o "$1/" ./cmd/containerd ./cmd/containerd-shim-runc-v2 ./cmd/ctr)
}
build_runc() {
    local src
    src=$(module_src github.com/opencontainers/runc "$RUNC")
    pkg-config --exists libseccomp || die "runc needs libseccomp-dev" "apt-get install libseccomp-dev pkg-config"
    (cd "$src" && CGO_ENABLED=1 go build $(modflag) -trimpath -tags "seccomp urfave_cli_no_docs" \
        -ldflags "-s -w -X main.version=${RUNC#v} -extldflags -static" -o "$1/runc" .)
}
build_crictl() {
    local src
    src=$(module_src sigs.k8s.io/cri-tools "$CRICTL")
    (cd "$src" && CGO_ENABLED=0 go build $(modflag) -trimpath \
        -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL" -o "$1/crictl" ./cmd/crictl)
}

build_all_etcd() {
    for EV in "${ETCD_VERSIONS[@]}"; do
        [[ -f $HERE/etcd/$EV/go.sum ]] || die "no helper module for etcd $EV" "add tests/upstream/etcd/$EV (see etcd/$ETCD/go.mod)"
        build etcd "$EV" "go.etcd.io/etcd/{server,etcdctl,etcdutl}/v3@$EV $(sha256sum <"$HERE/etcd/$EV/go.sum" | cut -c1-16) nocgo ld=$(etcd_ldflags) tarball" build_etcd
    done
}
T0=$(ms)
if [[ $ETCD_ONLY == 1 ]]; then
    build_all_etcd
    for EV in "${ETCD_VERSIONS[@]}"; do
        f=$(etcd_tarball_of "$EV")
        [[ -s $f ]] || die "$f is missing" "delete $CACHE/bin/etcd/$EV and run again"
        printf 'etcd\t%s\t%s\t%s\n' "$EV" "$f" "$(sha256sum "$f" | cut -d' ' -f1)"
    done
    exit 0
fi
for KV in "${K8S_VERSIONS[@]}"; do
    [[ -f $HERE/kubernetes/$KV/go.sum ]] || die "no helper module for Kubernetes $KV" "add tests/upstream/kubernetes/$KV (see kubernetes/$K8S/go.mod)"
    build kubernetes "$KV" "k8s.io/kubernetes@$KV staging=v0.${KV#v1.} $(sha256sum <"$HERE/kubernetes/$KV/go.sum" | cut -c1-16) ld=$(k8s_ldflags "$KV")" build_kubernetes
done
build_all_etcd
build flanneld "$FLANNEL" "github.com/flannel-io/flannel@$FLANNEL cgo static without=${FLANNEL_WITHOUT[*]}" build_flannel
build flannel-cni-plugin "$FLANNEL_CNI" "github.com/containernetworking/plugins@$FLANNEL_CNI_SOURCE plugins/meta/flannel" build_flannel_cni
build cni-plugins "$CNI" "github.com/containernetworking/plugins@$CNI bridge host-local loopback portmap" build_cni
build containerd "$CONTAINERD" "github.com/containerd/containerd/v2@$CONTAINERD no_btrfs" build_containerd
build runc "$RUNC" "github.com/opencontainers/runc@$RUNC seccomp static" build_runc
build crictl "$CRICTL" "sigs.k8s.io/cri-tools@$CRICTL" build_crictl
say "all components ready in $((($(ms) - T0) / 1000)) s ($(du -sh "$CACHE" | cut -f1) in $CACHE)"
[[ $BUILD_ONLY == 1 ]] && exit 0

bin() { echo "$CACHE/bin/$1/$2/$3"; }

rm -rf "$OUT"
mkdir -p "$OUT/bin"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
: >"$OUT/SHA256SUMS"
printf '# pins for the upstream builds; run with KBIN=path/to/kbin and KBIN_ARGS="-c cluster.toml"\n' >"$OUT/pin.sh"

place() { # SRC DEST(relative to OUT)
    mkdir -p "$(dirname "$OUT/$2")"
    cp "$1" "$OUT/$2"
    chmod 755 "$OUT/$2"
}
stage() { # SRC STAGE-RELATIVE-DEST
    mkdir -p "$(dirname "$STAGE/$2")"
    cp "$1" "$STAGE/$2"
    chmod 755 "$STAGE/$2"
}
record() { # COMPONENT VERSION FILE(relative to OUT)
    local sum
    sum=$(sha256sum "$OUT/$3" | cut -d' ' -f1)
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$sum"
    printf '%s  %s\n' "$sum" "$3" >>"$OUT/SHA256SUMS"
    # shellcheck disable=SC2016 # $KBIN is for pin.sh to expand
    printf '"$KBIN" $KBIN_ARGS pin %s %s %s\n' "$1" "$2" "$sum" >>"$OUT/pin.sh"
}

# kubernetes-server-linux-<arch>.tar.gz: kubernetes/server/bin/<binary> (upstream's also holds
# kubeadm, image tarballs and more, which kbin does not take)
for KV in "${K8S_VERSIONS[@]}"; do
    rm -rf "$STAGE/server"
    for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl; do
        stage "$(bin kubernetes "$KV" "$c")" "server/kubernetes/server/bin/$c"
    done
    f=kubernetes-server/$KV/kubernetes-server-linux-$ARCH.tar.gz
    tarball "$OUT/$f" "$STAGE/server" kubernetes
    record kubernetes-server "$KV" "$f"
    for c in kubectl kubelet; do
        place "$(bin kubernetes "$KV" "$c")" "$c/$KV/$c"
        record "$c" "$KV" "$c/$KV/$c"
    done
done
cp "$(bin kubernetes "$K8S" kubectl)" "$OUT/bin/kubectl"

# etcd-<v>-linux-<arch>.tar.gz: etcd-<v>-linux-<arch>/{etcd,etcdctl,etcdutl}, packed with the build
for EV in "${ETCD_VERSIONS[@]}"; do
    f=etcd/$EV/etcd-$EV-linux-$ARCH.tar.gz
    mkdir -p "$OUT/etcd/$EV"
    cp "$(etcd_tarball_of "$EV")" "$OUT/$f"
    record etcd "$EV" "$f"
done

place "$(bin flanneld "$FLANNEL" flanneld)" "flanneld/$FLANNEL/flanneld-$ARCH"
record flanneld "$FLANNEL" "flanneld/$FLANNEL/flanneld-$ARCH"

base=${FLANNEL_CNI%%-*}
stage "$(bin flannel-cni-plugin "$FLANNEL_CNI" flannel)" "fcni/flannel-$ARCH"
f=flannel-cni-plugin/$FLANNEL_CNI/cni-plugin-flannel-linux-$ARCH-$base.tgz
tarball "$OUT/$f" "$STAGE/fcni" "flannel-$ARCH"
record flannel-cni-plugin "$FLANNEL_CNI" "$f"

for p in bridge host-local loopback portmap; do stage "$(bin cni-plugins "$CNI" "$p")" "cni/$p"; done
f=cni-plugins/$CNI/cni-plugins-linux-$ARCH-$CNI.tgz
tarball "$OUT/$f" "$STAGE/cni" ./bridge ./host-local ./loopback ./portmap
record cni-plugins "$CNI" "$f"

for p in containerd ctr containerd-shim-runc-v2; do stage "$(bin containerd "$CONTAINERD" "$p")" "containerd/bin/$p"; done
f=containerd/$CONTAINERD/containerd-${CONTAINERD#v}-linux-$ARCH.tar.gz
tarball "$OUT/$f" "$STAGE/containerd" bin/containerd bin/containerd-shim-runc-v2 bin/ctr
record containerd "$CONTAINERD" "$f"

place "$(bin runc "$RUNC" runc)" "runc/$RUNC/runc.$ARCH"
record runc "$RUNC" "runc/$RUNC/runc.$ARCH"

stage "$(bin crictl "$CRICTL" crictl)" "crictl/crictl"
f=crictl/$CRICTL/crictl-$CRICTL-linux-$ARCH.tar.gz
tarball "$OUT/$f" "$STAGE/crictl" crictl
record crictl "$CRICTL" "$f"

if [[ $PUBLISH == 1 ]]; then
    LAB=${LAB:-$REPO/tests/lab/lab}
    say "publishing to the lab mirror with $LAB"
    while read -r _ path; do
        "$LAB" mirror add "$OUT/$path" "$path" >/dev/null
    done <"$OUT/SHA256SUMS"
fi
say "$(wc -l <"$OUT/SHA256SUMS") artifacts in $OUT (pin.sh, SHA256SUMS, bin/kubectl)"
