#!/usr/bin/env bash
# End-to-end: relay distribution (issue 17) on real hosts (systemd, sshd, OpenSSH's client tools):
# a large file leaves the operator once and the hosts pass it on to each other.
#
# Scenario: ten lab hosts; the operator's side of the lab bridge shaped to 100 Mbit/s (`tc tbf`
# on br0 in the operator's namespace: only what the operator sends; host-to-host traffic is
# bridged past it) -> `hosts push --direct` of a 100 MB file, then the same push relayed: the relay
# is >= 5x faster and the operator sends <= 1.2x the file (counted on br0) -> every host holds the
# right bytes, no relay store or authorization is left behind -> an unchanged re-run sends nothing
# -> a host that serves corrupted bytes to its peers (a `cat` that flips bytes of relay blobs):
# its peers refuse them and get the file from the operator; no host installs them.
# With RELAY_SCALE=1 also the scale figures: relayed pushes to 10, 25 and 50 hosts, unshaped.
# Each check prints "ok - ..." or "FAIL - ..."; `bench:` lines carry the figures of BENCHMARKS.md.
# usage: tests/lab/e2e-relay.sh [path/to/kbin]   (default: target/release/kbin, built if missing)
set -uo pipefail
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
repo=$(cd "$here/../.." && pwd)
kbin=${1:-$repo/target/release/kbin}
[[ -x $kbin ]] || (cd "$repo" && cargo build --release --quiet) || exit 1

export KBIN_LAB_DIR=${KBIN_LAB_DIR_E2E_RELAY:-/tmp/kbin-lab-e2e-relay}
lab=$here/lab
work=$(mktemp -d /tmp/kbin-e2e-relay.XXXXXX)
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"
finish() {
  "$lab" op -- tc qdisc del dev br0 root >/dev/null 2>&1 || true
  "$lab" down >/dev/null 2>&1 || true
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
  suite_verdict e2e-relay
}
trap 'finish; exit $?' EXIT

ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
k() { "$lab" op -- env NO_COLOR=1 "$kbin" -c "$work/cluster.toml" "$@"; }
tx() { "$lab" op -- cat /sys/class/net/br0/statistics/tx_bytes; }
size=$((100 * 1024 * 1024))

# cluster N: a cluster file with hosts h1..hN (the lab's addresses), and their host keys
cluster() {
  local i
  {
    printf '[cluster]\nname = "e2e-relay"\n\n[ssh]\nkey = "%s"\nconnect_timeout_secs = 5\nconcurrency = 16\n' "$KBIN_LAB_DIR/ssh/id_ed25519"
    # every host takes the file; roles only make the file a valid cluster
    printf '\n[[hosts]]\nname = "h1"\naddress = "10.213.0.11"\nroles = ["etcd", "master"]\n'
    for ((i = 2; i <= $1; i++)); do
      printf '\n[[hosts]]\nname = "h%d"\naddress = "10.213.0.%d"\nroles = ["node"]\n' "$i" $((10 + i))
    done
  } >"$work/cluster.toml"
  cp "$KBIN_LAB_DIR/ssh/known_hosts" "$work/known_hosts"
}
# every host h1..hN holds the file with the right digest
all_hold() {
  local i want
  want=$(sha256sum "$work/big" | cut -d' ' -f1)
  for ((i = 1; i <= $1; i++)); do
    [[ $("$lab" exec "h$i" -- sha256sum /var/tmp/big 2>/dev/null | cut -d' ' -f1) == "$want" ]] || { echo "h$i does not hold the file" >&2; return 1; }
  done
}
nothing_left() {
  local i
  for ((i = 1; i <= $1; i++)); do
    "$lab" exec "h$i" -- sh -c '[ ! -e /var/lib/kbin/blobs ] && [ ! -e /var/lib/kbin/relay ] && ! grep -q kbin-relay /root/.ssh/authorized_keys' || { echo "h$i kept relay state" >&2; return 1; }
  done
}
wipe() { local i; for ((i = 1; i <= $1; i++)); do "$lab" exec "h$i" -- rm -f /var/tmp/big; done; }

head -c "$size" /dev/urandom >"$work/big"
"$lab" down >/dev/null 2>&1 || true
"$lab" up 10 >/dev/null || { fail "lab up 10"; exit 1; }
cluster 10

# --- shaped to 100 Mbit/s: direct, then relayed -------------------------------------------------
"$lab" op -- tc qdisc add dev br0 root tbf rate 100mbit burst 256kb latency 100ms
check "the operator's side of the bridge is shaped to 100 Mbit/s" bash -c "\"$lab\" op -- tc qdisc show dev br0 | grep -q 'tbf.*rate 100Mbit'"
b0=$(tx) t0=$(ms)
k hosts push --direct "$work/big" /var/tmp/big >"$work/direct.out" 2>&1
rc=$? t_direct=$(($(ms) - t0)) b_direct=$(($(tx) - b0))
check "hosts push --direct of 100 MB to 10 hosts exits 0 ($t_direct ms, $b_direct bytes from the operator)" test $rc -eq 0
check "... every host holds the file" all_hold 10
wipe 10
b0=$(tx) t0=$(ms)
k hosts push --json "$work/big" /var/tmp/big >"$work/relay.json" 2>"$work/relay.err"
rc=$? t_relay=$(($(ms) - t0)) b_relay=$(($(tx) - b0))
check "hosts push (relay) of 100 MB to 10 hosts exits 0 ($t_relay ms, $b_relay bytes from the operator)" test $rc -eq 0
[[ $rc -eq 0 ]] || tail -n 20 "$work/relay.err"
check "... every host holds the file, verified" all_hold 10
link=$(sed -n 's/^\[relay\] .*(operator link \([0-9.]*\) MB\/s)$/\1/p' "$work/relay.err" | head -1)
check "... the slow link was measured (${link:-?} MB/s) and chose the relay" awk -v l="${link:-99999}" 'BEGIN {exit !(l < 25)}'

check "... the file left the operator once, then went host to host (progress names each path)" bash -c "[ \$(grep -c '^\\[relay\\] h[0-9]*: big from the operator' '$work/relay.err') -eq 1 ] && [ \$(grep -c '^\[relay\] h[0-9]*: big from h' '$work/relay.err') -eq 9 ]"
echo "bench: 100 MB to 10 hosts at 100 Mbit/s: direct $t_direct ms, $b_direct bytes; relay $t_relay ms, $b_relay bytes"
check "relay is >= 5x faster than direct ($t_direct ms vs $t_relay ms)" test $((t_relay * 5)) -le "$t_direct"
check "the operator sent the file once: >= 1x, <= 1.2x ($b_relay bytes for $size)" bash -c "[ $((b_relay)) -ge $size ] && [ $((b_relay * 10)) -le $((size * 12)) ]"
check "no relay store, key or authorization is left on any host" nothing_left 10
b0=$(tx) t0=$(ms)
k hosts push "$work/big" /var/tmp/big >"$work/again.out" 2>&1
rc=$? t_again=$(($(ms) - t0)) b_again=$(($(tx) - b0))
check "an unchanged re-run exits 0 and sends nothing ($b_again bytes on the wire, $t_again ms)" bash -c "[ $rc -eq 0 ] && [ $b_again -lt 2000000 ] && ! grep -q 'from the operator' '$work/again.out'"
"$lab" op -- tc qdisc del dev br0 root

# --- unshaped: every mode delivers; the default goes direct ---------------------------------------
# by default kbin measures the link and, this fast, sends directly; --relay forces the relay
# the better of two runs each: the 2-core machine runs every host, so one run is noisy
best() { # FLAG...: "best-time rc" of two pushes
  local i t b=999999999 rc_best=0
  for i in 1 2; do
    wipe 10
    t=$(ms)
    k hosts push "$@" "$work/big" /var/tmp/big >/dev/null 2>&1 || rc_best=1
    t=$(($(ms) - t))
    ((t < b)) && b=$t
  done
  echo "$b $rc_best"
}
read -r t_d rc_d < <(best --direct)
read -r t_r rc_r < <(best)
read -r t_f rc_f < <(best --relay)
echo "bench: 100 MB to 10 hosts unshaped: direct $t_d ms, default $t_r ms, --relay $t_f ms"
wipe 10
k hosts push "$work/big" /var/tmp/big >"$work/fast.out" 2>&1
rc=$?
check "unshaped, the default measures the fast link and sends directly" bash -c "[ $rc -eq 0 ] && grep -q '^\[relay\] the link from here carries .* MB/s to 4 hosts at once: every file goes directly' '$work/fast.out' && ! grep -q 'from the operator (' '$work/fast.out'"
# every run is bound by this machine's two cores, which every host shares: the times are figures
# (the bench: line above, BENCHMARKS.md, bench/relay-up.sh), not a gate. A timing comparison on
# a shared 2-core machine failed a fresh-machine CI run alone (default 6288 ms against direct
# 4564 ms, issue 28); what the gate keeps is functional: every mode delivers, and the default
# measured the fast link and went direct (the check above)
unshaped_ok() { [[ $rc_d -eq 0 && $rc_r -eq 0 && $rc_f -eq 0 ]] && all_hold 10; }
check "unshaped, --direct, the default and --relay each deliver the file to every host (direct $t_d ms, default $t_r ms, --relay $t_f ms)" unshaped_ok

# --- a host that serves corrupted bytes ---------------------------------------------------------
wipe 10
# h1 (the first host: the seed) hands out blobs with bytes flipped
"$lab" exec h1 -- sh -c 'printf "%s\n" "#!/bin/sh" "case \"\$*\" in *\"/var/lib/kbin/blobs/\"*) /bin/cat \"\$@\" | tr a-m n-z; exit 0 ;; esac" "exec /bin/cat \"\$@\"" >/usr/local/bin/cat && chmod 755 /usr/local/bin/cat'
k hosts push --relay "$work/big" /var/tmp/big >"$work/bad.out" 2>&1
rc=$?
"$lab" exec h1 -- rm -f /usr/local/bin/cat
check "with h1 serving corrupted bytes the push still exits 0" test $rc -eq 0
check "... its peers refused what h1 served and got the file from the operator" bash -c "grep -q 'from h1: received .* bytes with sha256 .*; refused, from the operator instead' '$work/bad.out'"
check "... no host installed corrupted bytes: every host holds the right file" all_hold 10
check "... h1 served no one twice" bash -c "[ \$(grep -c 'from h1:' '$work/bad.out') -eq 1 ]"

# --- scale: 10, 25, 50 hosts (RELAY_SCALE=1) ----------------------------------------------------
# the machine's CPU time in use (user, nice, system, irq, softirq; 1/100 s), all hosts together
busy() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
if [[ -n ${RELAY_SCALE:-} ]]; then
  for n in 10 25 50; do
    "$lab" down >/dev/null 2>&1
    "$lab" up "$n" >/dev/null || { fail "lab up $n"; continue; }
    cluster "$n"
    t0=$(ms)
    k hosts check >/dev/null 2>&1
    t_check=$(($(ms) - t0))
    b0=$(tx) c0=$(busy) t0=$(ms)
    # (the subshell's `times`: the CPU its children used, kbin's own included)
    op_cpu=$( (k hosts push --relay "$work/big" /var/tmp/big >"$work/scale-$n.out" 2>&1; echo "rc=$?" >"$work/scale-$n.rc"; times) | tail -n 1)
    rc=$(sed 's/rc=//' "$work/scale-$n.rc") t_push=$(($(ms) - t0)) c_push=$(($(busy) - c0)) b_push=$(($(tx) - b0))
    echo "bench: scale $n hosts: hosts check $t_check ms; hosts push 100 MB (relay) $t_push ms, $b_push bytes from the operator; CPU busy on this machine $((c_push / 100)).$((c_push % 100 / 10)) s (every host and the operator), the operator's own (user, system): $op_cpu"
    check "relayed push to $n hosts exits 0 and every host holds the file" bash -c "[ $rc -eq 0 ] && $(declare -f all_hold); lab='$lab' work='$work' all_hold $n"
  done
fi
suite_end
