//! Relay distribution: each large file leaves the operator once and the hosts pass it on to each
//! other over their own network, so a deploy through a slow link (a laptop on a VPN, a bastion)
//! costs about one copy of each artifact whatever the number of hosts.
//!
//! Before a push, [`stage`] puts every large file a host lacks into its blob store
//! ([`BLOBS_DIR`]`/<sha256>`), and the push's atomic write ([`crate::host::Remote::write_file`])
//! then copies from there instead of receiving the bytes (the digest is checked again on the
//! copy). Files that the same hosts lack travel together as a unit (a node's dozen binaries are
//! a few units, `sched::UNIT_BYTES` each at most). Per unit: the operator sends it to one host that
//! needs it (the seed; two units at a time, each into another host, the most wanted first, so
//! each arrives early and fans out while the next crosses the operator's link); as soon as a host
//! holds it, it serves one host that does not, so the holders double (a binary tree). A host
//! receives one unit at a time and serves none while it receives: kbin runs one command at a time
//! on its connection. A transfer is plain OpenSSH between the two hosts, run by the receiver at
//! the lowest CPU priority (a background copy yields to the services and to the operator's own
//! transfers) — nothing to install beyond what a host running sshd has:
//! 1. the receiver makes a one-time ed25519 key (`ssh-keygen`, private key never leaves it, never
//!    in argv) and gets the sender's host key from kbin's verified known_hosts;
//! 2. the sender authorizes that key for one command only — `cat` of that unit's blobs — from
//!    the receiver's address only (`restrict,from=,command=` in the login user's authorized_keys,
//!    under `flock`);
//! 3. the receiver fetches into temporary files (split by the sizes it expects), checks each
//!    one's SHA-256 before anything uses or forwards a byte, and moves them into its store;
//! 4. the authorization and the key are removed, whatever happened.
//!
//! The relay pays where the operator's link is the bottleneck. So by default ([`Mode::Auto`])
//! kbin first measures that link (a few MiB of incompressible bytes to each of up to four hosts
//! that need a file, at once: one SSH stream alone is bound by its window and a core): at [`FAST_LINK`] or more every file goes directly, as copies over a fast link cost less
//! than compressing and relaying them; below it the relay runs and the operator's copy travels
//! gzip-compressed (fast level) when a sample of it shrinks by 15 % or more — the release
//! binaries do, archives and images do not — unpacked and verified on arrival.
//!
//! A transfer that fails or brings bad bytes is refused and the receiver gets the file from the
//! operator instead (a sender that served bad bytes serves no one else). A preflight checks that
//! the hosts have the OpenSSH tools and reach each other's sshd; if not, every file goes directly
//! from the operator, with a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde::Serialize;

use super::Run;
use super::files::Item;
use crate::host::known_hosts::KnownHosts;

mod sched;
mod transfer;
use sched::{Blob, Job, Sched, Unit, pending_of, units};
use transfer::{Revoke, transfer};
use crate::host::parallel::{self, Outcome};
use crate::host::{Cmd, HostError, Node, Source, WriteOpts};

/// Where a host keeps the files it receives for this run (by SHA-256) and serves them from.
pub const BLOBS_DIR: &str = "/var/lib/kbin/blobs";
/// Files smaller than this go directly: a relay costs a few round trips.
pub const MIN_RELAY_BYTES: u64 = 1 << 20;
/// An operator link at least this fast (bytes per second, 200 Mbit/s: a LAN, not a VPN or a WAN)
/// sends every file directly.
pub const FAST_LINK: u64 = 25_000_000;
/// What the link measurement sends to each host it measures, and to how many at once.
const PROBE_BYTES: usize = 3 << 20;
const PROBE_HOSTS: usize = 4;

/// How the large files reach the hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Measure the operator's link: relayed (and compressed) when it is slower than
    /// [`FAST_LINK`], directly when it is not.
    #[default]
    Auto,
    /// Relayed whatever the link (compressed only when it is slow).
    Relay,
    /// Every file straight from the operator to each host.
    Direct,
}

/// How one host got one file.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub host: String,
    pub sha256: String,
    pub bytes: u64,
    /// `operator`, or the host it came from.
    pub from: String,
    /// Why it came from the operator after all (a failed or refused relay).
    pub fallback: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// `relay`, `direct` (asked for, or the preflight failed) or `none` (nothing to send).
    pub mode: String,
    pub routes: Vec<Route>,
    /// Bytes the operator sent into the cluster for the relay.
    pub operator_bytes: u64,
    /// Why the run went direct, when it was not asked to.
    pub warning: Option<String>,
    /// The operator's link as measured (bytes per second), when it was.
    pub link_bytes_per_sec: Option<u64>,
    /// Whether the operator's copies travel compressed (where that shrinks them): the link is slow.
    pub compress: bool,
    /// How long the transfers took, from the first to the end of the last (milliseconds).
    pub millis: u64,
}

impl Report {
    /// One line: the mode, and the link that decided it.
    pub fn summary(&self) -> String {
        let link = self.link_bytes_per_sec.map(|r| format!(" (operator link {})", rate(r))).unwrap_or_default();
        match self.mode.as_str() {
            "relay" => {
                let hosts = self.routes.iter().map(|r| r.host.as_str()).collect::<BTreeSet<_>>().len();
                let gz = if self.compress { ", compressed where that pays" } else { "" };
                format!("{} transfers to {hosts} hosts, {} bytes from the operator{gz}{link}", self.routes.len(), self.operator_bytes)
            }
            m => format!("{m}{link}"),
        }
    }
}

fn rate(bytes_per_sec: u64) -> String {
    format!("{:.1} MB/s", bytes_per_sec as f64 / 1e6)
}


/// Stage the large files of `plans` (one per node, the items the push will write) that each
/// host lacks, relaying them between the hosts ([`Mode`]: when the files rather go directly, only
/// say so). Dry runs print the route each host would get each file by and change nothing.
pub fn stage(run: &Run<'_>, nodes: &[Node<'_>], plans: &[Vec<Item>], mode: Mode) -> Result<Report, HostError> {
    let p = plan(run, nodes, plans, mode)?;
    alongside(run, nodes, p, &[], |_| Ok::<_, HostError>(())).map(|(r, ())| r)
}

/// What [`plan`] decided: the report so far and, when the files are relayed, the units and who
/// lacks and holds each.
pub struct Plan {
    report: Report,
    relay: Option<Units>,
}

struct Units {
    known: KnownHosts,
    want: BTreeMap<String, Unit>,
    needers: BTreeMap<String, Vec<usize>>,
    holders: BTreeMap<String, Vec<usize>>,
}

impl Plan {
    /// Whether the files go host to host (rather than directly, or not at all).
    pub fn relays(&self) -> bool {
        self.relay.is_some()
    }
    /// The report so far: the mode and the link.
    pub fn report(&self) -> &Report {
        &self.report
    }
}

/// The read-only half of [`stage`]: what each host lacks and holds, the operator's link, the
/// hosts' tools; nothing is sent but the link's probe.
pub fn plan(run: &Run<'_>, nodes: &[Node<'_>], plans: &[Vec<Item>], mode: Mode) -> Result<Plan, HostError> {
    let mut report = Report { mode: "none".into(), ..Default::default() };
    // 1. what each host lacks (its destination differs) and what it holds in its store already
    let needs = parallel::for_each(nodes, |n| n.host.name.clone(), "relay", run.concurrency, &run.cancel, |n| {
        let i = nodes.iter().position(|m| m.host.name == n.host.name).expect("one of them");
        lacks(n, &plans[i], &run.known)
    });
    let mut want: BTreeMap<String, Blob> = BTreeMap::new();
    let mut needers: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut holders: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in needs.into_iter().enumerate() {
        match r.outcome {
            Outcome::Done((lack, held)) => {
                for b in lack {
                    needers.entry(b.sha.clone()).or_default().push(i);
                    want.entry(b.sha.clone()).or_insert(b);
                }
                for sha in held {
                    holders.entry(sha).or_default().push(i);
                }
            }
            Outcome::Failed(e) => return Err(e),
            Outcome::Skipped => return Ok(Plan { report, relay: None }),
        }
    }
    needers.retain(|sha, list| {
        list.retain(|i| !holders.get(sha).is_some_and(|h| h.contains(i)));
        !list.is_empty()
    });
    let direct = |mut report: Report| {
        report.mode = "direct".into();
        Ok(Plan { report, relay: None })
    };
    if needers.is_empty() {
        return Ok(Plan { report, relay: None });
    }
    // worth it only when some file goes to two hosts or more, over a link slow enough
    if mode == Mode::Direct || needers.values().all(|l| l.len() < 2) {
        return direct(report);
    }
    // what the operator's link carries to several hosts at once, as the direct pushes would use it
    // (one SSH stream alone is bound by its window and a core, not by the link)
    let probed: Vec<&Node<'_>> = needers.values().flatten().copied().collect::<BTreeSet<_>>().into_iter().take(PROBE_HOSTS).map(|i| &nodes[i]).collect();
    let link = link_rate(&probed)?;
    report.link_bytes_per_sec = Some(link);
    if mode == Mode::Auto && link >= FAST_LINK {
        run.printer.phase("relay", None, &format!("the link from here carries {} to {} hosts at once: every file goes directly, faster than relaying", rate(link), probed.len()));
        return direct(report);
    }
    report.compress = link < FAST_LINK;
    if let Some(why) = preflight(run, nodes, &needers) {
        run.printer.warn(&format!("relay: {why}; every file goes directly from the operator"), Some("the hosts need ssh, ssh-keygen, flock, sha256sum and gzip, and to reach each other's sshd; --direct skips the check"));
        report.warning = Some(why);
        return direct(report);
    }
    report.mode = "relay".into();
    let known = KnownHosts::for_state_dir(&run.cluster.state_dir);
    let (want, needers, holders) = units(&want, &needers, &holders);
    Ok(Plan { report, relay: Some(Units { known, want, needers, holders }) })
}

/// The relay's progress, for work that runs alongside it ([`alongside`]).
pub struct Staged<'a> {
    state: Option<&'a (Mutex<&'a mut Sched>, std::sync::Condvar)>,
    nodes: &'a [Node<'a>],
    cancel: &'a crate::host::parallel::Cancel,
}

impl Staged<'_> {
    /// Block until every file the hosts named `hosts` lacked is in their stores (at once when
    /// nothing is relayed); the relay's error if it failed.
    pub fn wait(&self, hosts: &[&str]) -> Result<(), HostError> {
        let Some((lock, cv)) = self.state else { return Ok(()) };
        let idx: Vec<usize> = self.nodes.iter().enumerate().filter(|(_, n)| hosts.contains(&n.host.name.as_str())).map(|(i, _)| i).collect();
        let mut s = lock.lock().unwrap();
        loop {
            if let Some(e) = &s.error {
                return Err(HostError::Invalid { host: e.host().to_string(), message: format!("the relay failed: {}", crate::exit::chain(e)) });
            }
            if s.staged(&idx) {
                return Ok(());
            }
            let host = self.nodes[idx[0]].host.name.clone();
            if self.cancel.is_cancelled() {
                return Err(HostError::Interrupted { host });
            }
            if s.workers == 0 {
                return Err(HostError::Invalid { host, message: "the relay ended before this host's files arrived".into() });
            }
            s = cv.wait_timeout(s, std::time::Duration::from_millis(250)).unwrap().0;
        }
    }
}

/// Run the plan's transfers and, on this thread meanwhile, `body` (a deploy's first phases,
/// waiting with [`Staged::wait`] for the hosts it changes): the operator seeds the files of the
/// hosts named `first` before the others, so the masters start while the nodes' files still
/// cross the link and fan out. Returns once both are done; when `body` fails, no new transfer
/// starts and its error is returned. A dry run says the routes first, then runs `body`.
pub fn alongside<T, E: From<HostError>>(run: &Run<'_>, nodes: &[Node<'_>], plan: Plan, first: &[&str], body: impl FnOnce(&Staged<'_>) -> Result<T, E>) -> Result<(Report, T), E> {
    let Plan { mut report, relay } = plan;
    let Some(Units { known, want, needers, holders }) = relay else {
        return Ok((report, body(&Staged { state: None, nodes, cancel: &run.cancel })?));
    };
    // 2. as soon as a host holds a file it serves another that lacks it (no rounds to wait
    //    for: a fast transfer is not held up by a slow one); the operator seeds a file that no
    //    good host holds
    let sizes = want.iter().map(|(k, u)| (k.clone(), u.bytes())).collect();
    let first: BTreeSet<usize> = nodes.iter().enumerate().filter(|(_, n)| first.contains(&n.host.name.as_str())).map(|(i, _)| i).collect();
    let mut sched = Sched::new(&pending_of(needers), &holders, &sizes, &first);
    let workers = if run.dry_run { 1 } else { run.concurrency.max(1).min(sched.jobs_left()) };
    sched.workers = workers;
    let began = std::time::Instant::now();
    let state = (Mutex::new(&mut sched), std::sync::Condvar::new());
    let compress = report.compress;
    let out = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(|| work(run, nodes, &known, &want, &state, compress))).collect();
        if run.dry_run {
            for h in handles {
                let _ = h.join();
            }
        }
        let out = body(&Staged { state: Some(&state), nodes, cancel: &run.cancel });
        if out.is_err() {
            state.0.lock().unwrap().stop = true;
            state.1.notify_all();
        }
        out
    });
    // the relay's own error first: a body that waited for it failed because of it
    if let Some(e) = sched.error.take() {
        return Err(e.into());
    }
    let out = out?;
    report.operator_bytes = sched.routes.iter().map(|r| r.bytes).sum();
    report.routes = std::mem::take(&mut sched.routes);
    report.millis = sched.ended.unwrap_or_else(std::time::Instant::now).duration_since(began).as_millis() as u64;
    Ok((report, out))
}


/// A worker: take the next transfer that can start, run it, record it; until none is left.
fn work<'a>(run: &Run<'_>, nodes: &'a [Node<'a>], known: &KnownHosts, want: &BTreeMap<String, Unit>, state: &(Mutex<&mut Sched>, std::sync::Condvar), compress: bool) {
    let (lock, cv) = state;
    let mut s = lock.lock().unwrap();
    loop {
        if s.error.is_some() || s.stop || run.cancel.is_cancelled() {
            break;
        }
        let Some(job) = s.next() else {
            if s.in_flight == 0 {
                break; // nothing left, or nothing any transfer in flight could unblock
            }
            s = cv.wait(s).unwrap();
            continue;
        };
        s.in_flight += 1;
        drop(s);
        let (r, revoke) = one(run, nodes, known, &want[&job.sha], &job, compress);
        s = lock.lock().unwrap();
        match r {
            Ok((routes, bad)) => s.done(&job, routes, bad),
            Err(e) => s.error = Some(e),
        }
        cv.notify_all();
        // the sender's authorization goes once the receiver may pass the unit on
        if let Some(revoke) = revoke {
            drop(s);
            revoke.run();
            s = lock.lock().unwrap();
        }
        s.in_flight -= 1;
        cv.notify_all();
    }
    s.workers -= 1;
    if s.workers == 0 {
        s.ended = Some(std::time::Instant::now());
    }
    cv.notify_all();
}

/// Run one transfer (a dry run only says it); a route per file, and whether the sender served
/// bad bytes.
fn one<'a>(run: &Run<'_>, nodes: &'a [Node<'a>], known: &KnownHosts, u: &Unit, job: &Job, compress: bool) -> (Result<(Vec<Route>, bool), HostError>, Option<Revoke<'a>>) {
    let to = &nodes[job.to];
    let routes = |from: &str, sent: &[u64], fallback: Option<String>| -> Vec<Route> {
        u.blobs.iter().enumerate().map(|(i, b)| Route { host: to.host.name.clone(), sha256: b.sha.clone(), bytes: sent.get(i).copied().unwrap_or(0), from: from.into(), fallback: fallback.clone() }).collect()
    };
    if run.dry_run {
        let from = job.from.map(|f| nodes[f].host.name.clone()).unwrap_or_else(|| "the operator".into());
        run.printer.phase("dry-run", Some(&to.host.name), &format!("would get {} from {from}", u.label()));
        return (Ok((routes(job.from.map(|f| nodes[f].host.name.as_str()).unwrap_or("operator"), &[], None), false)), None);
    }
    // from the operator, one file after the other, the next compressed while one crosses the
    // link (compressing first and sending after left the link idle a third of the time)
    let seed = |fallback: Option<String>| -> Result<Vec<Route>, HostError> {
        std::thread::scope(|s| {
            let (ready, packed) = std::sync::mpsc::sync_channel(1);
            s.spawn(move || {
                for b in &u.blobs {
                    if ready.send(pack(to, b, compress)).is_err() {
                        break; // the sender gave up
                    }
                }
            });
            let mut sent = Vec::new();
            for (b, gz) in u.blobs.iter().zip(packed) {
                let n = from_operator(to, b, gz?)?;
                run.printer.phase("relay", Some(&to.host.name), &format!("{} from the operator ({n} bytes)", b.name));
                sent.push(n);
            }
            Ok(routes("operator", &sent, fallback))
        })
    };
    let Some(f) = job.from else {
        return (seed(None).map(|r| (r, false)), None);
    };
    let from = &nodes[f];
    let (r, revoke) = transfer(known, from, to, u);
    let r = match r {
        Ok(()) => {
            run.printer.phase("relay", Some(&to.host.name), &format!("{} from {}", u.label(), from.host.name));
            Ok((routes(&from.host.name, &[], None), false))
        }
        Err(why) => {
            run.printer.warn(&format!("relay: {}: {} from {}: {why}; refused, from the operator instead", to.host.name, u.label(), from.host.name), None);
            seed(Some(why)).map(|r| (r, true))
        }
    };
    (r, revoke)
}

/// The large files of `items` whose destination on `n` differs, and the blobs `n` holds already.
fn lacks(n: &Node<'_>, items: &[Item], known: &super::Known) -> Result<(Vec<Blob>, Vec<String>), HostError> {
    let big: Vec<&Item> = items.iter().filter(|i| i.link.is_none() && !i.secret && i.src.len() >= MIN_RELAY_BYTES).collect();
    let mut paths: Vec<String> = big.iter().map(|i| i.path.clone()).collect();
    paths.extend(big.iter().map(|i| blob_path(i.src.sha256())));
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let sums = n.remote.sha256_many(&refs)?;
    let (dest, store) = sums.split_at(big.len());
    let mut lack = Vec::new();
    let mut held = Vec::new();
    for ((it, d), s) in big.iter().zip(dest).zip(store) {
        let sha = it.src.sha256().to_string();
        if d.as_deref() == Some(sha.as_str()) {
            // in place already: the push that follows need not read it again
            known.note(&n.host.name, &it.path, &sha);
        }
        if s.as_deref() == Some(sha.as_str()) {
            held.push(sha);
        } else if d.as_deref() != Some(sha.as_str()) {
            let name = it.path.rsplit('/').next().unwrap_or(&it.path).to_string();
            lack.push(Blob { sha, src: it.src.clone(), name });
        }
    }
    Ok((lack, held))
}

pub fn blob_path(sha: &str) -> String {
    format!("{BLOBS_DIR}/{sha}")
}

/// `b` gzip-compressed for the way to `to` when `compress` and that pays (the binaries), `None`
/// when it goes as it is (compressed archives, images).
fn pack(to: &Node<'_>, b: &Blob, compress: bool) -> Result<Option<Vec<u8>>, HostError> {
    if !compress {
        return Ok(None);
    }
    compressed(&b.src).map_err(|e| HostError::Local { host: to.host.name.clone(), path: b.src.local_path().map(|p| p.to_path_buf()).unwrap_or_default(), source: e })
}

/// The operator's copy into `to`'s store: the [`pack`]ed bytes, unpacked there, or the file as
/// it is; verified on arrival either way. The bytes sent.
fn from_operator(to: &Node<'_>, b: &Blob, gz: Option<Vec<u8>>) -> Result<u64, HostError> {
    if let Some(gz) = gz {
        let sent = gz.len() as u64;
        let cmd = Cmd::new(["sh", "-c", UNZIP, "kbin-relay-seed", BLOBS_DIR, b.sha.as_str()]).sudo().stdin(gz).timeout(std::time::Duration::from_secs(3600));
        to.remote.check(&cmd)?;
        return Ok(sent);
    }
    let w = to.remote.write_file(&blob_path(&b.sha), &b.src, &WriteOpts::mode(0o644))?;
    Ok(w.bytes_sent)
}

/// `$1` the store, `$2` the sha256: gzip on stdin, unpacked, verified, moved in.
const UNZIP: &str = r#"set -eu
mkdir -p -- "$1"
t=$(mktemp "$1/.in-XXXXXX")
trap 'rm -f -- "$t"' EXIT
gzip -dc > "$t"
# openssl uses the CPU's SHA instructions (several times faster than sha256sum)
got=$(openssl dgst -sha256 -r < "$t" 2>/dev/null) || got=
got=${got%% *}
case "$got" in
  ????????????????????????????????????????????????????????????????) ;;
  *) got=$(sha256sum < "$t"); got=${got%% *} ;;
esac
if [ "$got" != "$2" ]; then echo "unpacked bytes with sha256 $got, not $2" >&2; exit 3; fi
chmod 644 "$t"
mv -f -- "$t" "$1/$2"
trap - EXIT"#;

/// The operator's rate to `hosts` together in bytes per second: [`PROBE_BYTES`] of
/// incompressible bytes into `cat >/dev/null` on each at once (nothing written), each less the
/// time of an empty command there, over the slowest.
fn link_rate(hosts: &[&Node<'_>]) -> Result<u64, HostError> {
    // xorshift: bytes no link compresses
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..PROBE_BYTES / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    let took = std::thread::scope(|s| {
        let probes: Vec<_> = hosts
            .iter()
            .map(|n| {
                let noise = noise.clone();
                s.spawn(move || -> Result<std::time::Duration, HostError> {
                    let t = std::time::Instant::now();
                    n.remote.check(&Cmd::new(["true"]))?;
                    let base = t.elapsed();
                    let t = std::time::Instant::now();
                    n.remote.check(&Cmd::new(["sh", "-c", "cat >/dev/null"]).stdin(noise))?;
                    Ok(t.elapsed().saturating_sub(base))
                })
            })
            .collect();
        probes.into_iter().map(|p| p.join().expect("a link probe does not panic")).collect::<Result<Vec<_>, _>>()
    })?;
    let slowest = took.into_iter().max().unwrap_or_default().as_secs_f64().max(1e-4);
    Ok(((PROBE_BYTES * hosts.len()) as f64 / slowest) as u64)
}

/// The file gzip-compressed (fast level) when its first 4 MiB shrink by 15 % or more.
fn compressed(src: &Source) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::{Read, Write};
    let mut sample = Vec::new();
    src.open()?.take(4 << 20).read_to_end(&mut sample)?;
    let mut probe = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    probe.write_all(&sample)?;
    if probe.finish()?.len() * 100 > sample.len() * 85 {
        return Ok(None);
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(src.len() as usize / 3), flate2::Compression::fast());
    std::io::copy(&mut src.open()?, &mut enc)?;
    enc.finish().map(Some)
}

/// Every host that takes part has the OpenSSH client tools and `flock`, and reaches the sshd
/// of another (each host the next one, in a ring, so no sshd sees every probe at once: one
/// connection that stops at authentication): `None` when the relay can go ahead.
fn preflight(run: &Run<'_>, nodes: &[Node<'_>], needers: &BTreeMap<String, Vec<usize>>) -> Option<String> {
    let list: Vec<usize> = needers.values().flatten().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let results = parallel::for_each(&list, |i| nodes[*i].host.name.clone(), "relay", run.concurrency, &run.cancel, |i| {
        let me = list.iter().position(|x| x == i).expect("in the list");
        let peer = nodes[list[(me + 1) % list.len()]].host;
        let script = r#"for t in ssh ssh-keygen flock sha256sum gzip; do command -v "$t" >/dev/null 2>&1 || { echo "no $t"; exit 0; }; done
[ "$1" = self ] && { echo ok; exit 0; }
for try in 1 2 3; do
  out=$(ssh -o BatchMode=yes -o ConnectTimeout=3 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR -p "$3" "kbin-relay-probe@$2" true 2>&1)
  case $out in *"ermission denied"*) echo ok; exit 0 ;; esac
  sleep 1
done
echo "cannot reach $2:$3 (${out:-no answer})""#;
        let who = if list.len() == 1 { "self" } else { "peer" };
        let out = nodes[*i].remote.run(&Cmd::new(["sh", "-c", script, "kbin-relay-check", who, &peer.address.to_string(), &peer.ssh.port.to_string()]))?;
        Ok(out.stdout_str().trim().to_string())
    });
    let bad: Vec<String> = results
        .into_iter()
        .filter_map(|r| match r.outcome {
            Outcome::Done(s) if s == "ok" => None,
            Outcome::Done(s) => Some(format!("{}: {s}", r.host)),
            Outcome::Failed(e) => Some(e.chain()),
            Outcome::Skipped => Some(format!("{}: interrupted", r.host)),
        })
        .collect();
    (!bad.is_empty()).then(|| bad.join("; "))
}

/// Remove the blob store of every host (after the push that used it).
pub fn cleanup(run: &Run<'_>, nodes: &[Node<'_>]) {
    if run.dry_run {
        return;
    }
    let _ = parallel::for_each(nodes, |n| n.host.name.clone(), "relay", run.concurrency, &run.cancel, |n| n.remote.run(&Cmd::new(["rm", "-rf", "--", BLOBS_DIR, "/var/lib/kbin/relay"]).sudo()).map(|_| ()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn compressible_files_travel_gzipped_and_unpack_to_the_same_bytes_random_ones_as_they_are() {
        let text: Vec<u8> = (0..200_000u32).flat_map(|i| format!("line {} of a binary-like file\n", i % 977).into_bytes()).collect();
        let gz = compressed(&Source::bytes(text.clone())).unwrap().expect("text shrinks");
        assert!(gz.len() * 5 < text.len(), "{} -> {}", text.len(), gz.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, text);
        let mut noise = vec![0u8; 2 << 20];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut noise).unwrap();
        assert!(compressed(&Source::bytes(noise)).unwrap().is_none(), "random bytes go as they are");
    }


}
