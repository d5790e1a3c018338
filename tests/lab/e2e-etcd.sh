#!/usr/bin/env bash
# End-to-end: kbin etcd on real lab hosts (systemd, sshd, etcd v3.6.17 built from its Go modules served
# from the lab mirror). Each check prints "ok - ..." or "FAIL - ..."; the last line counts them.
# usage: tests/lab/e2e-etcd.sh [path/to/kbin]   (default: target/release/kbin, built if missing)
set -uo pipefail
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
repo=$(cd "$here/../.." && pwd)
kbin=${1:-$repo/target/release/kbin}
[[ -x $kbin ]] || (cd "$repo" && cargo build --release --quiet) || exit 1

export KBIN_LAB_DIR=${KBIN_LAB_DIR_E2E:-/tmp/kbin-lab-e2e-etcd}
lab=$here/lab
work=$(mktemp -d /tmp/kbin-e2e-etcd.XXXXXX)
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"
finish() {
  "$lab" down >/dev/null 2>&1 || true
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
  suite_verdict e2e-etcd
}
trap 'finish; exit $?' EXIT

ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
# kbin in the operator namespace, with this test's cache and cluster file
k() { "$lab" op -- env KBIN_CACHE_DIR="$work/cache" NO_COLOR=1 "$kbin" -c "$work/cluster.toml" "$@"; }

"$lab" down >/dev/null 2>&1 || true
"$lab" up 4 >/dev/null || { fail "lab up 4"; exit 1; }
mirror_out=$("$lab" mirror 2>/dev/null) # read whole: the first line is the default etcd release
read -r etcd_sha _ <<<"$mirror_out"
mirror=$("$lab" mirror url)

cat >"$work/cluster.toml" <<TOML
[cluster]
name = "e2e"
etcd_version = "v3.6.17"

[ssh]
key = "$KBIN_LAB_DIR/ssh/id_ed25519"
connect_timeout_secs = 3

[artifacts]
mirror = "$mirror/etcd-io/etcd/releases/download/{version}/{file}"

[[hosts]]
name = "h1"
address = "10.213.0.11"
roles = ["etcd", "master"]

[[hosts]]
name = "h2"
address = "10.213.0.12"
roles = ["etcd"]

[[hosts]]
name = "h3"
address = "10.213.0.13"
roles = ["etcd"]
TOML
cp "$KBIN_LAB_DIR/ssh/known_hosts" "$work/known_hosts"

# --- fresh hosts to a healthy cluster -------------------------------------------------------------
k pin etcd v3.6.17 "$etcd_sha" 2>/dev/null
k download etcd >/dev/null 2>&1 # warm the cache: the benchmark below measures the deploy itself
t0=$(ms)
k -q pki init && k etcd deploy --json >"$work/deploy1.json" 2>"$work/deploy1.err"
rc=$? t_fresh=$(($(ms) - t0))
check "fresh deploy exits 0 ($t_fresh ms, pki included)" test $rc -eq 0
check "all 3 members healthy after deploy" python3 -c "import json,sys; m=json.load(open('$work/deploy1.json'))['members']; sys.exit(0 if len(m)==3 and all(x['healthy'] for x in m) and sum(x['leader'] for x in m)==1 else 1)"
grep -q '^\[preflight\] h1: ok' "$work/deploy1.err" && grep -q '^\[etcd\] 3/3 members healthy' "$work/deploy1.err"
check "progress lines are [phase] host: message" test $? -eq 0

# --- TLS is really enforced ---------------------------------------------------------------------------
"$lab" op -- env KBIN_CACHE_DIR="$work/cache" "$kbin" -q -c "$work/cluster.toml" download etcd --extract "$work/bin" >/dev/null
etcdctl() { "$lab" op -- env ETCDCTL_API=3 "$work/bin/etcd/etcdctl" --dial-timeout=3s --command-timeout=5s "$@"; }
pki=$work/pki
with_kbin_cert=(--endpoints=https://10.213.0.11:2379,https://10.213.0.12:2379 --cacert "$pki/etcd/ca.crt" --cert "$pki/etcd/healthcheck-client.crt" --key "$pki/etcd/healthcheck-client.key")
check "etcdctl with kbin's client cert writes" etcdctl "${with_kbin_cert[@]}" put /e2e/hello world
check "etcdctl with kbin's client cert reads it back" test "$(etcdctl "${with_kbin_cert[@]}" get /e2e/hello --print-value-only 2>/dev/null)" = world
mkdir -p "$work/other" && sed 's/name = "e2e"/name = "other"/' "$work/cluster.toml" >"$work/other/cluster.toml"
"$kbin" -q -c "$work/other/cluster.toml" pki init
foreign=(--endpoints=https://10.213.0.11:2379 --cacert "$pki/etcd/ca.crt" --cert "$work/other/pki/etcd/healthcheck-client.crt" --key "$work/other/pki/etcd/healthcheck-client.key")
# each refusal must be the TLS handshake's (the files exist, the server is up: the same etcdctl
# with kbin's certificate reads above), not any error at all. etcdctl itself only sees a broken
# connection and its deadline; etcd says why it refused: "rejected connection on client
# endpoint" with the TLS error, in h1's journal since the attempt
refused_tls() { # WHY (what etcd's TLS error says), then etcdctl arguments
  local why=$1 since; shift
  since=$("$lab" exec h1 -- date +%s)
  etcdctl "$@" get /e2e/hello >/dev/null 2>&1 && { echo "etcdctl succeeded" >&2; return 1; }
  "$lab" exec h1 -- journalctl -u etcd --since "@$since" --no-pager -o cat 2>/dev/null | grep 'rejected connection on client endpoint' | grep -q "$why" ||
    { echo "etcd on h1 logged no TLS refusal ($why) since the attempt" >&2; return 1; }
}
check "the other CA's client certificate and key exist (so a refusal is the server's)" test -s "$work/other/pki/etcd/healthcheck-client.crt" -a -s "$work/other/pki/etcd/healthcheck-client.key"
check "a client cert from another CA is refused in the TLS handshake (etcd: unknown authority)" refused_tls "certificate signed by unknown authority" "${foreign[@]}"
check "a client without a cert is refused in the TLS handshake (etcd: no certificate)" refused_tls "client didn't provide a certificate" --endpoints=https://10.213.0.11:2379 --cacert "$pki/etcd/ca.crt"

# --- an unchanged re-run changes nothing ------------------------------------------------------------
since=$("$lab" exec h2 -- systemctl show etcd -p ActiveEnterTimestampMonotonic --value)
t0=$(ms)
k etcd deploy --json >"$work/deploy2.json" 2>/dev/null
t_rerun=$(($(ms) - t0))
check "re-run sends 0 bytes and restarts nothing ($t_rerun ms)" python3 -c "import json,sys; r=json.load(open('$work/deploy2.json')); sys.exit(0 if r['bytes_sent']==0 and not r['restarted'] and not r['started'] and all(not h['changed'] for h in r['hosts']) else 1)"
check "re-run did not restart etcd on h2" test "$("$lab" exec h2 -- systemctl show etcd -p ActiveEnterTimestampMonotonic --value)" = "$since"

# --- a changed cert restarts only the member it touches ---------------------------------------------
h2_cert_before=$("$lab" exec h2 -- sha256sum /opt/etcd/ssl/server.crt | cut -d' ' -f1)
"$kbin" -q -c "$work/cluster.toml" pki renew etcd-server/h2
k etcd deploy --dry-run >"$work/dry.out" 2>&1
grep -q '\[dry-run\] h2: would replace /opt/etcd/ssl/server.crt' "$work/dry.out" && grep -q '\[dry-run\] h2: 1 files would change; would restart etcd' "$work/dry.out" && grep -q '\[dry-run\] h1: 0 files would change; no restart' "$work/dry.out"
check "--dry-run names the file and the restart, on h2 only" test $? -eq 0
check "--dry-run changed nothing on h2 (its server.crt as before the dry run)" bash -c "[ -n '$h2_cert_before' ] && [ \"\$(\"$lab\" exec h2 -- sha256sum /opt/etcd/ssl/server.crt | cut -d' ' -f1)\" = '$h2_cert_before' ]"
h1_since=$("$lab" exec h1 -- systemctl show etcd -p ActiveEnterTimestampMonotonic --value)
k etcd deploy --json >"$work/deploy3.json" 2>/dev/null
check "a renewed cert restarts only h2" python3 -c "import json,sys; r=json.load(open('$work/deploy3.json')); sys.exit(0 if r['restarted']==['h2'] and all(m['healthy'] for m in r['members']) else 1)"
check "h1 kept running" test "$("$lab" exec h1 -- systemctl show etcd -p ActiveEnterTimestampMonotonic --value)" = "$h1_since"
d1=$("$lab" exec h2 -- cat /opt/etcd/cfg/etcd.yml | sha256sum)

# --- a dead host ------------------------------------------------------------------------------------------
"$lab" stop h3 >/dev/null
k etcd status --json >"$work/status.json" 2>/dev/null
check "status with h3 dead: 2 of 3 healthy, h3 unreachable" python3 -c "import json,sys; s=json.load(open('$work/status.json')); m={x['name']:x for x in s['members']}; sys.exit(0 if s['healthy']==2 and not m['h3']['reachable'] and m['h1']['healthy'] else 1)"
check "the cluster still serves writes with h3 dead" etcdctl "${with_kbin_cert[@]}" put /e2e/after-kill yes

# --- preflight refuses with an unreachable host, changing nothing ------------------------------------
"$kbin" -q -c "$work/cluster.toml" pki renew etcd-server/h1
before=$("$lab" exec h1 -- sha256sum /opt/etcd/ssl/server.crt)
k etcd deploy >"$work/refused.out" 2>&1
rc=$?
check "deploy with h3 unreachable is refused (exit 2)" test $rc -eq 2
check "the refusal names h3" grep -q '\[connect\] h3:' "$work/refused.out"
check "nothing changed on h1" test "$("$lab" exec h1 -- sha256sum /opt/etcd/ssl/server.crt)" = "$before"
"$lab" up h3 >/dev/null
k etcd deploy >"$work/back.out" 2>&1
rc=$?
k etcd status --json >"$work/back.json" 2>/dev/null
check "h3 back: deploy converges again (exit 0, 3 of 3 healthy, h3 a member)" bash -c "[ $rc -eq 0 ] && python3 -c \"import json,sys; s=json.load(open('$work/back.json')); m={x['name']:x for x in s['members']}; sys.exit(0 if s['healthy']==3 and len(m)==3 and m['h3']['healthy'] and m['h3'].get('id') else 1)\""

# --- grow and shrink --------------------------------------------------------------------------------------
printf '\n[[hosts]]\nname = "h4"\naddress = "10.213.0.14"\nroles = ["etcd"]\n' >>"$work/cluster.toml"
"$kbin" -q -c "$work/cluster.toml" pki init
# h4's peer traffic is cut both ways (nothing reaches its port 2380, it reaches no member's): it
# joins as a learner, never catches up, and the add withdraws it: no member is left behind
peers_cut() { local a; "$lab" "$1" h4 2380 >/dev/null 2>&1; for a in 11 12 13; do "$lab" "$1-out" h4 "10.213.0.$a" 2380 >/dev/null 2>&1; done; }
peers_cut block
k etcd add h4 --health-timeout 12 >"$work/add-fail.out" 2>&1
rc=$?
peers_cut unblock
check "etcd add of an unreachable-peer h4 fails (exit 1) and says the learner was withdrawn" bash -c "[ $rc -eq 1 ] && grep -q 'announced as learner' '$work/add-fail.out' && grep -q 'learner .* removed again' '$work/add-fail.out'"
members() { etcdctl "${with_kbin_cert[@]}" member list -w simple 2>/dev/null; }
three_voting_h4_stopped() { [[ $(members | wc -l) -eq 3 ]] && ! members | grep -q ', true$' && [[ $("$lab" exec h4 -- systemctl is-active etcd) == inactive ]]; }
check "... the cluster has its 3 members, none a learner, and etcd is stopped on h4" three_voting_h4_stopped
h4_files() { "$lab" exec h4 -- sh -c 'sha256sum /opt/etcd/cfg/etcd.yml 2>&1; systemctl is-active etcd'; }
h4_before=$(h4_files)
k etcd add h4 --dry-run --json >"$work/add-dry.json" 2>"$work/add-dry.err"
rc=$?
check "etcd add h4 --dry-run --json exits 0 and says what it would do" bash -c "[ $rc -eq 0 ] && grep -q 'would announce https://10.213.0.14:2380 as a learner' '$work/add-dry.err' && grep -q 'files would change' '$work/add-dry.err'"
check "... its JSON: a dry run, the 3 members and h4" python3 -c "import json,sys; d=json.load(open('$work/add-dry.json')); sys.exit(0 if d['dry_run'] and len(d['members'])==4 and sum(m['healthy'] for m in d['members'])==3 else 1)"
dry_add_changed_nothing() { three_voting_h4_stopped && [[ $(h4_files) == "$h4_before" ]]; }
check "... and changes nothing: 3 members, none a learner, h4's files and etcd as they were" dry_add_changed_nothing
k etcd add h4 >"$work/add.out" 2>&1
check "etcd add h4 exits 0" test $? -eq 0
check "... as a learner, promoted once it caught up with the leader" bash -c "grep -q 'announced as learner' '$work/add.out' && grep -q 'promoted .* to a voting member' '$work/add.out'"
four_voting() { [[ $(members | grep -c ', started, .*, false$') -eq 4 ]]; }
check "4 members, all started, all voting" four_voting
k etcd status --json >"$work/status4.json" 2>/dev/null
check "status: 4 of 4 healthy" python3 -c "import json,sys; sys.exit(0 if json.load(open('$work/status4.json'))['healthy']==4 else 1)"
check "h4 reads data written before it joined" test "$(etcdctl --endpoints=https://10.213.0.14:2379 --cacert "$pki/etcd/ca.crt" --cert "$pki/etcd/healthcheck-client.crt" --key "$pki/etcd/healthcheck-client.key" get /e2e/after-kill --print-value-only 2>/dev/null)" = yes
k etcd remove h4 --json >"$work/remove.json" 2>"$work/remove.out"
check "etcd remove h4 --json exits 0: removed and cleaned up" python3 -c "import json,sys; d=json.load(open('$work/remove.json')); sys.exit(0 if d['host']=='h4' and d['member'] and d['removed'] and d['cleaned_up'] and not d['dry_run'] else 1)"
check "3 members again" test "$(etcdctl "${with_kbin_cert[@]}" member list -w simple 2>/dev/null | grep -c ', started, ')" -eq 3
check "h4 cleaned up: etcd stopped, data deleted" test "$("$lab" exec h4 -- sh -c 'systemctl is-active etcd; test -e /var/lib/etcd/default.etcd && echo data')" = inactive

# --- defrag -------------------------------------------------------------------------------------------------
k etcd defrag --json >"$work/defrag.json" 2>"$work/defrag.err"
rc=$?
check "etcd defrag exits 0: every member, followers first, the leader last, each healthy again" bash -c "[ $rc -eq 0 ] && python3 -c \"import json,sys; d=json.load(open('$work/defrag.json')); sys.exit(0 if len(d)==3 and d[-1]['leader'] and not any(m['leader'] for m in d[:-1]) else 1)\" && [ \"\$(grep -c 'healthy again' '$work/defrag.err')\" -eq 3 ]"

# --- backup ---------------------------------------------------------------------------------------------------
k etcd backup --out "$work/snap.db" --json >"$work/backup.json" 2>"$work/backup.err"
rc=$?
check "backup exits 0 and says the snapshot verified" bash -c "[ $rc -eq 0 ] && grep -q 'snapshot verified' '$work/backup.err'"
check "... its JSON names the file and its digest" python3 -c "import json,sys,hashlib; d=json.load(open('$work/backup.json')); sys.exit(0 if d['path']=='$work/snap.db' and d['sha256']==hashlib.sha256(open('$work/snap.db','rb').read()).hexdigest() else 1)"
check "the snapshot is valid for etcdutl (snapshot status: etcd 3.6 took it out of etcdctl)" "$work/bin/etcd/etcdutl" snapshot status "$work/snap.db"
check "the snapshot is private (0600)" test "$(stat -c %a "$work/snap.db")" = 600

echo "timings: fresh=${t_fresh}ms rerun=${t_rerun}ms" >&2
echo "$t_fresh $t_rerun" >"${KBIN_E2E_TIMINGS:-/dev/null}"
suite_end
