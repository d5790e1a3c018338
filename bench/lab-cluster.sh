# Sourced by the lab benchmarks (after setting $repo, the checkout).

# bench_setup NAME: $kbin (built when missing), $lab, the lab's directory KBIN_LAB_DIR
# ($KBIN_LAB_DIR_BENCH, default /tmp/kbin-lab-bench-NAME) and a scratch directory $work.
bench_setup() {
  kbin=$repo/target/release/kbin
  [[ -x $kbin ]] || (cd "$repo" && cargo build --release --quiet) || exit 1
  lab=$repo/tests/lab/lab
  export KBIN_LAB_DIR=${KBIN_LAB_DIR_BENCH:-/tmp/kbin-lab-bench-$1}
  work=$(mktemp -d "/tmp/kbin-bench-$1.XXXXXX")
}

# The cluster file for one master (h1, also the etcd member) and N nodes (h2..) on the lab's
# hosts, with the lab's settings, and the lab's known_hosts beside it. Needs $mirror (the lab's
# mirror URL).
#   bench_cluster NAME N DIR [EXTRA_SSH_LINE]
bench_cluster() {
  local name=$1 n=$2 dir=$3 extra=${4:-} i
  cat >"$dir/cluster.toml" <<TOML
[cluster]
name = "$name"
kubernetes_version = "v1.37.2"
etcd_version = "v3.6.17"
flannel_version = "v0.28.11"

[ssh]
key = "$KBIN_LAB_DIR/ssh/id_ed25519"
connect_timeout_secs = 5
$extra

[artifacts]
mirror = "$mirror"

[kube_proxy.config]
conntrack = { maxPerCore = 0 }

[kubelet.config]
# the lab's hosts run cgroup v1 (the machine's memory controller is held by v1 hierarchies, see
# tests/lab/README.md): the kubelet of 1.35 and later starts there only with this, said knowingly
failCgroupV1 = false
evictionHard = { "nodefs.available" = "1%", "imagefs.available" = "1%", "nodefs.inodesFree" = "1%" }

[[hosts]]
name = "h1"
address = "10.213.0.11"
roles = ["etcd", "master"]
TOML
  for ((i = 2; i <= n + 1; i++)); do
    printf '\n[[hosts]]\nname = "h%d"\naddress = "10.213.0.%d"\nroles = ["node"]\n' "$i" $((10 + i)) >>"$dir/cluster.toml"
  done
  cp "$KBIN_LAB_DIR/ssh/known_hosts" "$dir/known_hosts"
}
