#!/usr/bin/env bash
# What CI runs for the lab: the machine packages, the host image, then the smoke test.
# Needs root on Debian bookworm (systemd need not be running as init) with the Debian mirror and
# the Go module proxy reachable, and Go (/usr/local/go/bin) for the etcd build. The image and the
# etcd tarballs are cached in $KBIN_LAB_CACHE (/var/cache/kbin-lab); keep that directory between
# CI runs to skip the image and etcd builds.
set -euo pipefail

here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
[[ $EUID -eq 0 ]] || { echo "ci.sh: run as root" >&2; exit 1; }

ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
took() { local d=$(($(ms) - $1)); printf '%d.%02d s' $((d / 1000)) $((d % 1000 / 10)); }

t=$(ms)
echo "== lab deps" >&2
"$here/lab" deps
deps_time=$(took "$t")

t=$(ms)
echo "== lab image" >&2
"$here/lab" image >/dev/null
image_time=$(took "$t")

t=$(ms)
echo "== smoke" >&2
"$here/smoke.sh"
smoke_time=$(took "$t")

printf 'ci.sh: lab OK (deps %s, image %s, smoke %s)\n' "$deps_time" "$image_time" "$smoke_time" >&2
