#!/usr/bin/env bash
# End-to-end check of the lab itself: three hosts boot with systemd as PID 1 and sshd, take the
# lab key as root and as the sudo user with strict host key checking, reach each other, download
# etcd from the mirror, run etcd as a Type=notify unit, can be firewalled, killed and booted
# again; and `lab down` leaves nothing behind.
#
# usage: tests/lab/smoke.sh   (as root; KBIN_LAB_DIR defaults to /tmp/kbin-lab-smoke, so a lab of
#                              your own in the default directory is left alone)
# KBIN_LAB_KEEP=1 keeps the lab after a failure for a look (`tests/lab/lab down` removes it).
set -euo pipefail

here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
lab=$here/lab
export KBIN_LAB_DIR=${KBIN_LAB_DIR:-/tmp/kbin-lab-smoke}
if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=python3; fi

current="setting up"
step() {
    current=$*
    printf '\n== %s\n' "$*" >&2
}
fail() {
    printf 'smoke: FAIL: %s: %s\n' "$current" "$*" >&2
    exit 1
}
ok() { printf 'ok: %s\n' "$*" >&2; }

cleanup() {
    local rc=$?
    trap - EXIT
    if ((rc != 0)); then
        printf '\nsmoke: FAILED at step "%s" (exit %d)\n' "$current" "$rc" >&2
        if [[ ${KBIN_LAB_KEEP:-0} == 1 ]]; then
            printf 'smoke: lab kept at %s (KBIN_LAB_KEEP=1); remove it with: KBIN_LAB_DIR=%s %s down\n' \
                "$KBIN_LAB_DIR" "$KBIN_LAB_DIR" "$lab" >&2
            exit "$rc"
        fi
    fi
    "$lab" down >/dev/null 2>&1 || printf 'smoke: lab down failed during cleanup\n' >&2
    exit "$rc"
}
trap cleanup EXIT

secs() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
elapsed() { local ms=$(($(secs) - $1)); printf '%d.%02d s' $((ms / 1000)) $((ms % 1000 / 10)); }

# Reads the inventory with a Python expression over `inv`.
inv() { "$PY" -c "import json, sys; inv = json.load(open(sys.argv[1])); print($1)" "$KBIN_LAB_INVENTORY"; }

# ssh exactly as a client that knows nothing but the lab's key and known_hosts (kbin's case).
# usage: ssh_to USER ADDRESS CMD...
ssh_to() {
    local user=$1 addr=$2
    shift 2
    "$lab" op -- ssh -i "$KBIN_LAB_SSH_KEY" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$KBIN_LAB_KNOWN_HOSTS" \
        -o ConnectTimeout="${SSH_TIMEOUT:-5}" -o LogLevel=ERROR -l "$user" "$addr" "$@"
}

[[ $EUID -eq 0 ]] || { echo "smoke: run as root" >&2; exit 1; }

step "a clean start"
"$lab" down 2>/dev/null

step "lab up 3"
t0=$(secs)
"$lab" up 3
up_time=$(elapsed "$t0")
eval "$("$lab" env)"
hosts=(h1 h2 h3)
[[ $(inv 'len(inv["hosts"])') == 3 ]] || fail "inventory does not list 3 hosts"
declare -A addr
for h in "${hosts[@]}"; do
    addr[$h]=$(inv "[x['address'] for x in inv['hosts'] if x['name'] == '$h'][0]")
    [[ ${addr[$h]} == "$("$lab" addr "$h")" ]] || fail "lab addr $h disagrees with the inventory"
done
ok "3 hosts up in $up_time: ${addr[h1]} ${addr[h2]} ${addr[h3]}"
"$lab" status >/dev/null || fail "lab status reports a host whose sshd does not answer"

step "the mirror"
t0=$(secs)
line=$("$lab" mirror)
mirror_time=$(elapsed "$t0")
read -r etcd_sha etcd_url <<<"$line"
# the first line is the default etcd release's tarball
[[ $etcd_sha =~ ^[0-9a-f]{64}$ && $etcd_url == "$KBIN_LAB_MIRROR_URL"/*/etcd-v*-linux-amd64.tar.gz ]] ||
    fail "lab mirror printed '$line', not 'SHA256  URL'"
[[ $(inv "inv['mirror']['files']['${etcd_url#"$KBIN_LAB_MIRROR_URL"/}']") == "$etcd_sha" ]] ||
    fail "the inventory does not list the etcd tarball with its sha256"
"$lab" mirror >/dev/null || fail "a second lab mirror failed"
ok "etcd tarball $etcd_sha at $etcd_url ($mirror_time)"

step "ssh as root and as the sudo user, strict host key checking"
for h in "${hosts[@]}"; do
    a=${addr[$h]}
    out=$(ssh_to root "$a" 'cat /proc/1/comm; hostname; id -u') || fail "$h: ssh root@$a failed"
    [[ $out == $'systemd\n'"$h"$'\n0' ]] || fail "$h: expected PID 1 systemd, hostname $h, uid 0; got: $out"
    state=$(ssh_to root "$a" systemctl is-system-running) || true
    [[ $state == running || $state == degraded ]] ||
        fail "$h: systemctl is-system-running says '$state'; failed units: $(ssh_to root "$a" systemctl --failed --no-legend || true)"
    out=$(ssh_to kbin "$a" 'id -un; sudo -n id -u') || fail "$h: ssh kbin@$a or its sudo failed"
    [[ $out == $'kbin\n0' ]] || fail "$h: expected kbin with passwordless sudo; got: $out"
    ok "$h: PID 1 is systemd, system $state, root and kbin (sudo) log in with the lab key"
done
# The host keys are really checked: an empty known_hosts is refused.
empty_known_hosts=$(mktemp)
if "$lab" op -- ssh -i "$KBIN_LAB_SSH_KEY" -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$empty_known_hosts" -o LogLevel=ERROR "root@${addr[h1]}" true 2>/dev/null; then
    rm -f "$empty_known_hosts"
    fail "ssh with an empty known_hosts and StrictHostKeyChecking=yes was let in"
fi
rm -f "$empty_known_hosts"
ok "an unknown host key is refused"
out=$("$lab" exec h3 -- cat /proc/1/comm) || fail "lab exec h3 failed"
[[ $out == systemd ]] || fail "lab exec h3: PID 1 is '$out'"
ok "lab exec runs commands inside a host"

step "the image: nginx (stream) and keepalived installed, left for kbin to start"
out=$(ssh_to root "${addr[h1]}" 'systemctl is-enabled nginx keepalived; test -e /usr/lib/nginx/modules/ngx_stream_module.so && echo stream') || true
[[ $out == $'disabled\ndisabled\nstream' ]] || fail "expected nginx and keepalived disabled and the stream module; got: $out"
ok "nginx + stream module and keepalived are there, disabled"

step "hosts reach each other by name"
for h in "${hosts[@]}"; do
    for peer in "${hosts[@]}"; do
        [[ $h == "$peer" ]] && continue
        ssh_to root "${addr[$h]}" ping -c1 -W2 "$peer" >/dev/null || fail "$h cannot ping $peer"
    done
    ssh_to root "${addr[$h]}" ping -c1 -W2 operator >/dev/null || fail "$h cannot ping the operator"
done
ok "every host pings every other host and the operator"

step "download etcd from the mirror inside h2"
got=$(ssh_to root "${addr[h2]}" "curl -fsS -o /tmp/etcd.tar.gz '$etcd_url' && sha256sum /tmp/etcd.tar.gz") ||
    fail "curl $etcd_url from h2 failed"
[[ ${got%% *} == "$etcd_sha" ]] || fail "h2 got sha256 ${got%% *}, the mirror printed $etcd_sha"
ok "h2 downloaded the tarball, sha256 matches"

step "lab mirror add serves more files"
extra=$(mktemp)
echo "stand-in $RANDOM" >"$extra"
line=$("$lab" mirror add "$extra" smoke/v0/stand-in)
rm -f "$extra"
read -r extra_sha extra_url <<<"$line"
[[ $extra_url == "$KBIN_LAB_MIRROR_URL/smoke/v0/stand-in" ]] || fail "lab mirror add printed '$line'"
got=$(ssh_to root "${addr[h3]}" "curl -fsS '$extra_url' | sha256sum") || fail "curl $extra_url from h3 failed"
[[ ${got%% *} == "$extra_sha" ]] || fail "h3 got sha256 ${got%% *} for $extra_url, expected $extra_sha"
ok "a file added with lab mirror add is served at $extra_url"

step "etcd as a Type=notify unit in h1"
ssh_to root "${addr[h1]}" "set -e
    curl -fsS -o /tmp/etcd.tar.gz '$etcd_url'
    tar -C /tmp -xzf /tmp/etcd.tar.gz
    install -m 755 /tmp/etcd-v*-linux-amd64/etcd /tmp/etcd-v*-linux-amd64/etcdctl /usr/local/bin/
    timeout 60 systemd-run --unit=etcd-smoke --property=Type=notify --property=TimeoutStartSec=50 \
        /usr/local/bin/etcd --name h1 --data-dir /var/lib/etcd-smoke \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379" ||
    fail "etcd did not start as a Type=notify unit; journal: $(ssh_to root "${addr[h1]}" journalctl -u etcd-smoke -n 20 --no-pager || true)"
[[ $(ssh_to root "${addr[h1]}" systemctl is-active etcd-smoke) == active ]] || fail "etcd-smoke is not active"
health=$(ssh_to root "${addr[h1]}" curl -fsS http://127.0.0.1:2379/health) || fail "etcd /health did not answer"
[[ $health == *'"health":"true"'* ]] || fail "etcd /health says $health"
# shellcheck disable=SC2016 # expanded on the host
ssh_to root "${addr[h1]}" 'etcdctl put smoke ok >/dev/null && test "$(etcdctl get --print-value-only smoke)" = ok' ||
    fail "etcdctl put/get failed"
ok "etcd $etcd_url runs as Type=notify, /health: $health"

step "lab block / unblock"
"$lab" block h3 22
if SSH_TIMEOUT=2 ssh_to root "${addr[h3]}" true 2>/dev/null; then fail "ssh to h3 got through a blocked port 22"; fi
"$lab" unblock h3 22
ssh_to root "${addr[h3]}" true || fail "ssh to h3 fails after unblock"
ok "port 22 on h3 blocked and unblocked"

step "lab stop h2 kills it like a power cut"
ssh_to root "${addr[h2]}" 'echo kept >/var/lib/smoke-marker'
npid=$(inv "[x['nspawn_pid'] for x in inv['hosts'] if x['name'] == 'h2'][0]")
lpid=$(inv "[x['leader_pid'] for x in inv['hosts'] if x['name'] == 'h2'][0]")
ns2=$(inv "[x['netns'] for x in inv['hosts'] if x['name'] == 'h2'][0]")
t0=$(secs)
"$lab" stop h2
stop_time=$(elapsed "$t0")
for pid in "$npid" "$lpid"; do
    if [[ -e /proc/$pid ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
        fail "pid $pid of h2 is still alive"
    fi
done
! ip netns list | grep -qw "$ns2" || fail "network namespace $ns2 still exists"
if ssh_to root "${addr[h1]}" ping -c1 -W1 h2 >/dev/null 2>&1; then fail "h1 can still ping h2"; fi
if SSH_TIMEOUT=2 ssh_to root "${addr[h2]}" true 2>/dev/null; then fail "ssh to the stopped h2 succeeded"; fi
[[ $(inv "[x['state'] for x in inv['hosts'] if x['name'] == 'h2'][0]") == stopped ]] ||
    fail "the inventory does not say h2 is stopped"
for h in h1 h3; do ssh_to root "${addr[$h]}" true || fail "$h died with h2"; done
ok "h2 is gone (in $stop_time); h1 and h3 still answer"

step "lab up h2 boots it again with its disk"
"$lab" up h2
[[ $(ssh_to root "${addr[h2]}" cat /var/lib/smoke-marker) == kept ]] || fail "h2 lost its disk"
ok "h2 is back with what was written before the stop"

step "lab down leaves nothing"
name=$(inv "inv['name']")
mapfile -t pids < <(inv "'\n'.join(str(p) for x in inv['hosts'] for p in (x['nspawn_pid'], x['leader_pid']) if p)")
mpid=$(inv "inv['mirror']['pid'] or ''")
t0=$(secs)
"$lab" down
down_time=$(elapsed "$t0")
left=$(ip netns list | awk -v p="$name-" 'index($1, p) == 1 {print $1}')
[[ -z $left ]] || fail "network namespaces left: $left"
! grep -qF " $KBIN_LAB_DIR/" /proc/self/mountinfo || fail "mounts left under $KBIN_LAB_DIR"
for pid in "${pids[@]}" $mpid; do
    if [[ -e /proc/$pid ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
        fail "pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline")) is still alive"
    fi
done
! pgrep -f "systemd-nspawn .*$KBIN_LAB_DIR/" >/dev/null || fail "systemd-nspawn processes left"
[[ ! -e $KBIN_LAB_DIR ]] || fail "$KBIN_LAB_DIR is still there"
"$lab" down 2>/dev/null || fail "a second lab down failed"
ok "no namespaces, mounts, processes or lab directory left (down in $down_time)"

printf '\nsmoke: PASS (up 3: %s, mirror: %s, stop: %s, down: %s)\n' "$up_time" "$mirror_time" "$stop_time" "$down_time" >&2
