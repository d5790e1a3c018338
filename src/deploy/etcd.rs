//! `kbin etcd deploy|status|add|remove|backup`: phases over the etcd hosts, on the engine.
//!
//! Every operation first runs read-only preflight on every host it will touch and refuses (exit
//! 2, nothing changed) if anything is wrong. Changes are pushed in parallel, each host's inside
//! its own transaction; a member whose files changed on a running cluster is restarted alone, and
//! the next one only after the cluster is healthy again; if it does not come back, its
//! transaction rolls back and the rollout stops (members not restarted yet get their previous
//! files back). Health is checked from the operator over mutual TLS *through the SSH connection*
//! to each host, so it works behind a bastion. What is etcd's own: the facts and refusal, the
//! `initial-*` keys that restart nothing, one member at a time, health.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::etcd::api::Client;
use crate::config::release::Version;
use crate::config::{Cluster, Host, Role};
use crate::engine::{self, Bins, Facts, HostFailure, Item, Probe, Pushed, Rollback, Run, Tx};
use crate::error::Error;
use crate::host::parallel::{self, Outcome};
use crate::host::{Cmd, HostError};
use crate::render::{self, Component, Templates};
use crate::tls::Identity;

pub use crate::host::Node;

/// What every operation needs: the run (its timeout is how long members may take to become
/// healthy) and the etcd client.
pub struct Ctx<'c> {
    pub run: Run<'c>,
    pub client: Client,
}

impl<'c> Deref for Ctx<'c> {
    type Target = Run<'c>;
    fn deref(&self) -> &Run<'c> {
        &self.run
    }
}

impl<'c> Ctx<'c> {
    /// With the client identity from the cluster's pki.
    pub fn new(run: Run<'c>) -> Result<Ctx<'c>, Error> {
        let client = Client::new(&identity(run.cluster)?).map_err(|e| Error::other(format!("etcd client identity: {e}"), Some("run `kbin pki check`")))?;
        Ok(Ctx { run, client })
    }
}

/// The client identity kbin uses towards etcd: the etcd CA and the healthcheck client cert.
pub fn identity(cluster: &Cluster) -> Result<Identity, Error> {
    let pki = cluster.pki_dir();
    let read = |rel: &str| {
        std::fs::read_to_string(pki.join(rel)).map_err(|e| Error::other(format!("cannot read {}: {e}", pki.join(rel).display()), Some("run `kbin pki init` first")))
    };
    Ok(Identity { ca_pem: read("etcd/ca.crt")?, client: Some((read("etcd/healthcheck-client.crt")?, read("etcd/healthcheck-client.key")?)) })
}

pub(super) fn addr(h: &Host) -> String {
    h.address.to_string()
}

pub(super) fn peer_url(h: &Host) -> String {
    crate::config::url_for(&addr(h), 2380)
}

// ---------------------------------------------------------------------------------------------
// Preflight: facts and a pure refusal
// ---------------------------------------------------------------------------------------------

fn config_path(cluster: &Cluster) -> String {
    format!("{}/etcd.yml", cluster.layout.etcd_cfg)
}

fn data_member(cluster: &Cluster) -> String {
    format!("{}/member", cluster.layout.etcd_data)
}

/// What preflight looks at on an etcd host.
pub fn probe(cluster: &Cluster) -> Probe {
    let etcd = format!("{}/etcd", cluster.layout.etcd_bin);
    Probe::default().ask("unit", &["etcd"]).ports(cluster, Role::Etcd).ask("path", &[data_member(cluster)]).ask("bin", &[etcd]).read(&[&config_path(cluster)])
}

/// `initial-cluster-token` of an etcd.yml kbin wrote earlier, if any.
pub fn found_token(cluster: &Cluster, f: &Facts) -> Option<String> {
    let bytes = f.files.get(&config_path(cluster))?;
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_slice(bytes).unwrap_or_default();
    v.get("initial-cluster-token").and_then(|t| t.as_str()).map(str::to_string)
}

fn token(cluster: &Cluster) -> String {
    format!("etcd-{}", cluster.name)
}

/// Why a host cannot take part, if it cannot: a pure function of its facts.
pub fn refusal(cluster: &Cluster, f: &Facts) -> Vec<String> {
    let mut out: Vec<String> = f.wrong_arch(cluster).into_iter().collect();
    let found = found_token(cluster, f);
    let ours = found.as_deref() == Some(token(cluster).as_str());
    match &found {
        Some(t) if !ours => out.push(format!("{}/etcd.yml belongs to another etcd cluster (token {t:?})", cluster.layout.etcd_cfg)),
        None if f.has("path", &data_member(cluster)) => out.push(format!("{} holds data of an etcd member kbin did not set up", cluster.layout.etcd_data)),
        _ => {}
    }
    if !(ours && f.active("etcd")) {
        out.extend(f.busy_ports(cluster, Role::Etcd));
    }
    // the release installed here may move to the cluster file's only by etcd's rules
    let installed = f.versions.get("etcd").and_then(|t| Version::of_etcd_output(t));
    if let (Some(running), Some(target), true) = (installed, Version::parse(&cluster.etcd_version), ours) {
        out.extend(crate::config::release::etcd_step("this member", running, target));
    }
    out
}

/// Facts on every node in parallel; refuse (nothing changed) if any host cannot take part.
pub fn preflight(ctx: &Ctx<'_>, nodes: &[Node<'_>]) -> Result<Vec<Facts>, Error> {
    let c = ctx.cluster;
    let facts = engine::preflight(ctx, nodes, "etcd", &|_| probe(c), &|_, f| refusal(c, f))?;
    for (n, f) in nodes.iter().zip(&facts) {
        let state = if f.active("etcd") { "etcd running" } else if f.has("path", &data_member(c)) { "etcd stopped" } else { "fresh" };
        ctx.printer.phase("preflight", Some(&n.host.name), &format!("ok ({}, {state})", f.arch));
    }
    Ok(facts)
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// etcd.yml without the `initial-*` keys, which etcd reads only when a member first starts: a
/// change to them alone (a member was added to the file) needs no restart.
pub fn significant_config(text: &str) -> String {
    text.lines().filter(|l| !l.starts_with("initial-")).collect::<Vec<_>>().join("\n")
}

/// Everything etcd needs on `host`: binaries, certificates, config and unit.
pub fn items(cluster: &Cluster, host: &Host, templates: &Templates, bins: &Bins, opts: &render::Options) -> Result<Vec<Item>, Error> {
    let mut out = engine::items(cluster, templates, bins, host, Component::Etcd, opts)?;
    let config = config_path(cluster);
    for it in out.iter_mut().filter(|i| i.path == config) {
        it.significant = Some(significant_config);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------------------------

/// A stream to the member on `node`'s client port, through its SSH connection.
pub(super) fn tunnel(node: &Node<'_>) -> Result<Box<dyn crate::host::Tunnel>, HostError> {
    node.remote.open_tcp(&addr(node.host), 2379)
}

/// A question to a member over a stream (`/health`, its status, the member list).
type Query<T, E> = fn(&Client, Box<dyn crate::host::Tunnel>, &str) -> Result<T, E>;

/// Ask the member on `node`, through its SSH connection.
pub(super) fn ask<T, E: std::fmt::Display>(ctx: &Ctx<'_>, node: &Node<'_>, q: Query<T, E>) -> Result<T, String> {
    q(&ctx.client, tunnel(node).map_err(|e| e.chain())?, &addr(node.host)).map_err(|e| e.to_string())
}

/// When `node`'s member leads, move the leadership to another healthy member and wait until it
/// took it (best effort: a restart without it still works, after an election).
fn hand_over_leadership(ctx: &Ctx<'_>, nodes: &[Node<'_>], node: &Node<'_>) {
    let Ok(s) = ask(ctx, node, |c, t, a| c.status(t, a)) else { return };
    if s.leader != s.member_id {
        return;
    }
    let Some((to, id)) = nodes
        .iter()
        .filter(|m| m.host.name != node.host.name)
        .find_map(|m| match (member_health(ctx, m), ask(ctx, m, |c, t, a| c.status(t, a))) {
            (Ok(true), Ok(st)) => Some((m, st.member_id)),
            _ => None,
        })
    else {
        return;
    };
    let moved = tunnel(node).map_err(|e| e.chain()).and_then(|t| ctx.client.move_leader(t, &addr(node.host), id).map_err(|e| e.to_string()));
    if let Err(e) = moved {
        ctx.printer.warn(&format!("{}: could not hand the etcd leadership to {}: {e}", node.host.name, to.host.name), Some("the restart goes on; the other members elect a leader"));
        return;
    }
    // the restart waits until the new leader leads and the members that stay answer healthy
    // again: every member is without a leader for the moment of the election, and one taken
    // down then would leave the others short of a quorum until it is back
    let others: Vec<&Node<'_>> = nodes.iter().filter(|m| m.host.name != node.host.name).collect();
    let settled = crate::engine::wait_for(std::time::Duration::from_secs(10), &ctx.cancel, || match ask(ctx, to, |c, t, a| c.status(t, a)) {
        Ok(st) if st.leader == id => match others.iter().find(|m| member_health(ctx, m) != Ok(true)) {
            Some(m) => Err(format!("{} is not healthy yet", m.host.name)),
            None => Ok(()),
        },
        Ok(_) => Err("the new leader has not taken over yet".to_string()),
        Err(e) => Err(e),
    });
    if let Err(e) = settled {
        ctx.printer.warn(&format!("{}: after handing the etcd leadership to {}: {e}", node.host.name, to.host.name), Some("the restart goes on; the members elect a leader"));
        return;
    }
    ctx.printer.phase("restart", Some(&node.host.name), &format!("etcd leadership handed to {} before the restart", to.host.name));
}

pub fn member_health(ctx: &Ctx<'_>, node: &Node<'_>) -> Result<bool, String> {
    ask(ctx, node, |c, t, a| c.health(t, a))
}

/// Wait until every node's member reports healthy; the last error per host on timeout.
pub fn wait_healthy(ctx: &Ctx<'_>, nodes: &[&Node<'_>]) -> Result<(), Vec<(String, String)>> {
    let deadline = Instant::now() + ctx.timeout;
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

fn unhealthy(nodes: &[Node<'_>], bad: Vec<(String, String)>, phase: &str) -> Vec<HostFailure> {
    bad.into_iter()
        .map(|(h, e)| {
            let journal = nodes.iter().find(|n| n.host.name == h).map(|n| engine::journal_tail(n, "etcd", 15)).unwrap_or_default();
            HostFailure { journal, ..HostFailure::new(&h, phase, e) }
        })
        .collect()
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
#[derive(Debug, Clone, Default, Serialize)]
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

/// `kbin etcd deploy`: preflight, then [`rollout`].
pub fn deploy(ctx: &Ctx<'_>, nodes: &[Node<'_>], templates: &Templates, bins: &Bins) -> Result<DeployReport, Error> {
    let facts = preflight(ctx, nodes)?;
    rollout(ctx, nodes, &facts, templates, bins)
}

/// Push to every member (parallel), start the fresh ones, restart the running ones whose files
/// changed one at a time, wait until all are healthy. `facts` come from preflight.
pub fn rollout(ctx: &Ctx<'_>, nodes: &[Node<'_>], facts: &[Facts], templates: &Templates, bins: &Bins) -> Result<DeployReport, Error> {
    let dry_run = ctx.dry_run;
    let units_dir = ctx.cluster.layout.units.clone();
    let opts = render::Options::default();
    let mut plan = Vec::new();
    for n in nodes {
        plan.push(items(ctx.cluster, n.host, templates, bins, &opts)?);
    }
    // Push in parallel. A member that is not running yet is started as soon as the files it
    // needs to start are in place, and etcdctl (not needed to start) follows while it elects.
    let idx: Vec<usize> = (0..nodes.len()).collect();
    let results = parallel::for_each(&idx, |i| nodes[*i].host.name.clone(), "push", ctx.concurrency, &ctx.cancel, |i| {
        let (n, active) = (&nodes[*i], facts[*i].active("etcd"));
        let mut tx = Tx::new(n.remote.clone(), &units_dir);
        let (first, later): (Vec<Item>, Vec<Item>) = plan[*i].iter().cloned().partition(|it| !it.units.is_empty() || active);
        let mut p = engine::push_known(&ctx.printer, n, &units_dir, &first, &mut tx, dry_run, &ctx.known)?;
        let start = !dry_run && !active;
        if start {
            // one round trip; a member that ran before must pick up changed files: restart
            tx.started("etcd");
            n.remote.check(&Cmd::new(["sh", "-c", START_SCRIPT]).sudo())?;
            ctx.printer.phase("start", Some(&n.host.name), "etcd starting");
        }
        p.extend(engine::push_known(&ctx.printer, n, &units_dir, &later, &mut tx, dry_run, &ctx.known)?);
        if !dry_run {
            let msg = if p.changed.is_empty() { "up to date, nothing sent".to_string() } else { format!("{} files changed, {} bytes sent", p.changed.len(), p.bytes_sent) };
            ctx.printer.phase("push", Some(&n.host.name), &msg);
        }
        Ok((p, start, tx))
    });
    let mut pushed = Vec::new();
    let mut started = Vec::new();
    let mut txs = Vec::new();
    let mut failures = Vec::new();
    for r in results {
        match r.outcome {
            Outcome::Done((p, s, tx)) => {
                if s {
                    started.push(p.host.clone());
                }
                pushed.push(p);
                txs.push(Some(tx));
            }
            Outcome::Failed(e) => failures.push(HostFailure::from(e)),
            Outcome::Skipped => failures.push(HostFailure::new(&r.host, "push", "not started (interrupted)")),
        }
    }
    if !failures.is_empty() {
        // the hosts that were pushed to roll back as `txs` drops: all or nothing
        return Err(engine::failed("pushing etcd files failed; the other hosts got their previous files back".into(), failures, "fix the hosts listed above and run `kbin etcd deploy` again"));
    }
    let mut report = DeployReport { bytes_sent: pushed.iter().map(|p| p.bytes_sent).sum(), dry_run, ..Default::default() };
    if dry_run {
        for (n, (p, f)) in nodes.iter().zip(pushed.iter().zip(facts)) {
            let action = if !f.active("etcd") { "would start etcd" } else if p.restart.contains("etcd") { "would restart etcd" } else { "no restart" };
            ctx.printer.phase("dry-run", Some(&n.host.name), &format!("{} files would change; {action}", p.changed.len()));
        }
        report.hosts = pushed;
        return Ok(report);
    }
    report.started = started;

    // running members whose files changed: one at a time, healthy in between, rollback on
    // failure; followers first, and the leader hands its leadership to another member before
    // its restart, so the cluster never waits for an election
    let mut order: Vec<usize> = (0..nodes.len()).filter(|i| facts[*i].active("etcd")).collect();
    let statuses: Vec<Option<crate::etcd::api::Status>> = nodes.iter().map(|n| ask(ctx, n, |c, t, a| c.status(t, a)).ok()).collect();
    order.sort_by_key(|i| statuses[*i].as_ref().is_some_and(|s| s.leader == s.member_id));
    for i in order {
        let (n, p) = (&nodes[i], &pushed[i]);
        if p.changed.is_empty() {
            continue;
        }
        if p.restart.contains("etcd") && nodes.len() > 1 {
            hand_over_leadership(ctx, nodes, n);
        }
        if p.unit_files {
            engine::systemctl(n, &["daemon-reload"])?;
        }
        if !p.restart.contains("etcd") {
            txs[i].take().map(Tx::commit);
            continue;
        }
        if ctx.cancel.is_cancelled() {
            return Err(Error::Interrupted { what: format!("stopped before restarting {}; the members not restarted got their previous files back", n.host.name) });
        }
        ctx.printer.phase("restart", Some(&n.host.name), "restarting etcd (its files changed)");
        let mut tx = txs[i].take().expect("one per host");
        tx.restarted("etcd", "restart --no-block");
        engine::systemctl(n, &["restart", "--no-block", "etcd"])?;
        if let Err(bad) = wait_healthy(ctx, &[n]) {
            let mut failures = unhealthy(nodes, bad, "restart");
            ctx.printer.phase("rollback", Some(&n.host.name), "etcd did not come back: restoring its previous files");
            let rollback = match tx.rollback() {
                Rollback::Done { .. } if wait_healthy(ctx, &[n]).is_ok() => Rollback::Done { what: "previous files restored, etcd healthy again".into() },
                Rollback::Done { .. } => Rollback::Incomplete { what: "previous files restored".into(), error: "etcd still unhealthy".into() },
                r => r,
            };
            failures[0].rollback = rollback;
            return Err(engine::failed(
                format!("{} did not become healthy after its restart; the rollout stopped", n.host.name),
                failures,
                "the members after it were not touched; fix the cause (see the journal lines) and run `kbin etcd deploy` again",
            ));
        }
        tx.commit();
        report.restarted.push(n.host.name.clone());
    }

    // every member healthy; what was pushed stays (a re-run resumes)
    txs.into_iter().flatten().for_each(|t| drop(t.commit()));
    let all: Vec<&Node<'_>> = nodes.iter().collect();
    if let Err(bad) = wait_healthy(ctx, &all) {
        return Err(engine::failed(
            format!("etcd did not become healthy within {}s", ctx.timeout.as_secs()),
            unhealthy(nodes, bad, "verify"),
            "check the journal lines above; the files are in place, so fixing the cause and running `kbin etcd deploy` again resumes",
        ));
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
        let mut r = MemberReport { name: h.name.clone(), address: addr(h), cert_days_left: cert_days_left(ctx.cluster, h), ..Default::default() };
        match n {
            Err(e) => r.error = Some(e.clone()),
            Ok(n) => {
                r.reachable = true;
                match member_health(ctx, n) {
                    Ok(h) => r.healthy = h,
                    Err(e) => r.error = Some(e),
                }
                if let Ok(s) = ask(ctx, n, |c, t, a| c.status(t, a)) {
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
pub(super) fn healthy_peer<'a, 'c>(ctx: &Ctx<'c>, nodes: &'a [Node<'c>]) -> Option<&'a Node<'c>> {
    nodes.iter().find(|n| member_health(ctx, n) == Ok(true))
}

/// `kbin etcd add HOST`: announce the member, then start it joining the running cluster.
pub fn add(ctx: &Ctx<'_>, new: &Node<'_>, others: &[Node<'_>], templates: &Templates, bins: &Bins) -> Result<Vec<MemberReport>, Error> {
    let peer = healthy_peer(ctx, others).ok_or_else(|| Error::Refused {
        what: "no healthy etcd member to add the new one to".into(),
        problems: others.iter().map(|n| format!("[preflight] {}: not healthy", n.host.name)).collect(),
        hint: Some("run `kbin etcd status`; a cluster without quorum cannot grow".into()),
    })?;
    let facts = preflight(ctx, std::slice::from_ref(new))?;
    let list = ask(ctx, peer, |c, t, a| c.member_list(t, a)).map_err(|e| Error::other(format!("cannot list members through {}: {e}", peer.host.name), None))?;
    let url = peer_url(new.host);
    let found = list.iter().find(|m| m.peer_urls.contains(&url));
    let mut all: Vec<(&Host, Result<Node<'_>, String>)> = others.iter().map(|n| (n.host, Ok(n.clone()))).collect();
    all.push((new.host, Ok(new.clone())));
    if ctx.dry_run {
        let what = match found {
            Some(m) if !m.name.is_empty() && !m.is_learner && facts[0].active("etcd") => "already a member: would only bring its files up to date".to_string(),
            Some(m) if m.is_learner => format!("already announced as learner {:x}: would start it and promote it once it has caught up", m.id),
            Some(_) => "already announced: would start it".to_string(),
            None => format!("would announce {url} as a learner through {}, start it and promote it once it has caught up", peer.host.name),
        };
        ctx.printer.phase("dry-run", Some(&new.host.name), &what);
        let its = items(ctx.cluster, new.host, templates, bins, &render::Options { etcd_existing: true })?;
        let mut tx = Tx::new(new.remote.clone(), &ctx.cluster.layout.units);
        let p = engine::push(&ctx.printer, new, &ctx.cluster.layout.units, &its, &mut tx, true)?;
        ctx.printer.phase("dry-run", Some(&new.host.name), &format!("{} files would change", p.changed.len()));
        return Ok(status(ctx, all));
    }
    // a new member joins as a learner: it replicates without voting until it has caught up, so a
    // member that never starts cannot cost the cluster its quorum
    let learner = match found {
        Some(m) if !m.name.is_empty() && !m.is_learner && facts[0].active("etcd") => {
            ctx.printer.phase("add", Some(&new.host.name), "already a member; making sure its files are current");
            None
        }
        Some(m) if m.is_learner => {
            ctx.printer.phase("add", Some(&new.host.name), &format!("already announced as learner {:x}; starting it", m.id));
            Some(m.id)
        }
        Some(_) => {
            ctx.printer.phase("add", Some(&new.host.name), "already announced; starting it");
            None
        }
        None => {
            // etcd refuses to add a member until every member has been connected for a few
            // seconds ("unhealthy cluster"): retry that, within the health timeout
            let deadline = Instant::now() + ctx.timeout;
            let m = loop {
                let t = tunnel(peer)?;
                match ctx.client.member_add(t, &addr(peer.host), &url, true) {
                    Ok(m) => break m,
                    Err(crate::etcd::api::ApiError::Status { status: 503, ref body, .. }) if body.contains("unhealthy cluster") && Instant::now() < deadline => {
                        ctx.printer.phase("add", Some(&new.host.name), "etcd reports the cluster not settled yet; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    Err(e) => return Err(Error::other(format!("member add through {} failed: {e}", peer.host.name), Some("run `kbin etcd status` to see the members"))),
                }
            };
            ctx.printer.phase("add", Some(&new.host.name), &format!("announced as learner {:x}", m.id));
            Some(m.id)
        }
    };
    let joined = join(ctx, new, peer, learner, facts[0].active("etcd"), templates, bins);
    if let (Err(e), Some(id)) = (&joined, learner) {
        // withdraw the learner: a failed add leaves no member behind, voting or not
        let withdrawn = tunnel(peer).map_err(|e| e.chain()).and_then(|t| ctx.client.member_remove(t, &addr(peer.host), id).map_err(|e| e.to_string()));
        let _ = engine::systemctl(new, &["disable", "--now", "etcd"]);
        let _ = new.remote.run(&Cmd::new(["rm", "-rf", "--", ctx.cluster.layout.etcd_data.as_str()]).sudo());
        let what = match withdrawn {
            Ok(()) => format!("learner {id:x} removed again, etcd stopped on {}: the cluster has the members it had", new.host.name),
            Err(r) => format!("removing learner {id:x} failed too ({r}): run `kbin etcd remove {}`", new.host.name),
        };
        ctx.printer.phase("rollback", Some(&new.host.name), &what);
        return Err(match e {
            Error::Hosts { what: w, hosts, hint, refused } => Error::Hosts { what: format!("{w}; {what}"), hosts: hosts.clone(), hint: hint.clone(), refused: *refused },
            other => Error::other(format!("{other}; {what}"), Some(&format!("fix the cause and run `kbin etcd add {}` again", new.host.name))),
        });
    }
    joined?;
    Ok(status(ctx, all))
}

/// Push the new member's files, start it and, for a learner, promote it once it has caught up
/// with the leader (etcd refuses before); then wait until it is healthy.
fn join(ctx: &Ctx<'_>, new: &Node<'_>, peer: &Node<'_>, learner: Option<u64>, running: bool, templates: &Templates, bins: &Bins) -> Result<(), Error> {
    let its = items(ctx.cluster, new.host, templates, bins, &render::Options { etcd_existing: true })?;
    let mut tx = Tx::new(new.remote.clone(), &ctx.cluster.layout.units);
    let p = engine::push(&ctx.printer, new, &ctx.cluster.layout.units, &its, &mut tx, false)?;
    ctx.printer.phase("push", Some(&new.host.name), &format!("{} files changed, {} bytes sent", p.changed.len(), p.bytes_sent));
    engine::systemctl(new, &["daemon-reload"])?;
    engine::systemctl(new, &["enable", "etcd"])?;
    if !running || p.restart.contains("etcd") {
        engine::systemctl(new, &["restart", "--no-block", "etcd"])?;
    }
    // the member is announced: its files stay, whether it joins now or after a fix
    tx.commit();
    let fail = |bad: Vec<(String, String)>| engine::failed(format!("{} did not join the cluster", new.host.name), unhealthy(std::slice::from_ref(new), bad, "verify"), &format!("fix the cause and run `kbin etcd add {}` again", new.host.name));
    if let Some(id) = learner {
        engine::wait_for(ctx.timeout, &ctx.cancel, || {
            let t = tunnel(peer).map_err(|e| e.chain())?;
            ctx.client.member_promote(t, &addr(peer.host), id).map_err(|e| format!("not promoted yet: {e}"))
        })
        .map_err(|e| fail(vec![(new.host.name.clone(), e)]))?;
        ctx.printer.phase("add", Some(&new.host.name), &format!("caught up with the leader: promoted {id:x} to a voting member"));
    }
    wait_healthy(ctx, &[new]).map_err(fail)
}

/// What `kbin etcd remove` did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Removed {
    pub host: String,
    /// The member's ID (hex), if HOST was a member.
    pub member: Option<String>,
    /// The member was removed from the cluster.
    pub removed: bool,
    /// etcd stopped on the host and its data, config, unit and certificates deleted.
    pub cleaned_up: bool,
    pub dry_run: bool,
}

/// `kbin etcd remove HOST`: remove the member, then stop and clean up its host (when reachable).
pub fn remove(ctx: &Ctx<'_>, host: &Host, node: Option<&Node<'_>>, others: &[Node<'_>]) -> Result<Removed, Error> {
    let peer = healthy_peer(ctx, others).ok_or_else(|| Error::Refused {
        what: "no other healthy etcd member to remove the member through".into(),
        problems: others.iter().map(|n| format!("[preflight] {}: not healthy", n.host.name)).collect(),
        hint: Some("run `kbin etcd status`".into()),
    })?;
    let list = ask(ctx, peer, |c, t, a| c.member_list(t, a)).map_err(|e| Error::other(format!("cannot list members through {}: {e}", peer.host.name), None))?;
    let url = peer_url(host);
    let member = list.iter().find(|m| m.peer_urls.contains(&url) || m.name == host.name);
    if list.len() <= 1 && member.is_some() {
        return Err(Error::Refused { what: format!("{} is the last member; removing it would destroy the cluster", host.name), problems: vec![], hint: None });
    }
    let mut done = Removed { host: host.name.clone(), member: member.map(|m| format!("{:x}", m.id)), dry_run: ctx.dry_run, ..Default::default() };
    if ctx.dry_run {
        match member {
            Some(m) => ctx.printer.phase("dry-run", Some(&host.name), &format!("would remove member {:x}, stop etcd and delete {}", m.id, ctx.cluster.layout.etcd_data)),
            None => ctx.printer.phase("dry-run", Some(&host.name), "not a member; would only clean up the host"),
        }
        return Ok(done);
    }
    if let Some(m) = member {
        let t = tunnel(peer)?;
        ctx.client.member_remove(t, &addr(peer.host), m.id).map_err(|e| Error::other(format!("member remove through {} failed: {e}", peer.host.name), None))?;
        ctx.printer.phase("remove", Some(&host.name), &format!("member {:x} removed", m.id));
        done.removed = true;
    } else {
        ctx.printer.phase("remove", Some(&host.name), "not a member of the cluster");
    }
    match node {
        Some(n) => {
            let l = &ctx.cluster.layout;
            let _ = engine::systemctl(n, &["disable", "--now", "etcd"]);
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
            engine::systemctl(n, &["daemon-reload"])?;
            ctx.printer.phase("remove", Some(&host.name), "etcd stopped, data, config, unit and certificates deleted");
            done.cleaned_up = true;
        }
        None => ctx.printer.warn(&format!("{} is unreachable: its etcd files were not cleaned up", host.name), Some("clean it up by hand or reinstall it before reuse")),
    }
    Ok(done)
}

/// The etcd hosts of the cluster, in file order.
pub fn etcd_hosts(cluster: &Cluster) -> Vec<&Host> {
    cluster.hosts_with(Role::Etcd).collect()
}

// ---------------------------------------------------------------------------------------------
// The commands: connect, fetch, run
// ---------------------------------------------------------------------------------------------

/// `kbin etcd deploy`: every etcd host of the cluster file.
pub fn deploy_all(opts: &super::Opts<'_>, cluster: &Cluster) -> Result<DeployReport, Error> {
    let ctx = Ctx::new(opts.run(cluster))?;
    let templates = Templates::load(cluster)?;
    let nodes = ctx.connector(opts.accept_new_host_keys).connect_all(&etcd_hosts(cluster))?;
    let bins = (opts.fetch)(cluster, &[Component::Etcd])?;
    deploy(&ctx, &nodes, &templates, &bins)
}

/// `kbin etcd status`: every member, unreachable ones included.
pub fn status_all(opts: &super::Opts<'_>, cluster: &Cluster) -> Result<Vec<MemberReport>, Error> {
    let ctx = Ctx::new(opts.run(cluster))?;
    let conns = ctx.connector(opts.accept_new_host_keys).connect(&etcd_hosts(cluster)).into_iter().map(|(h, r)| (h, r.map_err(|e| e.chain()))).collect();
    Ok(status(&ctx, conns))
}

/// `kbin etcd add HOST`: HOST must have the etcd role; [`add`] through the reachable members.
pub fn add_host(opts: &super::Opts<'_>, cluster: &Cluster, name: &str) -> Result<Vec<MemberReport>, Error> {
    let ctx = Ctx::new(opts.run(cluster))?;
    let host = super::host_named(cluster, name)?;
    if !host.has(Role::Etcd) {
        return Err(Error::Refused { what: format!("{} does not have the etcd role in {}", host.name, cluster.file.display()), problems: vec![], hint: Some(format!("add \"etcd\" to the roles of {} in the cluster file, run `kbin pki init` for its certificates, then run this again", host.name)) });
    }
    let others: Vec<&Host> = etcd_hosts(cluster).into_iter().filter(|h| h.name != host.name).collect();
    let c = ctx.connector(opts.accept_new_host_keys);
    let new = c.connect_all(&[host])?.remove(0);
    let nodes = c.reachable(&others);
    let bins = (opts.fetch)(cluster, &[Component::Etcd])?;
    add(&ctx, &new, &nodes, &Templates::load(cluster)?, &bins)
}

/// `kbin etcd remove HOST`: [`remove`] through the reachable members (HOST itself may be down).
pub fn remove_host(opts: &super::Opts<'_>, cluster: &Cluster, name: &str) -> Result<Removed, Error> {
    let ctx = Ctx::new(opts.run(cluster))?;
    let host = super::host_named(cluster, name)?;
    let others: Vec<&Host> = etcd_hosts(cluster).into_iter().filter(|h| h.name != host.name).collect();
    let c = ctx.connector(opts.accept_new_host_keys);
    let target = c.connect(&[host]).remove(0).1.ok();
    let done = remove(&ctx, host, target.as_ref(), &c.reachable(&others))?;
    if !ctx.dry_run && host.has(Role::Etcd) {
        ctx.printer.warn(&format!("{} still has the etcd role in {}", host.name, cluster.file.display()), Some("remove \"etcd\" from its roles, or the next `kbin etcd deploy` adds it back as a new member"));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_keys_alone_need_no_restart() {
        let a = "name: \"m1\"\ninitial-cluster: \"m1=x\"\ninitial-cluster-state: \"new\"\ndata-dir: d\n";
        let b = "name: \"m1\"\ninitial-cluster: \"m1=x,m2=y\"\ninitial-cluster-state: \"existing\"\ndata-dir: d\n";
        assert_eq!(significant_config(a), significant_config(b));
        assert_ne!(significant_config(a), significant_config(&a.replace("data-dir: d", "data-dir: e")));
    }
}
