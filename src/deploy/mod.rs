//! Deploying the Kubernetes parts of a cluster: masters, nodes and the LB pair.
//!
//! Every part follows the same phases, per host: gather facts (read-only, on every host before
//! anything changes), push the files that differ (binaries, certificates, kubeconfigs, configs,
//! units; each replaced file keeps a backup), start what is not running and restart what runs
//! on changed files, verify, and on a failed verification put the previous files back and
//! restart the previous state. Unchanged hosts are sent nothing and restart nothing.

pub mod bins;
pub mod lb;
pub mod master;
pub mod node;
pub mod repoint;
pub mod status;
pub mod up;



use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use bins::Bins;

use crate::config::{Cluster, Host};
use crate::error::Error;
use crate::host::parallel::Cancel;
use crate::host::{Cmd, HostError, Node, Remote, Source, WriteOpts};
use crate::output::Printer;
use crate::render::{self, Component, Templates};

/// What every deploy needs.
pub struct Ctx<'c> {
    pub cluster: &'c Cluster,
    pub printer: Printer,
    pub concurrency: usize,
    pub cancel: Cancel,
    pub templates: &'c Templates,
    pub bins: &'c Bins,
    /// How long a host may take to become healthy after a start or restart.
    pub timeout: Duration,
    pub dry_run: bool,
}

/// One file to put on a host.
#[derive(Clone, Debug)]
pub struct Item {
    pub path: String,
    pub src: Source,
    pub mode: u32,
    pub secret: bool,
    /// Services to restart when this file changes.
    pub units: Vec<String>,
    /// The text, for diffs (never for secrets or binaries).
    pub text: Option<String>,
}

/// The services a changed binary restarts.
fn binary_units(component: &str, name: &str) -> Vec<String> {
    let unit = match (component, name) {
        ("kube-apiserver" | "kube-controller-manager" | "kube-scheduler" | "kubelet" | "kube-proxy" | "flanneld", n) => n,
        ("containerd", "containerd" | "containerd-shim-runc-v2") => "containerd",
        _ => return Vec::new(),
    };
    vec![unit.to_string()]
}

/// Everything `part` needs on `host`: its binaries first, then the rendered files.
pub fn items(ctx: &Ctx<'_>, host: &Host, part: Component) -> Result<Vec<Item>, Error> {
    let mut out = Vec::new();
    for b in render::binaries(ctx.cluster, host).into_iter().filter(|b| b.part == part) {
        let src = ctx.bins.get(b.component, &b.name)?;
        out.push(Item { units: binary_units(b.component, &b.name), path: b.path, src, mode: 0o755, secret: false, text: None });
    }
    for f in render::host_files(ctx.cluster, host, ctx.templates, &render::Options::default())?.into_iter().filter(|f| f.component == part) {
        let text = (!f.secret).then(|| String::from_utf8_lossy(&f.content).into_owned());
        out.push(Item { path: f.path, mode: f.mode, secret: f.secret, units: f.restarts, src: Source::bytes(f.content), text });
    }
    Ok(out)
}

/// What one host's push changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pushed {
    pub host: String,
    pub changed: Vec<String>,
    pub bytes_sent: u64,
    /// Services whose files changed.
    pub restart: BTreeSet<String>,
    /// A systemd unit file changed (daemon-reload needed).
    pub unit_files: bool,
    /// (path, backup path) of every replaced file, for rollback.
    #[serde(skip)]
    pub backups: Vec<(String, Option<String>)>,
}

/// A unified diff of two texts, for `--dry-run`.
pub fn diff(old: &str, new: &str, path: &str) -> String {
    similar::TextDiff::from_lines(old, new).unified_diff().context_radius(2).header(&format!("{path} (on host)"), &format!("{path} (kbin)")).to_string()
}

/// Push `items` to a node (or, with `dry_run`, only say what would change, with diffs of text
/// files; secrets are named, never shown).
pub fn push(printer: &Printer, node: &Node<'_>, units_dir: &str, items: &[Item], dry_run: bool) -> Result<Pushed, HostError> {
    let mut p = Pushed { host: node.host.name.clone(), ..Default::default() };
    let paths: Vec<&str> = items.iter().map(|i| i.path.as_str()).collect();
    let sums = node.remote.sha256_many(&paths)?;
    for (it, remote_sum) in items.iter().zip(sums) {
        if remote_sum.as_deref() == Some(it.src.sha256()) {
            continue;
        }
        if dry_run {
            let what = if remote_sum.is_none() { "would create" } else { "would replace" };
            let why = if it.units.is_empty() { String::new() } else { format!(", restarts {}", it.units.join(" ")) };
            let secret = if it.secret { ", secret: not shown" } else { "" };
            printer.phase("dry-run", Some(&node.host.name), &format!("{what} {} ({:o}{why}{secret})", it.path, it.mode));
            if let (Some(new), true) = (&it.text, remote_sum.is_some()) {
                if let Some(old) = node.remote.read_file(&it.path)? {
                    for line in diff(&String::from_utf8_lossy(&old), new, &it.path).lines() {
                        printer.phase("dry-run", Some(&node.host.name), line);
                    }
                }
            }
        } else {
            let w = node.remote.write_file(&it.path, &it.src, &WriteOpts::mode(it.mode).backup())?;
            if !w.changed {
                continue;
            }
            p.bytes_sent += w.bytes_sent;
            p.backups.push((it.path.clone(), w.backup.clone()));
        }
        p.changed.push(it.path.clone());
        p.restart.extend(it.units.iter().cloned());
        p.unit_files |= it.path.starts_with(units_dir) && it.path.ends_with(".service");
    }
    Ok(p)
}

/// Whether converging `items` and `units` on `node` would do anything: a file that differs or a
/// service that is not running (read-only, two round trips).
pub fn needs_change(node: &Node<'_>, items: &[Item], units: &[&str]) -> Result<bool, HostError> {
    let paths: Vec<&str> = items.iter().map(|i| i.path.as_str()).collect();
    let sums = node.remote.sha256_many(&paths)?;
    if items.iter().zip(&sums).any(|(i, s)| s.as_deref() != Some(i.src.sha256())) {
        return Ok(true);
    }
    Ok(active_units(node.remote.as_ref(), units)?.values().any(|up| !up))
}

/// Put back the files a push replaced (and remove the ones it created).
pub fn restore(node: &Node<'_>, pushed: &Pushed) -> Result<(), HostError> {
    for (path, backup) in pushed.backups.iter().rev() {
        match backup {
            Some(b) => node.remote.check(&Cmd::new(["mv", "-f", b.as_str(), path.as_str()]).sudo())?,
            None => node.remote.check(&Cmd::new(["rm", "-f", path.as_str()]).sudo())?,
        };
    }
    Ok(())
}

/// Drop the backups of a push that worked.
pub fn forget_backups(node: &Node<'_>, pushed: &Pushed) {
    let backups: Vec<&str> = pushed.backups.iter().filter_map(|(_, b)| b.as_deref()).collect();
    if !backups.is_empty() {
        let mut argv = vec!["rm", "-f", "--"];
        argv.extend(backups);
        let _ = node.remote.run(&Cmd::new(argv).sudo());
    }
}

/// `systemctl is-active` of each unit (one round trip).
pub fn active_units(remote: &dyn Remote, units: &[&str]) -> Result<BTreeMap<String, bool>, HostError> {
    let mut argv = vec!["systemctl", "is-active", "--"];
    argv.extend_from_slice(units);
    let out = remote.run(&Cmd::new(argv))?;
    let states: Vec<String> = out.stdout_str().lines().map(|l| l.trim().to_string()).collect();
    Ok(units.iter().enumerate().map(|(i, u)| (u.to_string(), states.get(i).is_some_and(|s| s == "active"))).collect())
}

pub fn systemctl(node: &Node<'_>, args: &[&str]) -> Result<(), HostError> {
    let mut argv = vec!["systemctl"];
    argv.extend_from_slice(args);
    node.remote.check(&Cmd::new(argv).sudo()).map(|_| ())
}

/// The last lines of a unit's journal, for error reports.
pub fn journal_tail(node: &Node<'_>, unit: &str, lines: usize) -> Vec<String> {
    let n = lines.to_string();
    node.remote
        .run(&Cmd::new(["journalctl", "-u", unit, "-n", n.as_str(), "--no-pager", "-o", "cat"]).sudo())
        .map(|o| o.stdout_str().lines().map(|l| format!("{} {unit}: {l}", node.host.name)).collect())
        .unwrap_or_default()
}

/// What converging one host did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostOutcome {
    pub host: String,
    pub part: String,
    pub changed: Vec<String>,
    pub bytes_sent: u64,
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub dry_run: bool,
}

/// Why converging a host failed, with what was done about it.
#[derive(Debug)]
pub struct HostFailure {
    pub host: String,
    pub phase: &'static str,
    pub message: String,
    /// Journal lines of the units involved.
    pub journal: Vec<String>,
    /// What the rollback did, when one ran.
    pub rollback: Option<String>,
}

impl HostFailure {
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("[{}] {}: {}", self.phase, self.host, self.message)];
        if let Some(r) = &self.rollback {
            out.push(format!("[rollback] {}: {r}", self.host));
        }
        out.extend(self.journal.iter().map(|l| format!("  journal: {l}")));
        out
    }
}

impl From<HostError> for HostFailure {
    fn from(e: HostError) -> Self {
        HostFailure { host: e.host().to_string(), phase: "push", message: e.chain(), journal: Vec::new(), rollback: None }
    }
}

/// What to converge on one host.
pub struct Spec<'a> {
    pub items: &'a [Item],
    /// The services, in start order.
    pub units: &'a [&'a str],
    /// Services that are reloaded, not restarted, when they run and their files changed
    /// (nginx: a reload keeps open connections).
    pub reload: &'a [&'a str],
    /// A command that must succeed on the new files before anything is (re)started (`nginx -t`,
    /// the node preparation), with the short name errors use for it.
    pub precheck: Option<(&'a str, Cmd)>,
}

/// Push the spec's items to `node`, then start the units that are not running and restart (or
/// reload) the running ones whose files changed, in the order given, then `verify`. If
/// anything after the push fails, the previous files come back, units that were running are
/// restarted on them, units this run started are stopped and disabled again, and the failure is
/// returned.
pub fn converge(ctx: &Ctx<'_>, node: &Node<'_>, part: &str, spec: &Spec<'_>, verify: &dyn Fn(&Node<'_>) -> Result<(), String>) -> Result<HostOutcome, HostFailure> {
    let (items, units) = (spec.items, spec.units);
    let name = node.host.name.clone();
    let mut out = HostOutcome { host: name.clone(), part: part.to_string(), dry_run: ctx.dry_run, ..Default::default() };
    let active = active_units(node.remote.as_ref(), units)?;
    let pushed = push(&ctx.printer, node, &ctx.cluster.layout.units, items, ctx.dry_run)?;
    out.changed = pushed.changed.clone();
    out.bytes_sent = pushed.bytes_sent;
    let to_start: Vec<&str> = units.iter().copied().filter(|u| !active[*u]).collect();
    let to_restart: Vec<&str> = units.iter().copied().filter(|u| active[*u] && pushed.restart.contains(*u)).collect();
    if ctx.dry_run {
        let mut what = Vec::new();
        if !to_start.is_empty() {
            what.push(format!("would start {}", to_start.join(" ")));
        }
        if !to_restart.is_empty() {
            what.push(format!("would restart {}", to_restart.join(" ")));
        }
        let summary = if pushed.changed.is_empty() && what.is_empty() { "up to date".to_string() } else { format!("{} files would change; {}", pushed.changed.len(), if what.is_empty() { "no restarts".into() } else { what.join(", ") }) };
        ctx.printer.phase("dry-run", Some(&name), &format!("{part}: {summary}"));
        out.started = to_start.iter().map(|s| s.to_string()).collect();
        out.restarted = to_restart.iter().map(|s| s.to_string()).collect();
        return Ok(out);
    }
    if pushed.changed.is_empty() && to_start.is_empty() {
        ctx.printer.phase(part, Some(&name), "up to date, nothing sent");
        return Ok(out);
    }
    ctx.printer.phase(part, Some(&name), &format!("{} files changed, {} bytes sent", pushed.changed.len(), pushed.bytes_sent));
    let run = || -> Result<(), String> {
        if let Some((what, c)) = &spec.precheck {
            let o = node.remote.run(c).map_err(|e| e.chain())?;
            if !o.success() {
                return Err(format!("{what} failed: {}", o.stderr_str().trim()));
            }
        }
        let sys = |a: &[&str]| systemctl(node, a).map_err(|e| e.chain());
        if pushed.unit_files || !to_start.is_empty() {
            sys(&["daemon-reload"])?;
        }
        if !to_start.is_empty() {
            let mut a = vec!["enable", "--quiet"];
            a.extend(&to_start);
            sys(&a)?;
        }
        // one unit after the other, in dependency order (containerd before kubelet)
        for u in units.iter().filter(|u| to_start.contains(u) || to_restart.contains(u)) {
            let verb = if to_restart.contains(u) && spec.reload.contains(u) { "reload" } else { "restart" };
            sys(&[verb, u])?;
        }
        Ok(())
    };
    let result = run().and_then(|()| {
        if !to_start.is_empty() {
            ctx.printer.phase(part, Some(&name), &format!("started {}", to_start.join(" ")));
        }
        if !to_restart.is_empty() {
            ctx.printer.phase(part, Some(&name), &format!("restarted {} (their files changed)", to_restart.join(" ")));
        }
        verify(node)
    });
    match result {
        Ok(()) => {
            forget_backups(node, &pushed);
            out.started = to_start.iter().map(|s| s.to_string()).collect();
            out.restarted = to_restart.iter().map(|s| s.to_string()).collect();
            Ok(out)
        }
        Err(message) => {
            let journal: Vec<String> = units.iter().filter(|u| to_start.contains(u) || to_restart.contains(u)).flat_map(|u| journal_tail(node, u, 8)).collect();
            ctx.printer.phase("rollback", Some(&name), &format!("{part} did not become healthy: restoring the previous files"));
            let rollback = (|| -> Result<String, HostError> {
                if !to_start.is_empty() {
                    let mut a = vec!["disable", "--now", "--quiet"];
                    a.extend(&to_start);
                    systemctl(node, &a)?;
                }
                restore(node, &pushed)?;
                systemctl(node, &["daemon-reload"])?;
                for u in &to_restart {
                    systemctl(node, &["restart", u])?;
                }
                let mut said = vec!["previous files restored".to_string()];
                if !to_start.is_empty() {
                    said.push(format!("stopped {}", to_start.join(" ")));
                }
                if !to_restart.is_empty() {
                    said.push(format!("restarted {} on them", to_restart.join(" ")));
                    // a real apiserver needs seconds after a restart: the rollback is done when
                    // the previous version answers again, not when systemd has started it
                    said.push(match verify(node) {
                        Ok(()) => "healthy again".to_string(),
                        Err(e) => format!("still not healthy: {e}"),
                    });
                }
                Ok(said.join(", "))
            })()
            .unwrap_or_else(|e| format!("failed: {}", e.chain()));
            Err(HostFailure { host: name, phase: "verify", message, journal, rollback: Some(rollback) })
        }
    }
}

/// Poll `check` until it returns `Ok`, or return its last error after `timeout`.
pub fn wait_for(timeout: Duration, cancel: &Cancel, mut check: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(format!("{last} (waited {}s)", timeout.as_secs()));
        }
        if cancel.is_cancelled() {
            return Err(format!("{last} (interrupted)"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `uname -m` of the hosts the cluster's binaries are for.
pub fn uname_arch(cluster: &Cluster) -> &'static str {
    match cluster.artifacts.arch {
        crate::artifacts::Arch::Amd64 => "x86_64",
        crate::artifacts::Arch::Arm64 => "aarch64",
    }
}

/// The client kbin talks to apiservers with: the cluster CA and the super-admin
/// (`system:masters`) certificate, which works before any RBAC exists.
pub fn api_client(cluster: &Cluster) -> Result<crate::kube::Client, Error> {
    Ok(crate::kube::Client::from_pki(&cluster.pki_dir(), "super-admin")?)
}

/// Turn per-host failures into the one error the CLI reports.
pub fn failed(what: String, failures: &[HostFailure], hint: &str) -> Error {
    Error::Failed { what, problems: failures.iter().flat_map(|f| f.lines()).collect(), hint: Some(hint.to_string()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Output;
    use crate::host::fake::{FakeHost, ok};
    use std::sync::Arc;

    const CLUSTER: &str = "[cluster]\nname = \"t\"\n[[hosts]]\nname = \"m1\"\naddress = \"10.9.0.1\"\nroles = [\"etcd\", \"master\", \"node\"]\n";

    /// A fake host that answers `systemctl is-active` with `state` for every unit and really
    /// does the `mv` and `rm` a rollback runs.
    fn host(root: &std::path::Path, state: &'static str) -> Arc<FakeHost> {
        let r = root.to_path_buf();
        Arc::new(FakeHost::new("m1", root).respond(move |c| {
            let a: Vec<&str> = c.argv.iter().map(String::as_str).collect();
            let local = |p: &str| r.join(p.trim_start_matches('/'));
            match a.as_slice() {
                ["systemctl", "is-active", "--", units @ ..] => Some(ok(&format!("{state}\n").repeat(units.len()))),
                ["mv", "-f", from, to] => {
                    std::fs::rename(local(from), local(to)).unwrap();
                    Some(ok(""))
                }
                ["rm", "-f", rest @ ..] => {
                    for p in rest.iter().filter(|p| **p != "--") {
                        let _ = std::fs::remove_file(local(p));
                    }
                    Some(ok(""))
                }
                _ => None,
            }
        }))
    }

    fn item(path: &str, text: &str, unit: &str) -> Item {
        Item { path: path.into(), src: Source::bytes(text.as_bytes().to_vec()), mode: 0o644, secret: false, units: vec![unit.into()], text: Some(text.into()) }
    }

    fn with_ctx(f: impl FnOnce(&Ctx<'_>)) {
        let cluster = crate::config::parse(std::path::Path::new("cluster.toml"), CLUSTER).unwrap();
        let templates = Templates::load(&cluster).unwrap();
        let bins = Bins::default();
        let ctx = Ctx { cluster: &cluster, printer: Printer { quiet: true, color: false }, concurrency: 2, cancel: Cancel::new(), templates: &templates, bins: &bins, timeout: Duration::from_secs(1), dry_run: false };
        f(&ctx);
    }

    fn systemctl_calls(h: &FakeHost) -> Vec<String> {
        h.commands().into_iter().filter(|a| a[0] == "systemctl" && a[1] != "is-active").map(|a| a[1..].join(" ")).collect()
    }

    #[test]
    fn a_fresh_host_gets_its_files_and_its_services_started_in_order() {
        let d = tempfile::tempdir().unwrap();
        let h = host(d.path(), "inactive");
        let cluster = crate::config::parse(std::path::Path::new("cluster.toml"), CLUSTER).unwrap();
        let node = Node { host: &cluster.hosts[0], remote: h.clone() };
        let items = [item("/usr/lib/systemd/system/a.service", "[Service]\n", "a"), item("/etc/b.conf", "b=1\n", "b")];
        with_ctx(|ctx| {
            let spec = Spec { items: &items, units: &["a", "b"], reload: &[], precheck: None };
            let o = converge(ctx, &node, "test", &spec, &|_| Ok(())).unwrap();
            assert_eq!(o.started, ["a", "b"]);
            assert_eq!(o.changed.len(), 2);
        });
        assert_eq!(systemctl_calls(&h), ["daemon-reload", "enable --quiet a b", "restart a", "restart b"]);
        assert_eq!(std::fs::read_to_string(h.path("/etc/b.conf")).unwrap(), "b=1\n");
    }

    #[test]
    fn an_up_to_date_host_is_sent_nothing_and_nothing_restarts() {
        let d = tempfile::tempdir().unwrap();
        let h = host(d.path(), "active");
        std::fs::create_dir_all(h.path("/etc")).unwrap();
        std::fs::write(h.path("/etc/b.conf"), "b=1\n").unwrap();
        let cluster = crate::config::parse(std::path::Path::new("cluster.toml"), CLUSTER).unwrap();
        let node = Node { host: &cluster.hosts[0], remote: h.clone() };
        let items = [item("/etc/b.conf", "b=1\n", "b")];
        with_ctx(|ctx| {
            let spec = Spec { items: &items, units: &["b"], reload: &[], precheck: None };
            let o = converge(ctx, &node, "test", &spec, &|_| panic!("nothing changed: nothing to verify")).unwrap();
            assert!(o.changed.is_empty() && o.started.is_empty() && o.restarted.is_empty());
        });
        assert!(systemctl_calls(&h).is_empty());
    }

    #[test]
    fn a_failed_verification_restores_the_previous_files_and_restarts_on_them() {
        let d = tempfile::tempdir().unwrap();
        let h = host(d.path(), "active");
        std::fs::create_dir_all(h.path("/etc")).unwrap();
        std::fs::write(h.path("/etc/b.conf"), "b=1\n").unwrap();
        let cluster = crate::config::parse(std::path::Path::new("cluster.toml"), CLUSTER).unwrap();
        let node = Node { host: &cluster.hosts[0], remote: h.clone() };
        let items = [item("/etc/b.conf", "b=2\n", "b"), item("/etc/new.conf", "n\n", "b")];
        with_ctx(|ctx| {
            let spec = Spec { items: &items, units: &["b"], reload: &[], precheck: None };
            // the new files never answer; once the old ones are back, b answers again
            let calls = std::cell::Cell::new(0);
            let f = converge(ctx, &node, "test", &spec, &|_| {
                calls.set(calls.get() + 1);
                if calls.get() == 1 { Err("b does not answer".into()) } else { Ok(()) }
            })
            .unwrap_err();
            assert_eq!(f.message, "b does not answer");
            let rollback = f.rollback.unwrap();
            assert!(rollback.contains("previous files restored"), "{rollback}");
            assert!(rollback.ends_with("restarted b on them, healthy again"), "the rollback waits for the old version to answer: {rollback}");
        });
        assert_eq!(std::fs::read_to_string(h.path("/etc/b.conf")).unwrap(), "b=1\n", "the old content is back");
        assert!(!h.path("/etc/new.conf").exists(), "a file the push created is gone");
        assert_eq!(systemctl_calls(&h), ["restart b", "daemon-reload", "restart b"]);
        let left: Vec<_> = std::fs::read_dir(h.path("/etc")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(left, ["b.conf"], "no backup left behind");
    }

    /// A master whose controller-manager and scheduler are in systemd's auto-restart for the
    /// first `down_polls` polls, and whose restart counter goes up by `restarts` on every read.
    fn master_host(root: &std::path::Path, down_polls: usize, restarts: usize) -> Arc<FakeHost> {
        let polls = std::sync::atomic::AtomicUsize::new(0);
        let reads = std::sync::atomic::AtomicUsize::new(0);
        Arc::new(FakeHost::new("m1", root).respond(move |c| {
            let a: Vec<&str> = c.argv.iter().map(String::as_str).collect();
            match a.as_slice() {
                ["systemctl", "is-active", "--", units @ ..] => {
                    let state = if polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < down_polls { "activating" } else { "active" };
                    Some(ok(&format!("{state}\n").repeat(units.len())))
                }
                ["systemctl", "show", "-p", "NRestarts", "--value", "--", units @ ..] => {
                    let n = reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) * restarts;
                    Some(ok(&format!("{n}\n").repeat(units.len())))
                }
                _ => None,
            }
        }))
    }

    #[test]
    fn a_controller_manager_restarting_after_losing_its_lease_is_waited_for() {
        // regression (real components): the controller-manager holding the leader lease exits
        // when its apiserver restarts; `master add` called that master failed and rolled it back
        let d = tempfile::tempdir().unwrap();
        let cluster = crate::config::parse(std::path::Path::new("cluster.toml"), CLUSTER).unwrap();
        with_ctx(|ctx| {
            let node = Node { host: &cluster.hosts[0], remote: master_host(d.path(), 3, 0) };
            assert_eq!(master::control_plane_settled(ctx, &node), Ok(()));
            let looping = Node { host: &cluster.hosts[0], remote: master_host(d.path(), 0, 1) };
            let e = master::control_plane_settled(ctx, &looping).unwrap_err();
            assert!(e.contains("keep restarting"), "{e}");
            let dead = Node { host: &cluster.hosts[0], remote: master_host(d.path(), usize::MAX, 0) };
            let e = master::control_plane_settled(ctx, &dead).unwrap_err();
            assert!(e.contains("kube-controller-manager and kube-scheduler not running") && e.contains("waited"), "{e}");
        });
    }

    #[test]
    fn a_refused_precheck_changes_no_service_and_puts_the_files_back() {
        let d = tempfile::tempdir().unwrap();
        let cluster = crate::config::parse(std::path::Path::new("cluster.toml"), CLUSTER).unwrap();
        let items = [item("/etc/nginx/nginx.conf", "bad\n", "nginx")];
        with_ctx(|ctx| {
            let spec = Spec { items: &items, units: &["nginx"], reload: &["nginx"], precheck: Some(("nginx -t", Cmd::new(["false"]))) };
            // the fake answers `false` with exit 0 unless told otherwise: make it fail
            let failing = Arc::new(FakeHost::new("m1", d.path()).respond(|c| {
                if c.argv[0] == "false" {
                    Some(Output { status: 1, signal: None, stdout: vec![], stderr: b"emerg: unknown directive \"bad\"".to_vec() })
                } else if c.argv[0] == "systemctl" && c.argv[1] == "is-active" {
                    Some(ok("inactive\n"))
                } else {
                    None
                }
            }));
            let node = Node { host: &cluster.hosts[0], remote: failing.clone() };
            let f = converge(ctx, &node, "lb", &spec, &|_| Ok(())).unwrap_err();
            assert!(f.message.starts_with("nginx -t failed: emerg"), "{}", f.message);
            assert!(!systemctl_calls(&failing).iter().any(|c| c.starts_with("restart") || c.starts_with("reload") || c.starts_with("enable")), "{:?}", systemctl_calls(&failing));
        });
    }
}
