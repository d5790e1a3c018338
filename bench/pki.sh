#!/usr/bin/env bash
# `kbin pki init` for examples/private-ha plus N extra workers, against the same certificate set
# made with cfssl (bench/cfssl-pki.sh). Needs hyperfine and golang-cfssl.
# usage: bench/pki.sh [N] [RUNS]
set -euo pipefail
n=${1:-50} runs=${2:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
kbin=$here/target/release/kbin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for algo in ecdsa-p256 rsa-2048; do
  mkdir -p "$work/$algo"
  "$here/bench/gen-cluster.sh" "$n" "$algo" > "$work/$algo/cluster.toml"
  r=$runs; [ "$algo" = rsa-2048 ] && r=$(( runs < 3 ? runs : 3 ))
  hyperfine --style basic --runs "$r" --export-markdown "$work/$algo.md" \
    --prepare "rm -rf $work/$algo/pki $work/cfssl-$algo" \
    -n "kbin pki init ($algo)" "$kbin -q -c $work/$algo/cluster.toml pki init" \
    -n "cfssl ($algo)" "$here/bench/cfssl-pki.sh $n $algo $work/cfssl-$algo"
  rm -rf "$work/$algo/pki" && "$kbin" -q -c "$work/$algo/cluster.toml" pki init
  echo "certificates: kbin $(find "$work/$algo/pki" -name '*.crt' | wc -l) (+ sa key pair), cfssl $(ls "$work/cfssl-$algo"/*.pem | grep -vc -- '-key.pem') (sa made as a CA)"
done
cat "$work"/*.md
