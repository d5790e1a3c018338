//! `kbin hosts ...` as operations: check every host's prerequisites, scan and record host keys,
//! push local files to hosts (on the engine: planned, written inside a [`Tx`] per host, undone
//! on failure). Each returns its data and, apart, its verdict, so the CLI prints one and
//! reports the other.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::config::{Cluster, Host, Role};
use crate::engine::{self, Change, HostFailure, Item, Run, Tx};
use crate::error::Error;
use crate::host::check::{self, Report, Severity};
use crate::host::parallel::{self, HostResult, Outcome};
use crate::host::ssh::{self, ConnectOptions, ScannedKey, Target};
use crate::host::{HostError, Node, Remote, Source};
use crate::output::{Printer, plural};

/// The hosts a command works on: those named (by name or address) and with one of `roles`;
/// everyone when both are empty.
pub fn select<'c>(c: &'c Cluster, names: &[String], roles: &[String]) -> Result<Vec<&'c Host>, Error> {
    for n in names {
        super::host_named(c, n)?;
    }
    let roles = roles.iter().map(|r| Role::parse(r).ok_or_else(|| Error::other(format!("unknown role {r:?}"), Some("roles are etcd, master, node and lb")))).collect::<Result<Vec<_>, _>>()?;
    Ok(c.hosts
        .iter()
        .filter(|h| names.is_empty() || names.iter().any(|n| *n == h.name || *n == h.address.to_string()))
        .filter(|h| roles.is_empty() || roles.iter().any(|r| h.has(*r)))
        .collect())
}

fn connect(p: &Printer, c: &Cluster, h: &Host, opts: &ConnectOptions) -> Result<ssh::SshHost, HostError> {
    let r = ssh::connect(&Target::from_host(h), c.bastion.as_ref().map(Target::from_bastion).as_ref(), opts);
    match &r {
        Ok(s) => p.phase("connect", Some(&h.name), &format!("connected as {}", s.user())),
        Err(e) => p.phase("connect", Some(&h.name), &format!("failed: {e}")),
    }
    r
}

fn interrupted<T>(results: &[HostResult<T>]) -> Error {
    let t = parallel::tally(results);
    Error::Interrupted { what: format!("{} host(s) done, {} failed, {} not started", t.done, t.failed, t.skipped) }
}


/// `kbin hosts check`: connect to `hosts`, gather their facts in one round trip each and judge
/// them, alone and across hosts. The report, and the verdict: refused (exit 2) on any error.
pub fn check(run: &Run<'_>, hosts: &[&Host], accept_new_host_keys: bool) -> Result<(Report, Result<(), Error>), Error> {
    let (c, p) = (run.cluster, run.printer);
    let opts = ConnectOptions::for_cluster(c, accept_new_host_keys);
    let paths = check::install_paths(c);
    let results = parallel::for_each(hosts, |h| h.name.clone(), "check", run.concurrency, &run.cancel, |h| {
        let t = Instant::now();
        let f = check::gather(&connect(&p, c, h, &opts)?, &paths)?;
        p.phase("check", Some(&h.name), &format!("facts gathered in {} ms", t.elapsed().as_millis()));
        Ok(f)
    });
    if run.cancel.is_cancelled() {
        return Err(interrupted(&results));
    }
    let gathered = hosts
        .iter()
        .zip(results)
        .map(|(h, r)| match r.outcome {
            Outcome::Done(f) => (*h, Ok(f)),
            Outcome::Failed(e) => (*h, Err(e)),
            Outcome::Skipped => (*h, Err(HostError::Interrupted { host: h.name.clone() })),
        })
        .collect();
    let report = check::evaluate(c, gathered);
    if report.errors == 0 {
        return Ok((report, Ok(())));
    }
    let bad = report.hosts.iter().filter(|h| h.problems.iter().any(|p| p.severity == Severity::Error)).count();
    let refused = Error::Refused {
        what: format!("{} problem{} on {bad} of {} host{}", report.errors, plural(report.errors), report.hosts.len(), plural(report.hosts.len())),
        problems: Vec::new(),
        hint: Some("fix the problems listed above (each has a hint) and run `kbin hosts check` again".into()),
    };
    Ok((report, Err(refused)))
}

/// What `kbin hosts scan` saw: every key (the bastion's first) and the hosts that could not be
/// scanned.
#[derive(Debug, Serialize)]
pub struct Scanned {
    pub keys: Vec<ScannedKey>,
    pub failed: Vec<HostFailure>,
}

/// `kbin hosts scan`: every host's key, recorded in the state dir's known_hosts unless `dry_run`
/// (the bastion's first: hosts behind it are reached through it). A changed key is never
/// recorded and refuses the run.
pub fn scan(run: &Run<'_>, dry_run: bool) -> Result<(Scanned, Result<(), Error>), Error> {
    let (c, p) = (run.cluster, run.printer);
    let mut opts = ConnectOptions::for_cluster(c, false);
    let mut keys = Vec::new();
    let bastion = c.bastion.as_ref().map(Target::from_bastion);
    let shown = |k: &ScannedKey| p.phase("scan", Some(&k.host), &format!("{} {} ({})", k.key_type, k.fingerprint, k.status));
    if let Some(b) = &bastion {
        let k = ssh::scan(b, None, &opts, !dry_run)?;
        shown(&k);
        keys.push(k);
    }
    opts.accept_new_host_keys = false;
    let hosts: Vec<&Host> = c.hosts.iter().collect();
    let results = parallel::for_each(&hosts, |h| h.name.clone(), "scan", run.concurrency, &run.cancel, |h| {
        let k = ssh::scan(&Target::from_host(h), bastion.as_ref(), &opts, !dry_run)?;
        shown(&k);
        Ok(k)
    });
    keys.extend(results.iter().filter_map(|r| r.ok().cloned()));
    let known_hosts = c.state_dir.join("known_hosts");
    let changed: Vec<String> = keys.iter().filter(|k| k.status == "changed").map(|k| format!("{} ({}:{}): presents {} {}", k.host, k.address, k.port, k.key_type, k.fingerprint)).collect();
    let t = parallel::tally(&results);
    let verdict = if run.cancel.is_cancelled() {
        Err(interrupted(&results))
    } else if !changed.is_empty() {
        Err(Error::Refused {
            what: format!("{} host key{} differ from the recorded ones", changed.len(), plural(changed.len())),
            problems: changed,
            hint: Some(format!(
                "someone may be intercepting the connection, or the hosts were reinstalled; if you are sure, delete their lines from {} (or ~/.ssh/known_hosts) and scan again",
                known_hosts.display()
            )),
        })
    } else if t.failed > 0 {
        Err(Error::other(format!("{} of {} hosts could not be scanned", t.failed, results.len()), None))
    } else {
        if !dry_run {
            p.phase("scan", None, &format!("known keys are in {}", known_hosts.display()));
        }
        Ok(())
    };
    let failed = results.into_iter().filter_map(|r| if let Outcome::Failed(e) = r.outcome { Some(HostFailure { phase: "scan".into(), ..HostFailure::from(e) }) } else { None }).collect();
    Ok((Scanned { keys, failed }, verdict))
}

/// What `kbin hosts push` puts on every host: local files at absolute remote paths.
#[derive(Debug, Clone)]
pub struct Push {
    /// Local file and remote path, pushed in this order as one change per host.
    pub files: Vec<(PathBuf, String)>,
    pub mode: u32,
    /// `user[:group]`; `None`: root.
    pub owner: Option<String>,
    /// Keep each replaced file as `<remote>.kbin-backup-<time>`.
    pub backup: bool,
    /// How large files reach the hosts ([`crate::engine::relay`]).
    pub relay: crate::engine::relay::Mode,
}

/// One host's push.
#[derive(Debug, Clone, Serialize)]
pub struct PushResult {
    pub host: String,
    pub ok: bool,
    /// Content, mode or owner of a file changed (or, in a dry run, would).
    pub changed: bool,
    pub bytes_sent: u64,
    /// The remote files that changed.
    pub files: Vec<String>,
    /// Replaced files kept with `--backup`.
    pub backups: Vec<String>,
    pub dry_run: bool,
    /// Why the host failed, in which phase, and what the rollback did.
    pub failure: Option<HostFailure>,
}

impl PushResult {
    fn failed(host: &str, dry_run: bool, f: HostFailure) -> PushResult {
        PushResult { host: host.into(), ok: false, changed: false, bytes_sent: 0, files: Vec::new(), backups: Vec::new(), dry_run, failure: Some(f) }
    }
}

impl Push {
    /// The files to push, hashed; a small text file keeps its text for the dry run's diff. The
    /// error names the local file that cannot be read.
    pub fn items(&self) -> Result<Vec<Item>, (PathBuf, String)> {
        let item = |(local, remote): &(PathBuf, String)| {
            let unreadable = |e: std::io::Error| (local.clone(), e.to_string());
            let src = Source::file(local).map_err(unreadable)?;
            let text = if src.len() <= 1 << 20 { String::from_utf8(std::fs::read(local).map_err(unreadable)?).ok() } else { None };
            Ok(Item { path: remote.clone(), src, mode: self.mode, secret: false, units: Vec::new(), text, significant: None, link: None, owner: self.owner.clone(), always_write: true })
        };
        self.files.iter().map(item).collect()
    }
}

/// `kbin hosts push`: connect to `hosts` (the local files are hashed meanwhile), then on each
/// host plan the files that differ and, unless this is a dry run, write them inside a [`Tx`]:
/// a file that cannot be written undoes the ones written before it, so a host ends with all the
/// new files or its old ones. One result per host, in the given order, whatever happened; the
/// verdict apart. Only a local file that cannot be read fails the whole run up front.
pub fn push(run: &Run<'_>, hosts: &[&Host], accept_new_host_keys: bool, spec: &Push) -> Result<(Vec<PushResult>, Result<(), Error>), Error> {
    let (c, p) = (run.cluster, run.printer);
    let started = Instant::now();
    let total: u64 = spec.files.iter().map(|(l, _)| std::fs::metadata(l).map(|m| m.len())).sum::<std::io::Result<u64>>().map_err(|e| Error::Other {
        message: format!("cannot read {}", spec.files.iter().map(|(l, _)| l.display().to_string()).collect::<Vec<_>>().join(", ")),
        hint: Some("check the local file's path".into()),
        source: Some(Box::new(e)),
    })?;
    let names: Vec<String> = spec.files.iter().map(|(l, _)| l.display().to_string()).collect();
    p.phase("push", None, &format!("{} ({total} bytes) to {} host{}", names.join(", "), hosts.len(), plural(hosts.len())));
    let opts = ConnectOptions::for_cluster(c, accept_new_host_keys);
    if spec.relay != crate::engine::relay::Mode::Direct && hosts.len() > 1 && total >= crate::engine::relay::MIN_RELAY_BYTES {
        let rows = push_relayed(run, hosts, &opts, spec)?;
        return Ok(verdict(run, rows, started));
    }
    let bars = (!p.quiet && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
    // the local files are hashed while the connections are being set up
    let items: std::sync::OnceLock<Result<Vec<Item>, (PathBuf, String)>> = std::sync::OnceLock::new();
    let results = std::thread::scope(|s| {
        s.spawn(|| items.set(spec.items()));
        parallel::for_each(hosts, |h| h.name.clone(), "push", run.concurrency, &run.cancel, |h| {
            let node = Node { host: h, remote: Arc::new(connect(&p, c, h, &opts)?) as Arc<dyn Remote> };
            let items = items.wait().as_ref().map_err(|(path, e)| HostError::Local { host: h.name.clone(), path: path.clone(), source: std::io::Error::other(e.clone()) })?;
            let bar = bars.as_ref().map(|m| {
                let b = m.add(indicatif::ProgressBar::new(total));
                b.set_style(indicatif::ProgressStyle::with_template("{prefix:>12} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}").unwrap());
                b.set_prefix(h.name.clone());
                b
            });
            let progress = bar.clone().map(|b| Arc::new(move |n: u64| b.set_position(n)) as Arc<dyn Fn(u64) + Send + Sync>);
            let r = push_node(run, &node, items, spec.backup, progress, false);
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            Ok(r)
        })
    });
    let rows: Vec<PushResult> = results
        .into_iter()
        .map(|r| match r.outcome {
            Outcome::Done(row) => row,
            Outcome::Failed(e) => PushResult::failed(&r.host, run.dry_run, HostFailure { phase: "connect".into(), ..HostFailure::from(e) }),
            Outcome::Skipped => PushResult::failed(&r.host, run.dry_run, HostFailure::new(&r.host, "push", "not started (interrupted)")),
        })
        .collect();
    Ok(verdict(run, rows, started))
}

/// The rows and the verdict of a push.
fn verdict(run: &Run<'_>, rows: Vec<PushResult>, started: Instant) -> (Vec<PushResult>, Result<(), Error>) {
    run.printer.phase("push", None, &format!("done in {:.2}s", started.elapsed().as_secs_f64()));
    let (done, failed) = (rows.iter().filter(|r| r.ok).count(), rows.iter().filter(|r| !r.ok).count());
    let verdict = if run.cancel.is_cancelled() {
        let skipped = rows.iter().filter(|r| r.failure.as_ref().is_some_and(|f| f.error.starts_with("not started"))).count();
        Err(Error::Interrupted { what: format!("{done} host(s) done, {} failed, {skipped} not started", failed - skipped) })
    } else if failed > 0 {
        Err(Error::other(format!("push failed on {failed} of {} hosts", rows.len()), Some("see each host's error and hint above")))
    } else {
        Ok(())
    };
    (rows, verdict)
}

/// [`push`] with the relay: every host connected first, the large files staged (each leaves the
/// operator once), then each host's push copies them from its own store; the stores go after.
fn push_relayed(run: &Run<'_>, hosts: &[&Host], opts: &ConnectOptions, spec: &Push) -> Result<Vec<PushResult>, Error> {
    let (c, p) = (run.cluster, run.printer);
    let items = spec.items().map_err(|(path, e)| Error::Other { message: format!("cannot read {}: {e}", path.display()), hint: Some("check the local file's path".into()), source: None })?;
    let connected = parallel::for_each(hosts, |h| h.name.clone(), "connect", run.concurrency, &run.cancel, |h| Ok(Node { host: h, remote: Arc::new(connect(&p, c, h, opts)?) as Arc<dyn Remote> }));
    let mut rows: Vec<Option<PushResult>> = Vec::new();
    let mut nodes = Vec::new();
    for r in connected {
        match r.outcome {
            Outcome::Done(n) => {
                nodes.push(n);
                rows.push(None);
            }
            Outcome::Failed(e) => rows.push(Some(PushResult::failed(&r.host, run.dry_run, HostFailure { phase: "connect".into(), ..HostFailure::from(e) }))),
            Outcome::Skipped => rows.push(Some(PushResult::failed(&r.host, run.dry_run, HostFailure::new(&r.host, "push", "not started (interrupted)")))),
        }
    }
    let plans = vec![items.clone(); nodes.len()];
    let relay = crate::engine::relay::stage(run, &nodes, &plans, spec.relay);
    let pushed = match relay {
        Ok(r) => {
            if r.mode != "none" {
                p.phase("relay", None, &r.summary());
            }
            parallel::for_each(&nodes, |n| n.host.name.clone(), "push", run.concurrency, &run.cancel, |n| Ok(push_node(run, n, &items, spec.backup, None, r.mode == "relay")))
        }
        Err(e) => {
            crate::engine::relay::cleanup(run, &nodes);
            return Err(e.into());
        }
    };
    crate::engine::relay::cleanup(run, &nodes);
    let mut pushed = pushed.into_iter();
    Ok(rows
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                let x = pushed.next().expect("one per connected host");
                match x.outcome {
                    Outcome::Done(row) => row,
                    Outcome::Failed(e) => PushResult::failed(&x.host, run.dry_run, HostFailure::from(e)),
                    Outcome::Skipped => PushResult::failed(&x.host, run.dry_run, HostFailure::new(&x.host, "push", "not started (interrupted)")),
                }
            })
        })
        .collect())
}

/// One host's push: plan `items` and (unless `run.dry_run`) write them in a [`Tx`], committed
/// when all are written (keeping the replaced files with `backup`), rolled back on a failure.
pub fn push_node(run: &Run<'_>, node: &Node<'_>, items: &[Item], backup: bool, progress: Option<Arc<dyn Fn(u64) + Send + Sync>>, relayed: bool) -> PushResult {
    let name = node.host.name.as_str();
    let units = &run.cluster.layout.units;
    let mut tx = Tx::new(node.remote.clone(), units).keep_backups(backup).progress(progress);
    match engine::push(&run.printer, node, units, items, &mut tx, run.dry_run) {
        Ok(done) => {
            let kept = tx.commit().into_iter().filter_map(|c| if let Change::FileReplaced { backup: b, .. } = c && backup { Some(b) } else { None }).collect();
            let what = match (run.dry_run, done.changed.is_empty(), done.bytes_sent) {
                (true, true, _) | (false, true, _) => "unchanged".to_string(),
                (true, false, _) => format!("{} file{} would change", done.changed.len(), plural(done.changed.len())),
                (false, false, 0) if relayed => "written (from the relay store)".to_string(),
                (false, false, 0) => "mode/owner fixed".to_string(),
                (false, false, _) => "written".to_string(),
            };
            run.printer.phase("push", Some(name), &what);
            PushResult { host: name.into(), ok: true, changed: !done.changed.is_empty(), bytes_sent: done.bytes_sent, files: done.changed, backups: kept, dry_run: run.dry_run, failure: None }
        }
        Err(e) => PushResult::failed(name, run.dry_run, HostFailure { rollback: tx.rollback(), ..HostFailure::from(e) }),
    }
}
