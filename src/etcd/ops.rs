//! `kbin etcd deploy|status|add|remove|backup`: phases over the etcd hosts.
//!
//! Every operation first runs read-only preflight on every host it will touch and refuses (exit
//! 2, nothing changed) if anything is wrong. Changes are pushed in parallel; a member whose files
//! changed on a running cluster is restarted alone, and the next one only after the cluster is
//! healthy again; if it does not come back, its previous files are restored and the rollout stops.
//! Health is checked from the operator over mutual TLS *through the SSH connection* to each host,
//! so it works behind a bastion.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::api::{Client, Member, Status};
use crate::config::{Cluster, Host, Role};
use crate::error::Error;
use crate::host::parallel::{self, Cancel, Outcome};
use crate::host::{Cmd, HostError, Source, WriteOpts};
use crate::output::Printer;
use crate::render::{self, Component, HostFile, Templates};
use crate::tls::Identity;

pub use crate::host::Node;

/// What every operation needs.
pub struct Ctx<'c> {
    pub cluster: &'c Cluster,
    pub printer: Printer,
    pub concurrency: usize,
    pub cancel: Cancel,
    pub client: Client,
    /// How long to wait for members to become healthy.
    pub health_timeout: Duration,
}

/// The etcd and etcdctl binaries to install.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub etcd: Source,
    pub etcdctl: Source,
}

/// The client identity kbin uses towards etcd: the etcd CA and the healthcheck client cert.
pub fn identity(cluster: &Cluster) -> Result<Identity, Error> {
    let pki = cluster.pki_dir();
    let read = |rel: &str| {
        std::fs::read_to_string(pki.join(rel)).map_err(|e| Error::other(format!("cannot read {}: {e}", pki.join(rel).display()), Some("run `kbin pki init` first")))
    };
    Ok(Identity { ca_pem: read("etcd/ca.crt")?, client: Some((read("etcd/healthcheck-client.crt")?, read("etcd/healthcheck-client.key")?)) })
}

fn addr(h: &Host) -> String {
    h.address.to_string()
}

fn peer_url(h: &Host) -> String {
    crate::config::url_for(&addr(h), 2380)
}

// ---------------------------------------------------------------------------------------------
// Preflight
// ---------------------------------------------------------------------------------------------

/// What preflight learns about a host. Read-only.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub arch: String,
    /// `systemctl is-active etcd` said active.
    pub active: bool,
    /// The data directory holds a member (`<data>/member`).
    pub has_data: bool,
    /// `initial-cluster-token` of an etcd.yml kbin wrote earlier, if any.
    pub token: Option<String>,
    /// Of 2379/2380, the ports something listens on.
    pub busy_ports: Vec<u16>,
}

const FACTS_SCRIPT: &str = r#"
echo "arch=$(uname -m)"
echo "active=$(systemctl is-active etcd 2>/dev/null || true)"
if [ -d "$1/member" ]; then echo data=yes; else echo data=no; fi
for p in 2379 2380; do
  if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then echo "busy=$p"; fi
done
"#;

pub fn gather(cluster: &Cluster, node: &Node<'_>) -> Result<Facts, HostError> {
    let out = node.remote.check(&Cmd::new(["sh", "-c", FACTS_SCRIPT, "kbin-facts", &cluster.layout.etcd_data]).sudo())?;
    let mut f = Facts { arch: String::new(), active: false, has_data: false, token: None, busy_ports: Vec::new() };
    for line in out.stdout_str().lines() {
        match line.split_once('=') {
            Some(("arch", v)) => f.arch = v.trim().to_string(),
            Some(("active", v)) => f.active = v.trim() == "active",
            Some(("data", v)) => f.has_data = v.trim() == "yes",
            Some(("busy", v)) => f.busy_ports.extend(v.trim().parse::<u16>().ok()),
            _ => {}
        }
    }
    if let Some(bytes) = node.remote.read_file(&format!("{}/etcd.yml", cluster.layout.etcd_cfg))? {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&bytes).unwrap_or_default();
        f.token = v.get("initial-cluster-token").and_then(|t| t.as_str()).map(str::to_string);
    }
    Ok(f)
}

fn token(cluster: &Cluster) -> String {
    format!("etcd-{}", cluster.name)
}

/// Why a host cannot take part, if it cannot.
pub fn refusal(cluster: &Cluster, f: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    let want_arch = match cluster.artifacts.arch {
        crate::artifacts::Arch::Amd64 => "x86_64",
        crate::artifacts::Arch::Arm64 => "aarch64",
    };
    if f.arch != want_arch {
        out.push(format!("architecture is {}, but the cluster installs {} binaries (artifacts.arch)", f.arch, cluster.artifacts.arch.as_str()));
    }
    let ours = f.token.as_deref() == Some(token(cluster).as_str());
    match &f.token {
        Some(t) if !ours => out.push(format!("{}/etcd.yml belongs to another etcd cluster (token {t:?})", cluster.layout.etcd_cfg)),
        None if f.has_data => out.push(format!("{} holds data of an etcd member kbin did not set up", cluster.layout.etcd_data)),
        _ => {}
    }
    if !(ours && f.active) {
        for p in &f.busy_ports {
            out.push(format!("port {p} is already in use by another program"));
        }
    }
    out
}

/// Gather facts on every node in parallel; refuse (nothing changed) if any host cannot take part.
pub fn preflight(ctx: &Ctx<'_>, nodes: &[Node<'_>]) -> Result<Vec<Facts>, Error> {
    let results = parallel::for_each(nodes, |n| n.host.name.clone(), "preflight", ctx.concurrency, &ctx.cancel, |n| gather(ctx.cluster, n));
    let mut problems = Vec::new();
    let mut facts = Vec::new();
    for (r, n) in results.into_iter().zip(nodes) {
        match r.outcome {
            Outcome::Done(f) => {
                for p in refusal(ctx.cluster, &f) {
                    problems.push(format!("[preflight] {}: {p}", n.host.name));
                }
                facts.push(f);
            }
            Outcome::Failed(e) => problems.push(format!("[preflight] {}: {}", n.host.name, e.chain())),
            Outcome::Skipped => return Err(Error::Interrupted { what: "stopped during preflight; nothing was changed".into() }),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Refused {
            what: format!("preflight refused the run on {} of {} etcd hosts; nothing was changed", problems.len().min(nodes.len()), nodes.len()),
            problems,
            hint: Some("fix the hosts listed above (or the cluster file) and run the command again".into()),
        });
    }
    for (n, f) in nodes.iter().zip(&facts) {
        let state = if f.active { "etcd running" } else if f.has_data { "etcd stopped" } else { "fresh" };
        ctx.printer.phase("preflight", Some(&n.host.name), &format!("ok ({}, {state})", f.arch));
    }
    Ok(facts)
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// One file to put on a host.
#[derive(Clone, Debug)]
pub struct Item {
    pub path: String,
    pub src: Source,
    pub mode: u32,
    pub secret: bool,
    /// Changing it needs an etcd restart.
    pub restarts: bool,
    pub text: Option<String>,
}

/// Everything etcd needs on `host`: binaries, certificates, config and unit.
pub fn items(cluster: &Cluster, host: &Host, templates: &Templates, bins: &Binaries, opts: &render::Options) -> Result<Vec<Item>, Error> {
    let files: Vec<HostFile> = render::host_files(cluster, host, templates, opts)?.into_iter().filter(|f| f.component == Component::Etcd).collect();
    let mut out = vec![
        Item { path: format!("{}/etcd", cluster.layout.etcd_bin), src: bins.etcd.clone(), mode: 0o755, secret: false, restarts: true, text: None },
        Item { path: format!("{}/etcdctl", cluster.layout.etcd_bin), src: bins.etcdctl.clone(), mode: 0o755, secret: false, restarts: false, text: None },
    ];
    for f in files {
        let text = (!f.secret).then(|| String::from_utf8_lossy(&f.content).into_owned());
        out.push(Item { path: f.path, mode: f.mode, secret: f.secret, restarts: !f.restarts.is_empty(), src: Source::bytes(f.content), text });
    }
    Ok(out)
}

/// etcd.yml without the `initial-*` keys, which etcd reads only when a member first starts: a
/// change to them alone (a member was added to the file) needs no restart.
fn significant_config(text: &str) -> String {
    text.lines().filter(|l| !l.starts_with("initial-")).collect::<Vec<_>>().join("\n")
}

/// What one host's push changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pushed {
    pub host: String,
    pub changed: Vec<String>,
    pub bytes_sent: u64,
    pub needs_restart: bool,
    pub unit_changed: bool,
    /// (path, backup path) of every replaced file, for rollback.
    #[serde(skip)]
    pub backups: Vec<(String, Option<String>)>,
}

/// A unified diff of two texts, for `--dry-run`.
pub fn diff(old: &str, new: &str, path: &str) -> String {
    similar::TextDiff::from_lines(old, new).unified_diff().context_radius(2).header(&format!("{path} (on host)"), &format!("{path} (kbin)")).to_string()
}

/// Push `items` to a node (or, with `dry_run`, only say what would change).
pub fn push(cluster: &Cluster, printer: &Printer, node: &Node<'_>, items: &[Item], dry_run: bool) -> Result<Pushed, HostError> {
    let mut p = Pushed { host: node.host.name.clone(), ..Default::default() };
    let config_path = format!("{}/etcd.yml", cluster.layout.etcd_cfg);
    let unit_path = format!("{}/etcd.service", cluster.layout.units);
    let paths: Vec<&str> = items.iter().map(|i| i.path.as_str()).collect();
    let sums = node.remote.sha256_many(&paths)?;
    for (it, remote_sum) in items.iter().zip(sums) {
        if remote_sum.as_deref() == Some(it.src.sha256()) {
            continue;
        }
        // a config change in initial-* keys only does not restart the member
        let mut restarts = it.restarts;
        let old_text = if it.text.is_some() && remote_sum.is_some() { node.remote.read_file(&it.path)?.map(|b| String::from_utf8_lossy(&b).into_owned()) } else { None };
        if it.path == config_path {
            if let (Some(old), Some(new)) = (&old_text, &it.text) {
                if significant_config(old) == significant_config(new) {
                    restarts = false;
                }
            }
        }
        if dry_run {
            let what = if remote_sum.is_none() { "would create" } else { "would replace" };
            let why = if restarts { ", restarts etcd" } else { "" };
            printer.phase("dry-run", Some(&node.host.name), &format!("{what} {} ({:o}{why})", it.path, it.mode));
            if let (Some(old), Some(new)) = (&old_text, &it.text) {
                for line in diff(old, new, &it.path).lines() {
                    printer.phase("dry-run", Some(&node.host.name), line);
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
        p.needs_restart |= restarts;
        p.unit_changed |= it.path == unit_path;
    }
    Ok(p)
}

/// Put back the files a push replaced (and remove the ones it created).
pub fn restore(node: &Node<'_>, pushed: &Pushed) -> Result<(), HostError> {
    for (path, backup) in &pushed.backups {
        match backup {
            Some(b) => node.remote.check(&Cmd::new(["mv", "-f", b.as_str(), path.as_str()]).sudo())?,
            None => node.remote.check(&Cmd::new(["rm", "-f", path.as_str()]).sudo())?,
        };
    }
    Ok(())
}

/// Drop the backups of a push that worked.
fn forget_backups(node: &Node<'_>, pushed: &Pushed) {
    let backups: Vec<&str> = pushed.backups.iter().filter_map(|(_, b)| b.as_deref()).collect();
    if !backups.is_empty() {
        let mut argv = vec!["rm", "-f", "--"];
        argv.extend(backups);
        let _ = node.remote.run(&Cmd::new(argv).sudo());
    }
}

// ---------------------------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------------------------

/// `/health` of the member on `node`, through its SSH connection.
pub fn member_health(ctx: &Ctx<'_>, node: &Node<'_>) -> Result<bool, String> {
    let a = addr(node.host);
    let t = node.remote.open_tcp(&a, 2379).map_err(|e| e.chain())?;
    ctx.client.health(t, &a).map_err(|e| e.to_string())
}

pub fn member_status(ctx: &Ctx<'_>, node: &Node<'_>) -> Result<Status, String> {
    let a = addr(node.host);
    let t = node.remote.open_tcp(&a, 2379).map_err(|e| e.chain())?;
    ctx.client.status(t, &a).map_err(|e| e.to_string())
}

pub fn members(ctx: &Ctx<'_>, node: &Node<'_>) -> Result<Vec<Member>, String> {
    let a = addr(node.host);
    let t = node.remote.open_tcp(&a, 2379).map_err(|e| e.chain())?;
    ctx.client.member_list(t, &a).map_err(|e| e.to_string())
}

/// Wait until every node's member reports healthy; the last error per host on timeout.
pub fn wait_healthy(ctx: &Ctx<'_>, nodes: &[&Node<'_>]) -> Result<(), Vec<(String, String)>> {
    let deadline = Instant::now() + ctx.health_timeout;
    let mut pending: Vec<&Node<'_>> = nodes.to_vec();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    loop {
        pending.retain(|n| match member_health(ctx, n) {
            Ok(true) => false,
            Ok(false) => {
                last.insert(n.host.name.clone(), "reports unhealthy (no leader yet?)".into());
                true
            }
            Err(e) => {
                last.insert(n.host.name.clone(), e);
                true
            }
        });
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline || ctx.cancel.is_cancelled() {
            return Err(pending.iter().map(|n| (n.host.name.clone(), last.get(&n.host.name).cloned().unwrap_or_default())).collect());
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn journal_tail(node: &Node<'_>) -> String {
    node.remote
        .run(&Cmd::new(["journalctl", "-u", "etcd", "-n", "15", "--no-pager", "-o", "cat"]).sudo())
        .map(|o| o.stdout_str())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// deploy
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Serialize)]
pub struct DeployReport {
    pub hosts: Vec<Pushed>,
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub bytes_sent: u64,
    pub members: Vec<MemberReport>,
    pub dry_run: bool,
}

/// One member as `status` and `deploy` report it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    pub name: String,
    pub address: String,
    pub reachable: bool,
    pub healthy: bool,
    pub leader: bool,
    pub id: Option<String>,
    pub version: Option<String>,
    pub db_size: Option<u64>,
    pub revision: Option<u64>,
    /// Days until the member's server certificate (local pki) expires.
    pub cert_days_left: Option<i64>,
    pub error: Option<String>,
}

const START_SCRIPT: &str = "systemctl daemon-reload && systemctl enable --quiet etcd && systemctl restart --no-block etcd";

fn sys(node: &Node<'_>, args: &[&str]) -> Result<(), HostError> {
    let mut argv = vec!["systemctl"];
    argv.extend_from_slice(args);
    node.remote.check(&Cmd::new(argv).sudo()).map(|_| ())
}

/// `kbin etcd deploy`.
pub fn deploy(ctx: &Ctx<'_>, nodes: &[Node<'_>], templates: &Templates, bins: &Binaries, dry_run: bool) -> Result<DeployReport, Error> {
    let facts = preflight(ctx, nodes)?;
    let opts = render::Options::default();
    let mut plan = Vec::new();
    for n in nodes {
        plan.push(items(ctx.cluster, n.host, templates, bins, &opts)?);
    }
    // Push in parallel. A member that is not running yet is started as soon as the files it
    // needs to start are in place, and etcdctl (not needed to start) follows while it elects.
    let idx: Vec<usize> = (0..nodes.len()).collect();
    let results = parallel::for_each(&idx, |i| nodes[*i].host.name.clone(), "push", ctx.concurrency, &ctx.cancel, |i| {
        let (n, f) = (&nodes[*i], &facts[*i]);
        let (first, later): (Vec<Item>, Vec<Item>) = plan[*i].iter().cloned().partition(|it| it.restarts || f.active);
        let mut p = push(ctx.cluster, &ctx.printer, n, &first, dry_run)?;
        let start = !dry_run && !f.active;
        if start {
            // one round trip; a member that ran before must pick up changed files: restart
            n.remote.check(&Cmd::new(["sh", "-c", START_SCRIPT]).sudo())?;
            ctx.printer.phase("start", Some(&n.host.name), "etcd starting");
        }
        let rest = push(ctx.cluster, &ctx.printer, n, &later, dry_run)?;
        p.changed.extend(rest.changed);
        p.bytes_sent += rest.bytes_sent;
        p.backups.extend(rest.backups);
        p.unit_changed |= rest.unit_changed;
        if !dry_run {
            let msg = if p.changed.is_empty() { "up to date, nothing sent".to_string() } else { format!("{} files changed, {} bytes sent", p.changed.len(), p.bytes_sent) };
            ctx.printer.phase("push", Some(&n.host.name), &msg);
        }
        Ok((p, start))
    });
    let mut pushed = Vec::new();
    let mut started = Vec::new();
    let mut failures = Vec::new();
    for r in results {
        match r.outcome {
            Outcome::Done((p, s)) => {
                if s {
                    started.push(p.host.clone());
                }
                pushed.push(p);
            }
            Outcome::Failed(e) => failures.push(format!("[push] {}: {}", r.host, e.chain())),
            Outcome::Skipped => failures.push(format!("[push] {}: not started (interrupted)", r.host)),
        }
    }
    if !failures.is_empty() {
        return Err(Error::Failed { what: "pushing etcd files failed".into(), problems: failures, hint: Some("fix the hosts listed above and run `kbin etcd deploy` again; finished hosts are not sent anything again".into()) });
    }
    let mut report = DeployReport { bytes_sent: pushed.iter().map(|p| p.bytes_sent).sum(), dry_run, ..Default::default() };
    if dry_run {
        for (n, (p, f)) in nodes.iter().zip(pushed.iter().zip(&facts)) {
            let action = if !f.active { "would start etcd" } else if p.needs_restart { "would restart etcd" } else { "no restart" };
            ctx.printer.phase("dry-run", Some(&n.host.name), &format!("{} files would change; {action}", p.changed.len()));
        }
        report.hosts = pushed;
        return Ok(report);
    }
    report.started = started;
    let mut failures: Vec<String>;

    // running members whose files changed: one at a time, healthy in between, rollback on failure
    for i in (0..nodes.len()).filter(|i| facts[*i].active) {
        let (n, p) = (&nodes[i], &pushed[i]);
        if p.changed.is_empty() {
            continue;
        }
        if p.unit_changed {
            sys(n, &["daemon-reload"])?;
        }
        if !p.needs_restart {
            forget_backups(n, p);
            continue;
        }
        if ctx.cancel.is_cancelled() {
            return Err(Error::Interrupted { what: format!("stopped before restarting {}; its new files are in place but etcd still runs the old ones", n.host.name) });
        }
        ctx.printer.phase("restart", Some(&n.host.name), "restarting etcd (its files changed)");
        sys(n, &["restart", "--no-block", "etcd"])?;
        if let Err(bad) = wait_healthy(ctx, &[n]) {
            let journal = journal_tail(n);
            ctx.printer.phase("rollback", Some(&n.host.name), "etcd did not come back: restoring its previous files");
            restore(n, p)?;
            sys(n, &["daemon-reload"])?;
            sys(n, &["restart", "--no-block", "etcd"])?;
            let back = wait_healthy(ctx, &[n]).is_ok();
            failures = bad.iter().map(|(h, e)| format!("[restart] {h}: {e}")).collect();
            failures.push(format!("[rollback] {}: previous files restored, etcd {}", n.host.name, if back { "healthy again" } else { "still unhealthy" }));
            failures.extend(journal.lines().map(|l| format!("  journal: {l}")));
            return Err(Error::Failed { what: format!("{} did not become healthy after its restart; the rollout stopped", n.host.name), problems: failures, hint: Some("the members after it were not touched; fix the cause (see the journal lines) and run `kbin etcd deploy` again".into()) });
        }
        forget_backups(n, p);
        report.restarted.push(n.host.name.clone());
    }

    // every member healthy
    let all: Vec<&Node<'_>> = nodes.iter().collect();
    if let Err(bad) = wait_healthy(ctx, &all) {
        let mut problems: Vec<String> = bad.iter().map(|(h, e)| format!("[verify] {h}: {e}")).collect();
        for n in nodes.iter().filter(|n| bad.iter().any(|(h, _)| h == &n.host.name)) {
            problems.extend(journal_tail(n).lines().map(|l| format!("  {} journal: {l}", n.host.name)));
        }
        return Err(Error::Failed { what: format!("etcd did not become healthy within {}s", ctx.health_timeout.as_secs()), problems, hint: Some("check the journal lines above; the files are in place, so fixing the cause and running `kbin etcd deploy` again resumes".into()) });
    }
    for p in &pushed {
        if let Some(n) = nodes.iter().find(|n| n.host.name == p.host) {
            if report.started.contains(&p.host) {
                forget_backups(n, p);
            }
        }
    }
    report.hosts = pushed;
    report.members = status(ctx, nodes.iter().map(|n| (n.host, Ok(n.clone()))).collect());
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------------------------

fn cert_days_left(cluster: &Cluster, host: &Host) -> Option<i64> {
    let path = cluster.pki_dir().join(format!("hosts/{}/etcd-server.crt", host.name));
    crate::pki::read_cert_info("", "", &path).ok().map(|i| i.days_left)
}

/// Health, role and numbers of each member; unreachable hosts are reported, not fatal.
pub fn status<'c>(ctx: &Ctx<'c>, hosts: Vec<(&'c Host, Result<Node<'c>, String>)>) -> Vec<MemberReport> {
    let results = parallel::for_each(&hosts, |(h, _)| h.name.clone(), "status", ctx.concurrency, &ctx.cancel, |(h, n)| {
        let mut r = MemberReport {
            name: h.name.clone(),
            address: addr(h),
            reachable: false,
            healthy: false,
            leader: false,
            id: None,
            version: None,
            db_size: None,
            revision: None,
            cert_days_left: cert_days_left(ctx.cluster, h),
            error: None,
        };
        match n {
            Err(e) => r.error = Some(e.clone()),
            Ok(n) => {
                r.reachable = true;
                match member_health(ctx, n) {
                    Ok(h) => r.healthy = h,
                    Err(e) => r.error = Some(e),
                }
                if let Ok(s) = member_status(ctx, n) {
                    r.leader = s.leader == s.member_id;
                    r.id = Some(format!("{:x}", s.member_id));
                    r.version = Some(s.version);
                    r.db_size = Some(s.db_size);
                    r.revision = Some(s.revision);
                }
            }
        }
        Ok(r)
    });
    results.into_iter().filter_map(|r| match r.outcome {
        Outcome::Done(m) => Some(m),
        _ => None,
    }).collect()
}

// ---------------------------------------------------------------------------------------------
// add / remove
// ---------------------------------------------------------------------------------------------

/// The first node whose member is healthy.
fn healthy_peer<'a, 'c>(ctx: &Ctx<'c>, nodes: &'a [Node<'c>]) -> Option<&'a Node<'c>> {
    nodes.iter().find(|n| member_health(ctx, n) == Ok(true))
}

/// `kbin etcd add HOST`: announce the member, then start it joining the running cluster.
pub fn add(ctx: &Ctx<'_>, new: &Node<'_>, others: &[Node<'_>], templates: &Templates, bins: &Binaries) -> Result<Vec<MemberReport>, Error> {
    let peer = healthy_peer(ctx, others).ok_or_else(|| Error::Refused {
        what: "no healthy etcd member to add the new one to".into(),
        problems: others.iter().map(|n| format!("[preflight] {}: not healthy", n.host.name)).collect(),
        hint: Some("run `kbin etcd status`; a cluster without quorum cannot grow".into()),
    })?;
    let facts = preflight(ctx, std::slice::from_ref(new))?;
    let list = members(ctx, peer).map_err(|e| Error::other(format!("cannot list members through {}: {e}", peer.host.name), None))?;
    let url = peer_url(new.host);
    match list.iter().find(|m| m.peer_urls.contains(&url)) {
        Some(m) if !m.name.is_empty() && facts[0].active => {
            ctx.printer.phase("add", Some(&new.host.name), "already a member; making sure its files are current");
        }
        Some(_) => ctx.printer.phase("add", Some(&new.host.name), "already announced; starting it"),
        None => {
            // etcd refuses to add a voting member until every member has been connected for a
            // few seconds ("unhealthy cluster"): retry that, within the health timeout
            let deadline = Instant::now() + ctx.health_timeout;
            let m = loop {
                let t = peer.remote.open_tcp(&addr(peer.host), 2379)?;
                match ctx.client.member_add(t, &addr(peer.host), &url) {
                    Ok(m) => break m,
                    Err(super::api::ApiError::Status { status: 503, ref body, .. }) if body.contains("unhealthy cluster") && Instant::now() < deadline => {
                        ctx.printer.phase("add", Some(&new.host.name), "etcd reports the cluster not settled yet; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    Err(e) => return Err(Error::other(format!("member add through {} failed: {e}", peer.host.name), Some("run `kbin etcd status` to see the members"))),
                }
            };
            ctx.printer.phase("add", Some(&new.host.name), &format!("announced as member {:x}", m.id));
        }
    }
    let its = items(ctx.cluster, new.host, templates, bins, &render::Options { etcd_existing: true })?;
    let p = push(ctx.cluster, &ctx.printer, new, &its, false)?;
    ctx.printer.phase("push", Some(&new.host.name), &format!("{} files changed, {} bytes sent", p.changed.len(), p.bytes_sent));
    sys(new, &["daemon-reload"])?;
    sys(new, &["enable", "etcd"])?;
    if !facts[0].active || p.needs_restart {
        sys(new, &["restart", "--no-block", "etcd"])?;
    }
    if let Err(bad) = wait_healthy(ctx, &[new]) {
        let mut problems: Vec<String> = bad.iter().map(|(h, e)| format!("[verify] {h}: {e}")).collect();
        problems.extend(journal_tail(new).lines().map(|l| format!("  journal: {l}")));
        return Err(Error::Failed { what: format!("{} did not join the cluster", new.host.name), problems, hint: Some(format!("fix the cause and run `kbin etcd add {}` again, or `kbin etcd remove {}` to withdraw it", new.host.name, new.host.name)) });
    }
    forget_backups(new, &p);
    let mut all: Vec<(&Host, Result<Node<'_>, String>)> = others.iter().map(|n| (n.host, Ok(n.clone()))).collect();
    all.push((new.host, Ok(new.clone())));
    Ok(status(ctx, all))
}

/// `kbin etcd remove HOST`: remove the member, then stop and clean up its host (when reachable).
pub fn remove(ctx: &Ctx<'_>, host: &Host, node: Option<&Node<'_>>, others: &[Node<'_>], dry_run: bool) -> Result<(), Error> {
    let peer = healthy_peer(ctx, others).ok_or_else(|| Error::Refused {
        what: "no other healthy etcd member to remove the member through".into(),
        problems: others.iter().map(|n| format!("[preflight] {}: not healthy", n.host.name)).collect(),
        hint: Some("run `kbin etcd status`".into()),
    })?;
    let list = members(ctx, peer).map_err(|e| Error::other(format!("cannot list members through {}: {e}", peer.host.name), None))?;
    let url = peer_url(host);
    let member = list.iter().find(|m| m.peer_urls.contains(&url) || m.name == host.name);
    if list.len() <= 1 && member.is_some() {
        return Err(Error::Refused { what: format!("{} is the last member; removing it would destroy the cluster", host.name), problems: vec![], hint: None });
    }
    if dry_run {
        match member {
            Some(m) => ctx.printer.phase("dry-run", Some(&host.name), &format!("would remove member {:x}, stop etcd and delete {}", m.id, ctx.cluster.layout.etcd_data)),
            None => ctx.printer.phase("dry-run", Some(&host.name), "not a member; would only clean up the host"),
        }
        return Ok(());
    }
    if let Some(m) = member {
        let t = peer.remote.open_tcp(&addr(peer.host), 2379)?;
        ctx.client.member_remove(t, &addr(peer.host), m.id).map_err(|e| Error::other(format!("member remove through {} failed: {e}", peer.host.name), None))?;
        ctx.printer.phase("remove", Some(&host.name), &format!("member {:x} removed", m.id));
    } else {
        ctx.printer.phase("remove", Some(&host.name), "not a member of the cluster");
    }
    match node {
        Some(n) => {
            let l = &ctx.cluster.layout;
            let _ = sys(n, &["disable", "--now", "etcd"]);
            let paths = [
                l.etcd_data.clone(),
                format!("{}/etcd.yml", l.etcd_cfg),
                format!("{}/etcd.service", l.units),
                format!("{}/server.crt", l.etcd_ssl),
                format!("{}/server.key", l.etcd_ssl),
                format!("{}/peer.crt", l.etcd_ssl),
                format!("{}/peer.key", l.etcd_ssl),
                format!("{}/ca.crt", l.etcd_ssl),
            ];
            let mut argv = vec!["rm", "-rf", "--"];
            argv.extend(paths.iter().map(String::as_str));
            n.remote.check(&Cmd::new(argv).sudo())?;
            sys(n, &["daemon-reload"])?;
            ctx.printer.phase("remove", Some(&host.name), "etcd stopped, data, config, unit and certificates deleted");
        }
        None => ctx.printer.warn(&format!("{} is unreachable: its etcd files were not cleaned up", host.name), Some("clean it up by hand or reinstall it before reuse")),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// backup
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct Backup {
    pub from: String,
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Check an `etcdctl snapshot save` file: a bbolt database with its SHA-256 appended.
pub fn verify_snapshot(data: &[u8]) -> Result<(), String> {
    if data.len() < 4096 + 32 {
        return Err(format!("only {} bytes: not an etcd snapshot", data.len()));
    }
    let magic = u32::from_le_bytes(data[16..20].try_into().unwrap());
    if magic != 0xED0C_DAED {
        return Err("no bbolt database header".into());
    }
    let (db, sum) = data.split_at(data.len() - 32);
    if ring::digest::digest(&ring::digest::SHA256, db).as_ref() != sum {
        return Err("the appended SHA-256 does not match: the snapshot is damaged".into());
    }
    Ok(())
}

/// `kbin etcd backup`: snapshot on a healthy member, brought to the operator and verified.
pub fn backup(ctx: &Ctx<'_>, nodes: &[Node<'_>], out: &std::path::Path) -> Result<Backup, Error> {
    let n = healthy_peer(ctx, nodes).ok_or_else(|| Error::Refused { what: "no healthy etcd member to take a snapshot from".into(), problems: vec![], hint: Some("run `kbin etcd status`".into()) })?;
    let l = &ctx.cluster.layout;
    let remote = format!("/var/tmp/kbin-etcd-snapshot-{}.db", std::process::id());
    let etcdctl = format!("{}/etcdctl", l.etcd_bin);
    let (cacert, cert, key) = (format!("{}/ca.crt", l.etcd_ssl), format!("{}/server.crt", l.etcd_ssl), format!("{}/server.key", l.etcd_ssl));
    let endpoint = format!("--endpoints={}", crate::config::url_for(&addr(n.host), 2379));
    ctx.printer.phase("backup", Some(&n.host.name), "taking a snapshot");
    let r = n.remote.check(&Cmd::new(["env", "ETCDCTL_API=3", &etcdctl, &endpoint, "--cacert", &cacert, "--cert", &cert, "--key", &key, "snapshot", "save", &remote]).sudo());
    let data = r.and_then(|_| n.remote.read_file(&remote));
    let _ = n.remote.run(&Cmd::new(["rm", "-f", &remote]).sudo());
    let data = data?.ok_or_else(|| Error::other(format!("{}: the snapshot file vanished", n.host.name), None))?;
    verify_snapshot(&data).map_err(|e| Error::other(format!("snapshot from {} failed verification: {e}", n.host.name), Some("take another backup")))?;
    crate::fsutil::write_atomic(out, &data, 0o600).map_err(|e| Error::other(format!("cannot write {}: {e}", out.display()), Some("check the output path")))?;
    Ok(Backup { from: n.host.name.clone(), path: out.display().to_string(), bytes: data.len() as u64, sha256: crate::host::sha256_hex(&data) })
}

/// The etcd hosts of the cluster, in file order.
pub fn etcd_hosts(cluster: &Cluster) -> Vec<&Host> {
    cluster.hosts_with(Role::Etcd).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::{FakeHost, ok};
    use crate::host::Remote;
    use std::sync::Arc;

    const CLUSTER: &str = "[cluster]\nname = \"t\"\n[[hosts]]\nname = \"e1\"\naddress = \"10.9.0.1\"\nroles = [\"etcd\", \"master\"]\n";

    fn item(path: &str, text: &str, restarts: bool) -> Item {
        Item { path: path.into(), src: Source::bytes(text.as_bytes().to_vec()), mode: 0o644, secret: false, restarts, text: Some(text.into()) }
    }

    fn setup() -> (tempfile::TempDir, Cluster) {
        let d = tempfile::tempdir().unwrap();
        let c = crate::config::parse(&d.path().join("cluster.toml"), CLUSTER).unwrap();
        (d, c)
    }

    #[test]
    fn push_sends_only_what_changed_and_dry_run_writes_nothing() {
        let (d, c) = setup();
        let fake = FakeHost::new("e1", &d.path().join("root"));
        let remote: Arc<dyn Remote> = Arc::new(fake);
        let node = Node { host: &c.hosts[0], remote: remote.clone() };
        let printer = Printer { quiet: true, color: false };
        let cfg = "/opt/etcd/cfg/etcd.yml";
        let items = vec![item(cfg, "name: e1\ninitial-cluster-state: new\n", true), item("/opt/etcd/ssl/ca.crt", "CA\n", true)];

        let dry = push(&c, &printer, &node, &items, true).unwrap();
        assert_eq!(dry.changed.len(), 2);
        assert!(remote.read_file(cfg).unwrap().is_none(), "--dry-run wrote nothing");

        let first = push(&c, &printer, &node, &items, false).unwrap();
        assert!(first.needs_restart && first.changed.len() == 2 && first.bytes_sent > 0);
        let again = push(&c, &printer, &node, &items, false).unwrap();
        assert!(again.changed.is_empty() && again.bytes_sent == 0 && !again.needs_restart, "unchanged files are not sent");

        // a change of initial-* keys only: written, but no restart
        let items = vec![item(cfg, "name: e1\ninitial-cluster-state: existing\n", true)];
        let p = push(&c, &printer, &node, &items, false).unwrap();
        assert_eq!(p.changed, [cfg]);
        assert!(!p.needs_restart);
        // a real config change restarts
        let items = vec![item(cfg, "name: e1\ninitial-cluster-state: existing\nquota-backend-bytes: 1\n", true)];
        assert!(push(&c, &printer, &node, &items, false).unwrap().needs_restart);
    }

    #[test]
    fn restore_puts_back_backups_and_removes_new_files() {
        let (d, c) = setup();
        let fake = Arc::new(FakeHost::new("e1", &d.path().join("root")));
        let node = Node { host: &c.hosts[0], remote: fake.clone() };
        let pushed = Pushed { host: "e1".into(), backups: vec![("/a".into(), Some("/a.bak".into())), ("/b".into(), None)], ..Default::default() };
        restore(&node, &pushed).unwrap();
        let cmds = fake.commands();
        assert_eq!(cmds, [vec!["mv", "-f", "/a.bak", "/a"], vec!["rm", "-f", "/b"]]);
    }

    #[test]
    fn preflight_refuses_foreign_data_busy_ports_and_wrong_arch() {
        let (d, c) = setup();
        let facts = |stdout: &'static str| {
            let fake = FakeHost::new("e1", &d.path().join("root")).respond(move |_| Some(ok(stdout)));
            gather(&c, &Node { host: &c.hosts[0], remote: Arc::new(fake) }).unwrap()
        };
        let fresh = facts("arch=x86_64\nactive=inactive\ndata=no\n");
        assert!(refusal(&c, &fresh).is_empty());
        let foreign = facts("arch=x86_64\nactive=inactive\ndata=yes\n");
        assert!(refusal(&c, &foreign)[0].contains("holds data of an etcd member kbin did not set up"));
        let busy = facts("arch=x86_64\nactive=inactive\ndata=no\nbusy=2379\n");
        assert_eq!(refusal(&c, &busy), ["port 2379 is already in use by another program"]);
        let arm = facts("arch=aarch64\nactive=inactive\ndata=no\n");
        assert!(refusal(&c, &arm)[0].contains("architecture is aarch64"));
        // kbin's own running member: its data and ports are expected
        let root = d.path().join("root/opt/etcd/cfg");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("etcd.yml"), "initial-cluster-token: \"etcd-t\"\n").unwrap();
        let ours = facts("arch=x86_64\nactive=active\ndata=yes\nbusy=2379\nbusy=2380\n");
        assert_eq!(ours.token.as_deref(), Some("etcd-t"));
        assert!(refusal(&c, &ours).is_empty(), "{:?}", refusal(&c, &ours));
        std::fs::write(root.join("etcd.yml"), "initial-cluster-token: \"etcd-other\"\n").unwrap();
        let other = facts("arch=x86_64\nactive=active\ndata=yes\n");
        assert!(refusal(&c, &other)[0].contains("belongs to another etcd cluster"));
    }

    #[test]
    fn initial_keys_alone_need_no_restart() {
        let a = "name: \"m1\"\ninitial-cluster: \"m1=x\"\ninitial-cluster-state: \"new\"\ndata-dir: d\n";
        let b = "name: \"m1\"\ninitial-cluster: \"m1=x,m2=y\"\ninitial-cluster-state: \"existing\"\ndata-dir: d\n";
        assert_eq!(significant_config(a), significant_config(b));
        assert_ne!(significant_config(a), significant_config(&a.replace("data-dir: d", "data-dir: e")));
    }

    #[test]
    fn snapshot_verification() {
        let mut db = vec![0u8; 8192];
        db[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
        let mut snap = db.clone();
        snap.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, &db).as_ref());
        assert!(verify_snapshot(&snap).is_ok());
        let mut bad = snap.clone();
        bad[5000] ^= 1;
        assert!(verify_snapshot(&bad).unwrap_err().contains("damaged"));
        assert!(verify_snapshot(&db[..100]).is_err());
    }
}
