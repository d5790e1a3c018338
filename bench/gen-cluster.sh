#!/usr/bin/env bash
# Print examples/private-ha/cluster.toml with N extra worker hosts and the given key algorithm.
# usage: bench/gen-cluster.sh N ALGORITHM > cluster.toml
set -euo pipefail
n=${1:?number of extra workers} algo=${2:-ecdsa-p256}
here=$(cd "$(dirname "$0")/.." && pwd)
sed "s/^key_algorithm = .*/key_algorithm = \"$algo\"/" "$here/examples/private-ha/cluster.toml"
for i in $(seq 1 "$n"); do
  printf '\n[[hosts]]\nname = "extra%d"\naddress = "172.16.%d.%d"\nroles = ["node"]\n' "$i" $((30 + i / 200)) $((10 + i % 200))
done
