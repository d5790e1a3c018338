//! Relay distribution: each large file leaves the operator once and the hosts pass it on to each
//! other over their own network, so a deploy through a slow link (a laptop on a VPN, a bastion)
//! costs about one copy of each artifact whatever the number of hosts.
//!
//! Before a push, [`stage`] puts every large file a host lacks into its blob store
//! ([`BLOBS_DIR`]`/<sha256>`), and the push's atomic write ([`crate::host::Remote::write_file`])
//! then copies from there instead of receiving the bytes (the digest is checked again on the
//! copy). Per file, in rounds: the operator sends it to one host that needs it (the seed);
//! every host that holds it then serves one host that does not, so the holders double each
//! round (a binary tree). A transfer is plain OpenSSH between the two hosts — nothing to install
//! beyond what a host running sshd has:
//! 1. the receiver makes a one-time ed25519 key (`ssh-keygen`, private key never leaves it, never
//!    in argv) and gets the sender's host key from kbin's verified known_hosts;
//! 2. the sender authorizes that key for one command only — `cat` of that one blob — from the
//!    receiver's address only (`restrict,from=,command=` in the login user's authorized_keys,
//!    under `flock`);
//! 3. the receiver fetches into a temporary file, checks the SHA-256 before anything uses or
//!    forwards a byte, and moves it into its store;
//! 4. the authorization and the key are removed, whatever happened.
//!
//! The operator's copy travels gzip-compressed (fast level) when a sample of it shrinks by 15 %
//! or more — the release binaries do, archives and images do not — and is unpacked and verified
//! on arrival.
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
use crate::host::parallel::{self, Outcome};
use crate::host::{Cmd, HostError, Node, Source, WriteOpts};

/// Where a host keeps the files it receives for this run (by SHA-256) and serves them from.
pub const BLOBS_DIR: &str = "/var/lib/kbin/blobs";
/// Files smaller than this go directly: a relay costs a few round trips.
pub const MIN_RELAY_BYTES: u64 = 1 << 20;

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
}

/// One file some host needs.
#[derive(Clone)]
struct Blob {
    sha: String,
    src: Source,
    name: String,
}

/// Stage the large files of `plans` (one per node, the items the push will write) that each
/// host lacks, relaying them between the hosts. `direct`: only say which files will go directly.
/// Dry runs print the route each host would get each file by and change nothing.
pub fn stage(run: &Run<'_>, nodes: &[Node<'_>], plans: &[Vec<Item>], direct: bool) -> Result<Report, HostError> {
    let mut report = Report { mode: "none".into(), ..Default::default() };
    // 1. what each host lacks (its destination differs) and what it holds in its store already
    let needs = parallel::for_each(nodes, |n| n.host.name.clone(), "relay", run.concurrency, &run.cancel, |n| {
        let i = nodes.iter().position(|m| m.host.name == n.host.name).expect("one of them");
        lacks(n, &plans[i])
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
            Outcome::Skipped => return Ok(report),
        }
    }
    needers.retain(|sha, list| {
        list.retain(|i| !holders.get(sha).is_some_and(|h| h.contains(i)));
        !list.is_empty()
    });
    if needers.is_empty() {
        return Ok(report);
    }
    // worth it only when some file goes to two hosts or more
    if direct || needers.values().all(|l| l.len() < 2) {
        report.mode = "direct".into();
        return Ok(report);
    }
    if let Some(why) = preflight(run, nodes, &needers) {
        run.printer.warn(&format!("relay: {why}; every file goes directly from the operator"), Some("the hosts need ssh, ssh-keygen and flock, and to reach each other's sshd; --direct skips the check"));
        report.mode = "direct".into();
        report.warning = Some(why);
        return Ok(report);
    }
    report.mode = "relay".into();
    let known = KnownHosts::for_state_dir(&run.cluster.state_dir);

    // 2. rounds: seeds from the operator, then every holder serves one host that lacks the file
    let mut pending: BTreeMap<String, Vec<usize>> = needers;
    let mut bad_senders: BTreeSet<(String, usize)> = BTreeSet::new();
    let mut round = 0;
    while pending.values().any(|l| !l.is_empty()) {
        round += 1;
        let mut jobs: Vec<(String, Option<usize>, usize)> = Vec::new(); // (sha, from (None: operator), to)
        for (sha, list) in pending.iter_mut() {
            let have: Vec<usize> = holders.get(sha).cloned().unwrap_or_default().into_iter().filter(|h| !bad_senders.contains(&(sha.clone(), *h))).collect();
            if have.is_empty() {
                jobs.push((sha.clone(), None, list.remove(0)));
                continue;
            }
            for from in have {
                if list.is_empty() {
                    break;
                }
                jobs.push((sha.clone(), Some(from), list.remove(0)));
            }
        }
        if run.dry_run {
            for (sha, from, to) in &jobs {
                let src = from.map(|f| nodes[f].host.name.clone()).unwrap_or_else(|| "the operator".into());
                run.printer.phase("dry-run", Some(&nodes[*to].host.name), &format!("would get {} from {src} (round {round})", want[sha].name));
            }
        } else {
            let done = Mutex::new(Vec::new());
            let results = parallel::for_each(&jobs, |(_, _, to)| nodes[*to].host.name.clone(), "relay", run.concurrency, &run.cancel, |(sha, from, to)| {
                let b = &want[sha];
                let (to_n, label) = (&nodes[*to], b.name.as_str());
                let route = match from {
                    None => {
                        let sent = from_operator(to_n, b)?;
                        run.printer.phase("relay", Some(&to_n.host.name), &format!("{label} from the operator ({sent} bytes)"));
                        Route { host: to_n.host.name.clone(), sha256: sha.clone(), bytes: sent, from: "operator".into(), fallback: None }
                    }
                    Some(f) => match transfer(&known, &nodes[*f], to_n, b) {
                        Ok(()) => {
                            run.printer.phase("relay", Some(&to_n.host.name), &format!("{label} from {}", nodes[*f].host.name));
                            Route { host: to_n.host.name.clone(), sha256: sha.clone(), bytes: 0, from: nodes[*f].host.name.clone(), fallback: None }
                        }
                        Err(why) => {
                            run.printer.warn(&format!("relay: {}: {label} from {}: {why}; refused, from the operator instead", to_n.host.name, nodes[*f].host.name), None);
                            done.lock().unwrap().push((sha.clone(), *f, true));
                            let sent = from_operator(to_n, b)?;
                            Route { host: to_n.host.name.clone(), sha256: sha.clone(), bytes: sent, from: "operator".into(), fallback: Some(why) }
                        }
                    },
                };
                Ok(route)
            });
            for (r, (sha, _, to)) in results.into_iter().zip(&jobs) {
                match r.outcome {
                    Outcome::Done(route) => {
                        report.operator_bytes += route.bytes;
                        report.routes.push(route);
                        holders.entry(sha.clone()).or_default().push(*to);
                    }
                    Outcome::Failed(e) => return Err(e),
                    Outcome::Skipped => return Ok(report),
                }
            }
            for (sha, f, _) in done.into_inner().unwrap() {
                bad_senders.insert((sha, f));
            }
        }
        if run.dry_run {
            for (sha, _, to) in jobs {
                holders.entry(sha).or_default().push(to);
            }
        }
    }
    Ok(report)
}

/// The large files of `items` whose destination on `n` differs, and the blobs `n` holds already.
fn lacks(n: &Node<'_>, items: &[Item]) -> Result<(Vec<Blob>, Vec<String>), HostError> {
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

/// The operator's copy into `to`'s store: gzip-compressed on the way when that pays (the
/// binaries), as it is otherwise (compressed archives, images); verified on arrival either way.
fn from_operator(to: &Node<'_>, b: &Blob) -> Result<u64, HostError> {
    let local = |e: std::io::Error| HostError::Local { host: to.host.name.clone(), path: b.src.local_path().map(|p| p.to_path_buf()).unwrap_or_default(), source: e };
    if let Some(gz) = compressed(&b.src).map_err(local)? {
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
got=$(sha256sum < "$t"); got=${got%% *}
if [ "$got" != "$2" ]; then echo "unpacked bytes with sha256 $got, not $2" >&2; exit 3; fi
chmod 644 "$t"
mv -f -- "$t" "$1/$2"
trap - EXIT"#;

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

/// Every host that will receive a file has the OpenSSH client tools and `flock`, and reaches the
/// sshd of a host that will serve it (the first seed): `None` when the relay can go ahead.
fn preflight(run: &Run<'_>, nodes: &[Node<'_>], needers: &BTreeMap<String, Vec<usize>>) -> Option<String> {
    let involved: BTreeSet<usize> = needers.values().flatten().copied().collect();
    let seed = *needers.values().next()?.first()?;
    let (addr, port) = (nodes[seed].host.address.to_string(), nodes[seed].host.ssh.port);
    let list: Vec<usize> = involved.into_iter().collect();
    let results = parallel::for_each(&list, |i| nodes[*i].host.name.clone(), "relay", run.concurrency, &run.cancel, |i| {
        let n = &nodes[*i];
        let script = r#"for t in ssh ssh-keygen ssh-keyscan flock; do command -v "$t" >/dev/null 2>&1 || { echo "no $t"; exit 0; }; done
[ "$3" = self ] && { echo ok; exit 0; }
ssh-keyscan -T 3 -p "$2" "$1" >/dev/null 2>&1 && echo ok || echo "cannot reach $1:$2""#;
        let me = if *i == seed { "self" } else { "peer" };
        let out = n.remote.run(&Cmd::new(["sh", "-c", script, "kbin-relay-check", addr.as_str(), &port.to_string(), me]))?;
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

/// The receiver's half: a one-time key, then (after the sender authorized it) the fetch.
const KEYGEN: &str = r#"set -eu
umask 077
mkdir -p -- "$1"
rm -f -- "$1/key" "$1/key.pub"
ssh-keygen -q -t ed25519 -N '' -C "$2" -f "$1/key"
cat -- "$1/key.pub""#;
/// `$1` work dir, `$2` user@addr, `$3` port, `$4` sha256, `$5` the store: fetch, verify, move in.
const FETCH: &str = r#"set -eu
ssh -i "$1/key" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
  -o UserKnownHostsFile="$1/known_hosts" -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=5 \
  -o ServerAliveInterval=5 -p "$3" "$2" > "$1/blob"
got=$(openssl dgst -sha256 -r < "$1/blob" 2>/dev/null) || got=
got=${got%% *}
case "$got" in
  ????????????????????????????????????????????????????????????????) ;;
  *) got=$(sha256sum < "$1/blob"); got=${got%% *} ;;
esac
if [ "$got" != "$4" ]; then echo "received $(wc -c < "$1/blob") bytes with sha256 $got, not $4" >&2; exit 3; fi
mkdir -p -- "$5"
chmod 644 "$1/blob"
mv -f -- "$1/blob" "$5/$4""#;
/// The sender's half, as the login user: `$1` add|remove, `$2` the authorized_keys line, `$3` its tag.
const AUTHORIZE: &str = r#"set -eu
umask 077
mkdir -p "$HOME/.ssh"
f="$HOME/.ssh/authorized_keys"
touch "$f"
exec 9>"$HOME/.ssh/.kbin-relay.lock"
flock 9
case $1 in
  add) printf '%s\n' "$2" >> "$f" ;;
  remove) t=$(mktemp "$f.kbin-XXXXXX"); grep -vF -- "$3" "$f" > "$t" || true; cat "$t" > "$f"; rm -f "$t" ;;
esac"#;

/// One host-to-host transfer of `b` from `from` to `to`; `Err` says why it did not happen.
fn transfer(known: &KnownHosts, from: &Node<'_>, to: &Node<'_>, b: &Blob) -> Result<(), String> {
    let tag = format!("kbin-relay-{}-{}", &b.sha[..12], nonce());
    let dir = format!("/var/lib/kbin/relay/{tag}");
    let port = from.host.ssh.port;
    let addr = from.host.address.to_string();
    let lines = known.lines_for(&addr, port);
    if lines.is_empty() {
        return Err(format!("no verified host key of {} in known_hosts", from.host.name));
    }
    let cleanup = || {
        let _ = to.remote.run(&Cmd::new(["rm", "-rf", "--", dir.as_str()]).sudo());
        let _ = from.remote.run(&Cmd::new(["sh", "-c", AUTHORIZE, "kbin-relay-auth", "remove", "", tag.as_str()]));
    };
    let r = (|| -> Result<(), String> {
        let pubkey = to.remote.check(&Cmd::new(["sh", "-c", KEYGEN, "kbin-relay-key", dir.as_str(), tag.as_str()]).sudo()).map_err(|e| e.chain())?.stdout_str().trim().to_string();
        let known_text = lines.join("\n") + "\n";
        to.remote.write_file(&format!("{dir}/known_hosts"), &Source::bytes(known_text.into_bytes()), &WriteOpts::mode(0o600)).map_err(|e| e.chain())?;
        let line = format!("restrict,from=\"{}\",command=\"exec cat -- {}\" {pubkey}", to.host.address, blob_path(&b.sha));
        from.remote.check(&Cmd::new(["sh", "-c", AUTHORIZE, "kbin-relay-auth", "add", line.as_str(), tag.as_str()])).map_err(|e| e.chain())?;
        let target = format!("{}@{addr}", from.remote.user());
        let out = to.remote.run(&Cmd::new(["sh", "-c", FETCH, "kbin-relay-fetch", dir.as_str(), target.as_str(), &port.to_string(), b.sha.as_str(), BLOBS_DIR]).sudo()).map_err(|e| e.chain())?;
        if out.success() { Ok(()) } else { Err(out.stderr_str().trim().lines().last().unwrap_or("the fetch failed").to_string()) }
    })();
    cleanup();
    r
}

fn nonce() -> String {
    let mut b = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("the system's random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
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

    #[test]
    fn transfer_tags_are_unique_and_name_the_blob() {
        let a = nonce();
        assert_eq!(a.len(), 12);
        assert_ne!(a, nonce());
        assert_eq!(blob_path("ab12"), "/var/lib/kbin/blobs/ab12");
    }
}
