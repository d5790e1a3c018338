#!/usr/bin/env bash
# Benchmarks for issue 3 (artifacts). Everything stays on this machine: a loopback HTTP mirror
# (bench/serve.py on 127.0.0.1) and files generated under bench/out/ (git-ignored).
#
#   bash bench/artifacts.sh            # build --release, generate data, run hyperfine
#
# 1. verify-and-extract of a >= 100 MB release-shaped tarball from the cache (`kbin download
#    etcd --extract DIR`, a cache hit: one pass that hashes while decompressing) next to
#    `sha256sum FILE && tar xzf FILE -C DIR` on the same file;
# 2. a full `kbin download` of all 13 components (~650 MB) from the loopback mirror into an
#    empty cache, next to `curl` fetching the same files one after the other (and checking them
#    with sha256sum, which kbin does while downloading).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out="$repo/bench/out"
kbin="$repo/target/release/kbin"
port=${PORT:-18733}

command -v hyperfine >/dev/null || { echo "hyperfine is needed (apt-get install hyperfine)" >&2; exit 1; }
(cd "$repo" && cargo build --release --quiet)

rm -rf "$out"
mkdir -p "$out/mirror" "$out/cluster"
export KBIN_CACHE_DIR="$out/cache"
export NO_COLOR=1

v=v9.9.9
# --- a release-shaped etcd tarball: three binaries, ~150 MB of data, >= 100 MB compressed
stage="$out/stage/etcd-$v-linux-amd64"
mkdir -p "$stage"
for f in etcd etcdctl etcdutl; do
    head -c 38M /dev/urandom | base64 -w0 > "$stage/$f"
done
echo "benchmark data" > "$stage/README.md"
mkdir -p "$out/mirror/etcd/$v"
tgz="$out/mirror/etcd/$v/etcd-$v-linux-amd64.tar.gz"
tar -C "$out/stage" -czf "$tgz" "etcd-$v-linux-amd64"
ls -l "$tgz"

# --- every other component: random files of realistic sizes (MiB)
declare -A size=(
    [kube-apiserver]=92 [kube-controller-manager]=85 [kube-scheduler]=66 [kubectl]=57 [kubelet]=78
    [kube-proxy]=67 [flanneld]=44 [flannel-cni-plugin]=5 [cni-plugins]=50 [containerd]=35 [runc]=12 [crictl]=19
)
declare -A file=(
    [kube-apiserver]=kube-apiserver [kube-controller-manager]=kube-controller-manager
    [kube-scheduler]=kube-scheduler [kubectl]=kubectl [kubelet]=kubelet [kube-proxy]=kube-proxy
    [flanneld]=flanneld-amd64 [flannel-cni-plugin]=cni-plugin-flannel-linux-amd64-$v.tgz
    [cni-plugins]=cni-plugins-linux-amd64-$v.tgz [containerd]=containerd-9.9.9-linux-amd64.tar.gz
    [runc]=runc.amd64 [crictl]=crictl-$v-linux-amd64.tar.gz
)
cat > "$out/cluster/cluster.toml" <<TOML
[cluster]
name = "bench"
kubernetes_version = "$v"
etcd_version = "$v"
flannel_version = "$v"

[apiserver]
port = 6443

[artifacts]
mirror = "http://127.0.0.1:$port"

[artifacts.versions]
flannel-cni-plugin = "$v"
cni-plugins = "$v"
containerd = "$v"
runc = "$v"
crictl = "$v"

[[hosts]]
name = "h1"
address = "10.213.0.11"
roles = ["etcd", "master", "node"]
TOML
cd "$out/cluster"
"$kbin" -q pin etcd "$v" "$(sha256sum "$tgz" | cut -d' ' -f1)"
for c in "${!size[@]}"; do
    mkdir -p "$out/mirror/$c/$v"
    f="$out/mirror/$c/$v/${file[$c]}"
    head -c "${size[$c]}M" /dev/urandom > "$f"
    "$kbin" -q pin "$c" "$v" "$(sha256sum "$f" | cut -d' ' -f1)"
done
du -sh "$out/mirror"

python3 "$here/serve.py" "$port" "$out/mirror" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

# warm the cache with etcd, then compare verify-and-extract from the cache with sha256sum + tar
"$kbin" download etcd >/dev/null
blob="$KBIN_CACHE_DIR/sha256/$(sha256sum "$tgz" | cut -d' ' -f1)"
hyperfine --warmup 1 --runs 10 --export-markdown "$out/extract.md" \
    --prepare "rm -rf $out/x1 $out/x2; sync" \
    -n 'kbin download etcd --extract (cache hit: verify + extract)' "$kbin -q download etcd --extract $out/x1" \
    -n 'sha256sum + tar xzf' "sha256sum $blob >/dev/null && mkdir -p $out/x2 && tar xzf $blob -C $out/x2"

# full download of everything the cluster needs into an empty cache, vs curl of the same files
urls=$("$kbin" -q download --json | python3 -c 'import json,sys; print(" ".join(a["url"] for a in json.load(sys.stdin)))')
hyperfine --runs 5 --export-markdown "$out/download.md" \
    --prepare "rm -rf $KBIN_CACHE_DIR $out/curl; mkdir -p $out/curl" \
    -n 'kbin download (13 artifacts, -j4)' "$kbin -q download" \
    -n 'kbin download -j1' "$kbin -q download -j1" \
    -n 'curl to files, one after another' "cd $out/curl && for u in $urls; do curl -sfO \$u; done" \
    -n 'curl to files + sha256sum' "cd $out/curl && for u in $urls; do curl -sfO \$u; done && sha256sum * >/dev/null"
cat "$out/extract.md" "$out/download.md"
