#!/usr/bin/env bash
# Benchmark for issue 4: push one file to N hosts with `kbin hosts push` against N sequential
# `scp` runs, then push it again unchanged.
#
# Setup (everything on this machine, nothing leaves it):
# - a network namespace of its own (kbin-bench-<pid>) whose loopback carries all traffic;
# - N sshd processes, host i on 127.0.0.(i+1):22, each with its own ed25519 host key and its own
#   mount namespace in which /srv/kbin-bench is a private tmpfs (so the N "hosts" really hold N
#   separate copies, as N machines would);
# - optionally RATE (e.g. RATE=200mbit): an htb class per host on the namespace's loopback limits
#   what is sent *to* each host's address, like N hosts each behind their own link;
# - kbin (release build) and scp/ssh (OpenSSH client) authenticate with the same ed25519 key and
#   verify host keys against the same known_hosts (recorded with `kbin hosts scan`).
#
# Usage: bench/hosts.sh            (N=10 SIZE_MB=100, no rate limit)
#        RATE=200mbit bench/hosts.sh
# Needs root, openssh-server, openssh-client, iproute2, util-linux.
set -euo pipefail

N=${N:-10}
SIZE_MB=${SIZE_MB:-100}
RATE=${RATE:-}
REPEAT=${REPEAT:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
KBIN=${KBIN:-$here/target/release/kbin}
[ -x "$KBIN" ] || { echo "build kbin first: cargo build --release (or set KBIN)" >&2; exit 1; }
[ -x /usr/sbin/sshd ] || { echo "needs /usr/sbin/sshd: apt-get install -y openssh-server" >&2; exit 1; }

work=$(mktemp -d /tmp/kbin-bench.XXXXXX)
ns=kbin-bench-$$
pids=()
cleanup() {
  # sshd's own pids (ip netns exec forks, so $! is not sshd)
  for f in "$work"/h*/sshd.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p /run/sshd /srv/kbin-bench
ip netns add "$ns"
in_ns() { ip netns exec "$ns" "$@"; }
in_ns ip link set lo up

if [ -n "$RATE" ]; then
  in_ns tc qdisc add dev lo root handle 1: htb default 99 r2q 1000
  in_ns tc class add dev lo parent 1: classid 1:99 htb rate 100gbit
  for i in $(seq 1 "$N"); do
    in_ns tc class add dev lo parent 1: classid 1:$((i + 10)) htb rate "$RATE"
    in_ns tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip dst 127.0.0.$((i + 1))/32 flowid 1:$((i + 10))
  done
fi

ssh-keygen -q -t ed25519 -N '' -C kbin-bench -f "$work/id"
cat > "$work/cluster.toml" <<EOF
[cluster]
name = "bench"
[apiserver]
port = 6443
[ssh]
user = "root"
key = "$work/id"
concurrency = $N
EOF
for i in $(seq 1 "$N"); do
  addr=127.0.0.$((i + 1))
  d=$work/h$i
  mkdir -p "$d"
  ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
  cat > "$d/sshd_config" <<EOF
Port 22
ListenAddress $addr
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $work/id.pub
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
Subsystem sftp /usr/lib/openssh/sftp-server
MaxStartups 100
LogLevel ERROR
EOF
  in_ns unshare -m --propagation private sh -c \
    "mount -t tmpfs -o size=$((SIZE_MB * 3))m kbin-bench /srv/kbin-bench && exec /usr/sbin/sshd -D -e -f $d/sshd_config" \
    </dev/null >/dev/null 2>"$d/sshd.log" &
  pids+=($!)
  roles='["node"]'
  [ "$i" = 1 ] && roles='["master", "etcd", "node"]'
  printf '[[hosts]]\nname = "h%s"\naddress = "%s"\nroles = %s\n' "$i" "$addr" "$roles" >> "$work/cluster.toml"
done
for i in $(seq 1 "$N"); do
  for _ in $(seq 1 100); do
    in_ns bash -c "exec 3<>/dev/tcp/127.0.0.$((i + 1))/22" 2>/dev/null && break
    sleep 0.05
  done
done

kbin() { in_ns env HOME="$work" NO_COLOR=1 "$KBIN" -c "$work/cluster.toml" "$@"; }
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l | xargs printf '%.2f'; }

kbin -q hosts scan >/dev/null
head -c "${SIZE_MB}M" /dev/urandom > "$work/payload"
sum=$(sha256sum < "$work/payload" | cut -d' ' -f1)

echo "setup: $N sshd hosts on 127.0.0.2-$((N + 1)) in netns $ns, ${SIZE_MB} MB payload, rate limit per host: ${RATE:-none}"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(ssh -V 2>&1)"

t0=$(now)
for i in $(seq 1 "$N"); do
  in_ns scp -q -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$work/known_hosts" -i "$work/id" \
    "$work/payload" "root@127.0.0.$((i + 1)):/srv/kbin-bench/scp-payload"
done
t1=$(now)
scp_s=$(secs "$t0" "$t1")
echo "sequential scp to $N hosts:          ${scp_s}s"

t0=$(now)
kbin -q hosts push "$work/payload" /srv/kbin-bench/payload --mode 755 > "$work/push1.txt"
t1=$(now)
push_s=$(secs "$t0" "$t1")
changed=$(grep -c 'changed' "$work/push1.txt" || true)
echo "kbin hosts push to $N hosts:          ${push_s}s ($changed hosts changed)"

for r in $(seq 1 "$REPEAT"); do
  t0=$(now)
  in_ns env HOME="$work" /usr/bin/time -f '%U %S' -o "$work/cpu" "$KBIN" -q -c "$work/cluster.toml" hosts push "$work/payload" /srv/kbin-bench/payload --mode 755 --json > "$work/push2.json"
  t1=$(now)
  sent=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(x["bytes_sent"] for x in r), sum(x["changed"] for x in r))' "$work/push2.json")
  echo "kbin unchanged re-push (run $r):      $(secs "$t0" "$t1")s (kbin's own CPU: $(awk '{print $1 + $2}' "$work/cpu")s; bytes sent, hosts changed: $sent)"
done

# the same with a 1 KB file: what connecting and checking costs without the hashing of 100 MB
head -c 1024 /dev/urandom > "$work/small"
kbin -q hosts push "$work/small" /srv/kbin-bench/small > /dev/null
t0=$(now)
kbin -q hosts push "$work/small" /srv/kbin-bench/small > /dev/null
t1=$(now)
echo "kbin unchanged re-push, 1 KB file:    $(secs "$t0" "$t1")s"
t0=$(now)
for i in $(seq 1 "$N"); do openssl dgst -sha256 < "$work/payload" > /dev/null; done
t1=$(now)
echo "(for scale: openssl sha256 of the payload $N times here: $(secs "$t0" "$t1")s)"
t0=$(now)
sshs=()
for i in $(seq 1 "$N"); do
  in_ns ssh -o BatchMode=yes -o UserKnownHostsFile="$work/known_hosts" -i "$work/id" "root@127.0.0.$((i + 1))" true &
  sshs+=($!)
done
wait "${sshs[@]}"
t1=$(now)
echo "(for scale: $N parallel OpenSSH 'ssh host true': $(secs "$t0" "$t1")s; load average $(cut -d' ' -f1 /proc/loadavg))"

# every host really holds the file (checked with ssh, not kbin)
for i in $(seq 1 "$N"); do
  got=$(in_ns ssh -o BatchMode=yes -o UserKnownHostsFile="$work/known_hosts" -i "$work/id" "root@127.0.0.$((i + 1))" \
    'sha256sum < /srv/kbin-bench/payload; stat -c %a /srv/kbin-bench/payload' | tr '\n' ' ')
  case "$got" in
    "$sum  - 755 ") ;;
    *) echo "host $i holds the wrong file: $got" >&2; exit 1 ;;
  esac
done
echo "verified: all $N hosts hold the payload (sha256 $sum, mode 755)"
echo "speed-up kbin vs sequential scp:     $(echo "$scp_s / $push_s" | bc -l | xargs printf '%.1f')x"
