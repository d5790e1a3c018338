#!/usr/bin/env bash
# Benchmark for issue 3 (artifacts): what verifying by SHA-512 costs next to SHA-256. Everything
# stays on this machine: a loopback HTTP mirror (bench/serve.py on 127.0.0.1) and files generated
# under bench/out/sha512/ (git-ignored).
#
#   bash bench/artifacts-sha512.sh      # build --release, generate data, run hyperfine
#
# One ~100 MB release-shaped kubernetes-server tarball, pinned by its SHA-256 in one cluster's
# kbin.lock and by its SHA-512 in another's:
# 1. `kbin download kubernetes-server` into an empty cache: SHA-256 alone while streaming, against
#    SHA-512 + SHA-256 in the same pass (the SHA-256 is the file's address in the cache);
# 2. the same on a cache hit: the cached file re-hashed with SHA-256, or with SHA-512;
# 3. for scale, sha256sum / sha512sum / openssl dgst of the same file.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out="$repo/bench/out/sha512"
kbin="$repo/target/release/kbin"
port=${PORT:-18734}

command -v hyperfine >/dev/null || { echo "hyperfine is needed (apt-get install hyperfine)" >&2; exit 1; }
(cd "$repo" && cargo build --release --quiet)

rm -rf "$out"
mkdir -p "$out/mirror" "$out/stage/kubernetes/server/bin"
export NO_COLOR=1
v=v9.9.9
for f in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
    head -c 25M /dev/urandom > "$out/stage/kubernetes/server/bin/$f"
done
mkdir -p "$out/mirror/kubernetes-server/$v"
tgz="$out/mirror/kubernetes-server/$v/kubernetes-server-linux-amd64.tar.gz"
tar -C "$out/stage" -czf "$tgz" kubernetes
ls -l "$tgz"

for algo in 256 512; do
    mkdir -p "$out/c$algo"
    cat > "$out/c$algo/cluster.toml" <<TOML
[cluster]
name = "bench"
kubernetes_version = "$v"

[artifacts]
mirror = "http://127.0.0.1:$port"

[[hosts]]
name = "h1"
address = "10.213.0.11"
roles = ["etcd", "master", "node"]
TOML
    "$kbin" -q -c "$out/c$algo/cluster.toml" pin kubernetes-server "$v" "$("sha${algo}sum" "$tgz" | cut -d' ' -f1)"
done

python3 "$here/serve.py" "$port" "$out/mirror" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

dl() { # ALGO: the download command of the cluster that pins by that algorithm
    echo "KBIN_CACHE_DIR=$out/cache$1 $kbin -q -c $out/c$1/cluster.toml download kubernetes-server"
}
hyperfine --warmup 1 --runs 10 --export-markdown "$out/download.md" \
    --prepare "rm -rf $out/cache256 $out/cache512" \
    -n 'download, pinned by sha256 (sha256 while streaming)' "$(dl 256)" \
    -n 'download, pinned by sha512 (sha512 + sha256 in one pass)' "$(dl 512)"
hyperfine --warmup 1 --runs 10 --export-markdown "$out/hit.md" \
    -n 'cache hit, pinned by sha256 (re-hash sha256)' "$(dl 256)" \
    -n 'cache hit, pinned by sha512 (re-hash sha512)' "$(dl 512)"
hyperfine --warmup 1 --runs 10 --export-markdown "$out/tools.md" \
    "sha256sum $tgz" "sha512sum $tgz" "openssl dgst -sha256 $tgz" "openssl dgst -sha512 $tgz"
cat "$out/download.md" "$out/hit.md" "$out/tools.md"
