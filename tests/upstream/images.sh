#!/usr/bin/env bash
# Builds the container images a kbin cluster pulls (the pod sandbox, cluster DNS, metrics, test
# images) as OCI image archives, from sources this project controls: nothing is pulled from a
# registry. kbin and `ctr -n k8s.io images import` load the archives under the upstream names.
#
#   tests/upstream/images.sh [--out DIR] [--publish] [--build-only]
#
# What is built (key, image reference: content):
#   pause           registry.k8s.io/pause:3.10.1            /pause from tests/upstream/pause/pause.c
#                   (gcc -static -Os; sleeps, reaps orphans as PID 1, exits 0 on SIGTERM/SIGINT);
#                   user 65535:65535 like upstream's
#   coredns         registry.k8s.io/coredns/coredns:v1.14.7  /coredns from github.com/coredns/coredns
#                   v1.14.7 (static, no cgo, -trimpath, upstream's GitCommit ldflag when the commit
#                   is known, see COREDNS_COMMIT); user
#                   65532:65532 with the file capability cap_net_bind_service=+ep, as upstream's
#                   (nonroot + setcap) image, so it binds :53 without root
#   metrics-server  registry.k8s.io/metrics-server/metrics-server:v0.8.0  /metrics-server from
#                   sigs.k8s.io/metrics-server v0.8.0 cmd/metrics-server (static, upstream's version
#                   ldflags); user 65534; /tmp (1777) for `--cert-dir=/tmp`
#   busybox         docker.io/library/busybox:<upstream version of Debian's busybox-static>
#                   (1.35.0 on bookworm): /bin/busybox from the .deb (`apt-get download`), a symlink
#                   per applet in /bin, /tmp (1777), /root, /var/www, /etc/{passwd,group} (root,
#                   nobody); Cmd ["sh"], user root
#   apiclient       kbin.test/apiclient:v1                  /apiclient from tests/upstream/apiclient
#                   (Go standard library only; static, no cgo, -trimpath): a pod's API client that
#                   GETs /api with its service-account token and CA bundle, re-read for each request
#                   on a new TLS connection, printing one ok/fail line per request and serving the
#                   counts on :8080 (GET /counts, GET /failures); user 65534
# coredns, metrics-server and apiclient also get /tmp (1777) and /etc/{passwd,group} (root, nobody,
# nonroot), as in the distroless base upstream uses. Archives are made by
# tests/upstream/oci-pack.py: an uncompressed tar of an OCI image layout (oci-layout, index.json
# naming the image by both io.containerd.image.name and org.opencontainers.image.ref.name,
# blobs/sha256/: config, manifest, one gzip layer), linux/amd64, reproducible (sorted, mtime 0,
# owner 0, gzip -n, canonical JSON): the same inputs give byte-identical archives.
#
# Caches (outside the repo; KBIN_UPSTREAM_CACHE, default /var/cache/kbin-lab/upstream, with Go's
# GOMODCACHE and GOCACHE in $KBIN_LAB_CACHE/go/{mod,build} as for build.sh): bin/<name>/<version>/
# holds each binary with a .recipe stamp (module, version, flags, Go/gcc/deb version), and
# images/<key>/<version>/<file-name> each archive with a .recipe stamp (binary digest, packer
# digest, rootfs recipe, pack arguments, python and gzip versions); an unchanged recipe is re-used.
#
# Outputs: stdout, one line per image, tab-separated: key, reference, path of the archive, sha256 of
# the archive file, file name (pause-3.10.1-linux-amd64.oci.tar,
# coredns-v1.14.7-linux-amd64.oci.tar, metrics-server-v0.8.0-linux-amd64.oci.tar,
# busybox-1.35.0-linux-amd64.oci.tar, apiclient-v1-linux-amd64.oci.tar). The path is the cached
# archive (do not change it), or with --out DIR a copy in DIR. With --publish each archive also goes
# to the lab mirror (`tests/lab/lab mirror add FILE images/<file-name>`, served at `$(tests/lab/lab
# mirror url)/images/<file-name>`; the lab must be up); without it the lab is not touched.
# --build-only builds (or finds cached) binaries and archives and stops, printing nothing on stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LABCACHE=${KBIN_LAB_CACHE:-/var/cache/kbin-lab}
CACHE=${KBIN_UPSTREAM_CACHE:-$LABCACHE/upstream}
OUT=""
PUBLISH=0
BUILD_ONLY=0
ARCH=amd64

PAUSE=3.10.1
COREDNS=v1.14.7
# The tag's commit (the proxy's .info Origin.Hash, first 7 digits), as upstream's `git describe`
# puts in coremain.GitCommit; empty when the proxy does not say: its .info for v1.14.7 has no
# Origin, so GitCommit stays unset (`coredns -version` then ends in ", ").
COREDNS_COMMIT=
METRICS_SERVER=v0.8.0
BUSYBOX_PACKAGE=busybox-static # Debian's; the image takes its upstream version
APICLIENT=v1 # tests/upstream/apiclient; the recipe has its sources' digests, so edits rebuild it

usage() { sed -n '2,48p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        --publish) PUBLISH=1; shift ;;
        --build-only) BUILD_ONLY=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "images.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

say() { echo "images.sh: $*" >&2; }
die() { say "$1"; [[ -n ${2:-} ]] && echo "hint: $2" >&2; exit 1; }

# Go from its default place when it is not on PATH (root shells)
command -v go >/dev/null || [[ ! -x /usr/local/go/bin/go ]] || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || die "go is not on PATH" "install Go 1.25 or newer (/usr/local/go/bin)"
command -v gcc >/dev/null || die "gcc is not on PATH" "apt-get install gcc libc6-dev"
export GOMODCACHE=$LABCACHE/go/mod GOCACHE=$LABCACHE/go/build GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
export GOPROXY=${GOPROXY:-https://proxy.golang.org}
mkdir -p "$GOMODCACHE" "$GOCACHE" "$CACHE/bin" "$CACHE/images"
GOVERSION=$(go env GOVERSION)
# The distribution's python3 if there is one (a pyenv shim costs a few hundred ms a call).
if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=python3; fi
PACK=$HERE/oci-pack.py

ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
sha() { sha256sum "$@" | cut -d' ' -f1; }

# Debian's busybox-static: the version apt would install and the .deb's sha256 (from the package
# lists, so a warm run needs no download).
BUSYBOX_DEB=$(apt-cache policy "$BUSYBOX_PACKAGE" 2>/dev/null | sed -n 's/^ *Candidate: //p')
[[ -n $BUSYBOX_DEB && $BUSYBOX_DEB != "(none)" ]] ||
    die "apt knows no $BUSYBOX_PACKAGE package" "run apt-get update (Debian's main archive must be reachable)"
BUSYBOX_DEB_SHA=$(apt-cache show "$BUSYBOX_PACKAGE=$BUSYBOX_DEB" | sed -n 's/^SHA256: //p' | head -1)
BUSYBOX=${BUSYBOX_DEB#*:}
BUSYBOX=${BUSYBOX%%-*} # 1:1.35.0-4+deb12u1+b1 -> 1.35.0

# build NAME VERSION RECIPE FUNCTION: runs FUNCTION DEST unless DEST holds a build of the same
# recipe; the binaries end up in $CACHE/bin/NAME/VERSION (as in build.sh).
build() {
    local comp=$1 ver=$2 recipe=$3 fn=$4
    local dest=$CACHE/bin/$comp/$ver
    if [[ -f $dest/.recipe && $(cat "$dest/.recipe") == "$recipe" ]]; then
        say "$comp $ver: cached ($dest)"
        return
    fi
    say "$comp $ver: building"
    local t0 tmp
    t0=$(ms)
    tmp=$dest.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp"
    "$fn" "$tmp" || die "$comp $ver: the build failed" "see the output above"
    printf '%s' "$recipe" >"$tmp/.recipe"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    say "$comp $ver: built in $((($(ms) - t0) / 1000)) s"
}
bin() { echo "$CACHE/bin/$1/$2/$3"; }

build_pause() {
    gcc -static -Os -s -Wall -Wextra -Werror -DVERSION="\"$PAUSE\"" -o "$1/pause" "$HERE/pause/pause.c"
}
coredns_ldflags() { echo "-s -w${COREDNS_COMMIT:+ -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_COMMIT}"; }
build_coredns() {
    # coredns' go.mod has no replace lines: `go install module@version` builds it as released
    GOBIN=$1 CGO_ENABLED=0 go install -trimpath -ldflags "$(coredns_ldflags)" "github.com/coredns/coredns@$COREDNS"
}
ms_ldflags() {
    local p=k8s.io/client-go/pkg/version
    echo "-s -w -X $p.gitVersion=$METRICS_SERVER -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.buildDate=1970-01-01T00:00:00Z"
}
build_metrics_server() {
    GOBIN=$1 CGO_ENABLED=0 go install -trimpath -ldflags "$(ms_ldflags)" \
        "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER"
}
build_busybox() {
    local work
    work=$(mktemp -d)
    # apt downloads as its sandbox user where that user may write
    chmod 755 "$work"
    chown _apt "$work" 2>/dev/null || true
    (cd "$work" && apt-get download -q "$BUSYBOX_PACKAGE=$BUSYBOX_DEB" >&2) ||
        { rm -rf "$work"; die "apt-get could not download $BUSYBOX_PACKAGE=$BUSYBOX_DEB" "run apt-get update"; }
    local deb=("$work"/*.deb)
    [[ $(sha "${deb[0]}") == "$BUSYBOX_DEB_SHA" ]] || { rm -rf "$work"; die "${deb[0]} is not the .deb apt lists"; }
    dpkg-deb -x "${deb[0]}" "$work/x"
    install -m 755 "$work/x/bin/busybox" "$1/busybox"
    rm -rf "$work"
    local banner
    banner=$("$1/busybox" --help 2>&1 || true)
    [[ $banner == "BusyBox v$BUSYBOX "* ]] || die "the busybox in $BUSYBOX_PACKAGE $BUSYBOX_DEB is not $BUSYBOX"
}
build_apiclient() {
    (cd "$HERE/apiclient" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$1/apiclient" .)
}

T0=$(ms)
CCVERSION="$(gcc --version | head -1) libc6-dev=$(dpkg-query -W -f='${Version}' libc6-dev 2>/dev/null || echo unknown)"
build pause "$PAUSE" "pause.c=$(sha "$HERE/pause/pause.c") gcc -static -Os -s $CCVERSION" build_pause
build coredns "$COREDNS" "github.com/coredns/coredns@$COREDNS ld=$(coredns_ldflags) nocgo go=$GOVERSION" build_coredns
build metrics-server "$METRICS_SERVER" "sigs.k8s.io/metrics-server@$METRICS_SERVER ld=$(ms_ldflags) nocgo go=$GOVERSION" build_metrics_server
build busybox "$BUSYBOX" "debian $BUSYBOX_PACKAGE=$BUSYBOX_DEB sha256=$BUSYBOX_DEB_SHA" build_busybox
build apiclient "$APICLIENT" "main.go=$(sha "$HERE/apiclient/main.go") go.mod=$(sha "$HERE/apiclient/go.mod") ld=-s -w nocgo go=$GOVERSION" build_apiclient

# --- root filesystems: rootfs_KEY ROOT (ROOT exists, empty) ---------------------------------------
# Modes are set explicitly: the layer takes them from here (owner 0:0, mtime 0).

# /tmp and /etc/{passwd,group} of a distroless-like base.
base_rootfs() {
    install -d -m 755 "$1/etc"
    install -d -m 1777 "$1/tmp"
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
        'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$1/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$1/etc/group"
    chmod 644 "$1/etc/passwd" "$1/etc/group"
}
rootfs_pause() {
    install -m 755 "$(bin pause "$PAUSE" pause)" "$1/pause"
}
rootfs_coredns() {
    base_rootfs "$1"
    install -m 755 "$(bin coredns "$COREDNS" coredns)" "$1/coredns"
}
rootfs_metrics_server() {
    base_rootfs "$1"
    install -m 755 "$(bin metrics-server "$METRICS_SERVER" metrics-server)" "$1/metrics-server"
}
rootfs_busybox() {
    local bb
    bb=$(bin busybox "$BUSYBOX" busybox)
    install -d -m 755 "$1/bin" "$1/etc" "$1/var" "$1/var/www"
    install -d -m 700 "$1/root"
    install -d -m 1777 "$1/tmp"
    install -m 755 "$bb" "$1/bin/busybox"
    local applet
    for applet in $("$bb" --list); do
        [[ $applet == busybox ]] || ln -s busybox "$1/bin/$applet"
    done
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$1/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' >"$1/etc/group"
    chmod 644 "$1/etc/passwd" "$1/etc/group"
}
rootfs_apiclient() {
    base_rootfs "$1"
    install -m 755 "$(bin apiclient "$APICLIENT" apiclient)" "$1/apiclient"
}

# image KEY VERSION REF BINARY PACK-ARGS...: the archive $CACHE/images/KEY/VERSION/FILE (FILE is
# KEY-VERSION-linux-ARCH.oci.tar) from rootfs_KEY, unless one of the same recipe is there; BINARY
# is the image's program (its digest is part of the recipe). Sets ARCHIVE and FILE.
PACKER_RECIPE="oci-pack.py=$(sha "$PACK") $("$PY" --version 2>&1) $(gzip --version | head -1)"
image() {
    local key=$1 ver=$2 ref=$3 binary=$4; shift 4
    local fn=rootfs_${key//-/_}
    FILE=$key-$ver-linux-$ARCH.oci.tar
    local dest=$CACHE/images/$key/$ver
    ARCHIVE=$dest/$FILE
    local recipe
    recipe="ref=$ref binary=$(sha "$binary") $PACKER_RECIPE rootfs=$(declare -f "$fn" base_rootfs | sha) args=$*"
    if [[ -f $dest/.recipe && -f $ARCHIVE && $(cat "$dest/.recipe") == "$recipe" ]]; then
        say "image $key $ver: cached ($ARCHIVE)"
        return
    fi
    local t0 tmp digest
    t0=$(ms)
    tmp=$dest.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp/rootfs"
    chmod 755 "$tmp/rootfs"
    "$fn" "$tmp/rootfs"
    digest=$("$PY" "$PACK" --rootfs "$tmp/rootfs" --ref "$ref" --out "$tmp/$FILE" "$@") ||
        die "image $key $ver: oci-pack.py failed"
    rm -rf "$tmp/rootfs"
    printf '%s\n' "$digest" >"$tmp/.manifest-digest"
    printf '%s' "$recipe" >"$tmp/.recipe"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    say "image $key $ver: packed in $((($(ms) - t0) / 1000)) s (manifest $digest)"
}

LINES=()
add() { # KEY VERSION REF BINARY PACK-ARGS...
    image "$@"
    LINES+=("$1"$'\t'"$3"$'\t'"$ARCHIVE"$'\t'"$FILE")
}
add pause "$PAUSE" "registry.k8s.io/pause:$PAUSE" "$(bin pause "$PAUSE" pause)" \
    --entrypoint '["/pause"]' --user 65535:65535
add coredns "$COREDNS" "registry.k8s.io/coredns/coredns:$COREDNS" "$(bin coredns "$COREDNS" coredns)" \
    --entrypoint '["/coredns"]' --user 65532:65532 --file-cap /coredns=net_bind_service
add metrics-server "$METRICS_SERVER" "registry.k8s.io/metrics-server/metrics-server:$METRICS_SERVER" \
    "$(bin metrics-server "$METRICS_SERVER" metrics-server)" --entrypoint '["/metrics-server"]' --user 65534
add busybox "$BUSYBOX" "docker.io/library/busybox:$BUSYBOX" "$(bin busybox "$BUSYBOX" busybox)" --cmd '["sh"]'
add apiclient "$APICLIENT" "kbin.test/apiclient:$APICLIENT" "$(bin apiclient "$APICLIENT" apiclient)" \
    --entrypoint '["/apiclient"]' --user 65534
say "all images ready in $((($(ms) - T0) / 1000)) s"
[[ $BUILD_ONLY == 1 ]] && exit 0

[[ -z $OUT ]] || mkdir -p "$OUT"
LAB=${LAB:-$REPO/tests/lab/lab}
[[ $PUBLISH == 0 ]] || say "publishing to the lab mirror with $LAB"
for line in "${LINES[@]}"; do
    IFS=$'\t' read -r key ref path file <<<"$line"
    if [[ -n $OUT ]]; then
        cp -f "$path" "$OUT/$file.partial"
        mv -f "$OUT/$file.partial" "$OUT/$file"
        path=$(cd "$OUT" && pwd)/$file
    fi
    [[ $PUBLISH == 0 ]] || "$LAB" mirror add "$path" "images/$file" >/dev/null
    printf '%s\t%s\t%s\t%s\t%s\n' "$key" "$ref" "$path" "$(sha "$path")" "$file"
done
