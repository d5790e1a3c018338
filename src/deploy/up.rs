//! `kbin up`: the whole cluster from the file. Phases: pki (local), connect to every host, facts
//! and every role's refusal on every host (before anything changes and before any download), the
//! download, then etcd, masters, LB, manifests and nodes, each skipping what is done.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Ctx;
use crate::config::{Cluster, Host, Role};
use crate::engine::{self, Bins, Facts, HostOutcome, Probe, Run};
use crate::error::Error;
use super::etcd;
use crate::host::Node;
use crate::kube::manifests::ObjectReport;
use crate::render::{Component, Templates};

/// One stage as `up` ran it.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub name: String,
    pub millis: u128,
    pub summary: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub stages: Vec<Stage>,
    /// Bytes of files sent to hosts, all stages together.
    pub bytes_sent: u64,
    /// `host/unit` of every service started (it was not running).
    pub started: Vec<String>,
    /// `host/unit` of every service restarted or reloaded (its files changed).
    pub restarted: Vec<String>,
    pub manifests: Vec<ObjectReport>,
    /// How each add-on runs (CoreDNS, metrics-server), once the nodes are Ready.
    pub addons: Vec<crate::kube::addons::AddonStatus>,
    /// How the large files reached the hosts.
    pub relay: engine::relay::Report,
    /// When the first stage began (stages overlap: the relay runs alongside etcd and the masters).
    #[serde(skip)]
    began: Option<Instant>,
}

impl Report {
    fn add(&mut self, outcomes: &[HostOutcome]) {
        for o in outcomes {
            self.bytes_sent += o.bytes_sent;
            self.started.extend(o.started.iter().map(|u| format!("{}/{u}", o.host)));
            self.restarted.extend(o.restarted.iter().map(|u| format!("{}/{u}", o.host)));
        }
    }
    fn stage(&mut self, run: &Run<'_>, name: &str, t0: Instant, summary: String) {
        self.stage_took(run, name, t0, t0.elapsed(), summary);
    }
    /// A stage that began at `t0` and took `took` (it ended before now: the relay's transfers,
    /// reported once the deploy alongside them is done).
    fn stage_took(&mut self, run: &Run<'_>, name: &str, t0: Instant, took: std::time::Duration, summary: String) {
        self.began = Some(self.began.map_or(t0, |b| b.min(t0)));
        run.printer.phase("up", None, &format!("{name}: {summary} ({} ms)", took.as_millis()));
        self.stages.push(Stage { name: name.into(), millis: took.as_millis(), summary });
    }
    /// What `other` (stages run on another thread's report) did, added to this.
    fn merge(&mut self, other: Report) {
        self.began = match (self.began, other.began) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.stages.extend(other.stages);
        self.bytes_sent += other.bytes_sent;
        self.started.extend(other.started);
        self.restarted.extend(other.restarted);
        self.manifests.extend(other.manifests);
    }
    /// The closing line: the time since the first stage began.
    pub fn summary(&self) -> String {
        let total = self.began.map_or(0, |b| b.elapsed().as_millis());
        if self.dry_run {
            format!("planned in {total} ms: {} services would start, {} would restart; nothing was changed", self.started.len(), self.restarted.len())
        } else {
            format!("done in {total} ms: {} bytes sent, {} started, {} restarted", self.bytes_sent, self.started.len(), self.restarted.len())
        }
    }
}

fn summarize(outcomes: &[HostOutcome]) -> String {
    let changed = outcomes.iter().filter(|o| !o.changed.is_empty() || !o.started.is_empty() || !o.restarted.is_empty()).count();
    format!("{} hosts, {changed} changed", outcomes.len())
}

fn by_role<'c>(nodes: &[Node<'c>], role: Role) -> Vec<Node<'c>> {
    nodes.iter().filter(|n| n.host.has(role)).cloned().collect()
}

/// Every role's questions for `host`, asked in one round trip.
pub fn probe(cluster: &Cluster, host: &Host) -> Probe {
    let mut p = Probe::default();
    if host.has(Role::Etcd) {
        p = p.and(etcd::probe(cluster));
    }
    if host.has(Role::Master) {
        p = p.and(super::master::probe(cluster));
    }
    if host.has(Role::Lb) {
        p = p.and(super::lb::probe(cluster, host));
    }
    if host.has(Role::Node) {
        p = p.and(super::node::probe(cluster));
    }
    p
}

/// Every role's refusal for `host`, from the same facts (each problem once).
pub fn refusal(cluster: &Cluster, host: &Host, f: &Facts) -> Vec<String> {
    let mut all = Vec::new();
    if host.has(Role::Etcd) {
        all.extend(etcd::refusal(cluster, f));
    }
    if host.has(Role::Master) {
        all.extend(super::master::refusal(cluster, f));
    }
    if host.has(Role::Lb) {
        all.extend(super::lb::refusal(cluster, host, f));
    }
    if host.has(Role::Node) {
        all.extend(super::node::refusal(cluster, f));
    }
    let mut seen = BTreeSet::new();
    all.retain(|p| seen.insert(p.clone()));
    all
}

/// `up` installs the cluster file's release where none runs and keeps it in place; it never moves
/// running hosts to another release (that restarts nodes without draining them): refused, with
/// the way that does (`kbin upgrade`).
fn release_change(cluster: &Cluster, nodes: &[Node<'_>]) -> Result<(), Error> {
    let mut moved = Vec::new();
    for n in nodes {
        for (role, binary) in [(Role::Master, "kube-apiserver"), (Role::Node, "kubelet")] {
            if !n.host.has(role) {
                continue;
            }
            match super::release_of(cluster, n, binary) {
                Ok(Some(v)) if v != cluster.kubernetes_version => moved.push(format!("{}: {binary} runs {v}, the cluster file says {}", n.host.name, cluster.kubernetes_version)),
                Ok(_) => {}
                Err(e) => moved.push(format!("{}: cannot read which release {binary} runs: {e}", n.host.name)),
            }
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    Err(Error::Refused { what: "up does not change the Kubernetes release of running hosts; nothing was changed".into(), problems: moved, hint: Some("`kbin upgrade` moves them (drained, one at a time, switched back on failure); or set kubernetes_version back".into()) })
}

/// The files a host gets from each of `parts` it has (what the relay considers; it takes the
/// large ones).
pub fn relay_items(ctx: &Ctx<'_>, host: &Host, parts: &[Component]) -> Result<Vec<engine::Item>, Error> {
    let mut out = Vec::new();
    for (role, part) in [(Role::Etcd, Component::Etcd), (Role::Master, Component::Master), (Role::Node, Component::Node)] {
        if host.has(role) && parts.contains(&part) {
            out.extend(crate::engine::items(ctx.cluster, ctx.templates, ctx.bins, host, part, &crate::render::Options::default())?);
        }
    }
    Ok(out)
}

/// Removes the hosts' relay stores when dropped.
pub struct Cleanup<'a, 'c> {
    pub run: &'a Run<'c>,
    pub nodes: &'a [Node<'c>],
    pub used: bool,
}

impl Drop for Cleanup<'_, '_> {
    fn drop(&mut self) {
        if self.used {
            engine::relay::cleanup(self.run, self.nodes);
        }
    }
}

/// What `up` needs besides the hosts.
pub struct Inputs<'a> {
    pub run: Run<'a>,
    pub templates: &'a Templates,
    /// How long etcd members may take to become healthy.
    pub etcd_timeout: Duration,
    /// Fetches (verified) and extracts the release binaries of these parts.
    pub fetch: super::Fetch<'a>,
    /// How large files reach the hosts.
    pub relay: engine::relay::Mode,
}

/// `kbin up`: pki, connect, then [`run_on`]. The report holds every stage that ran, also when
/// the result is an error.
pub fn up(opts: &super::Opts<'_>, cluster: &Cluster, etcd_timeout: Duration, report: &mut Report) -> Result<(), Error> {
    let run = &opts.run(cluster);
    report.dry_run = run.dry_run;
    let t0 = Instant::now();
    if run.dry_run && !cluster.pki_dir().join("ca.crt").exists() {
        run.printer.phase("up", None, &format!("pki: would create the CAs and every certificate in {}; run without --dry-run (or `kbin pki init`) to plan the rest", cluster.pki_dir().display()));
        return Ok(());
    }
    let summary = if run.dry_run {
        "not checked in a dry run".to_string()
    } else {
        let r = super::adopt::ensure_pki(run, cluster)?;
        if r.issued.is_empty() { format!("{} kept, nothing to issue", r.kept) } else { format!("issued {}", r.issued.join(", ")) }
    };
    report.stage(run, "pki", t0, summary);
    let all: Vec<&Host> = cluster.hosts.iter().collect();
    let t0 = Instant::now();
    let nodes = run.connector(opts.accept_new_host_keys).connect_all(&all)?;
    report.stage(run, "connect", t0, format!("{} hosts", nodes.len()));
    let templates = Templates::load(cluster)?;
    run_on(&Inputs { run: run.clone(), templates: &templates, etcd_timeout, fetch: opts.fetch, relay: opts.relay }, &nodes, report)
}

/// The phases of `up` on connected `nodes` (every host of the cluster file): facts and refusal on
/// every host, download, etcd, masters, LB, manifests, nodes.
pub fn run_on(inp: &Inputs<'_>, nodes: &[Node<'_>], report: &mut Report) -> Result<(), Error> {
    let run = &inp.run;
    let cluster = run.cluster;
    report.dry_run = run.dry_run;
    // read-only, every host, every role: a problem anywhere refuses the run before anything changes
    let t0 = Instant::now();
    let facts = engine::preflight(run, nodes, "up", &|n| probe(cluster, n.host), &|n, f| refusal(cluster, n.host, f))?;
    release_change(cluster, nodes)?;
    report.stage(run, "facts", t0, format!("{} hosts, nothing refused", nodes.len()));

    let t0 = Instant::now();
    let parts = [Component::Etcd, Component::Master, Component::Node];
    let bins = (inp.fetch)(cluster, &parts)?;
    report.stage(run, "download", t0, format!("{} components verified", Bins::components(cluster, &parts).len()));
    let ctx = Ctx { run: run.clone(), templates: inp.templates, bins: &bins };

    // each large file into the cluster once, the hosts passing it on (the pushes below then copy
    // it from the host's own store); the stores go when the run ends, however it ends. The
    // deploy goes on meanwhile, each host once its own files are in
    let t0 = Instant::now();
    let plans: Vec<Vec<engine::Item>> = nodes.iter().map(|n| relay_items(&ctx, n.host, &parts)).collect::<Result<_, _>>()?;
    let plan = engine::relay::plan(run, nodes, &plans, inp.relay)?;
    let planned = t0.elapsed();
    let _stores = Cleanup { run, nodes, used: plan.relays() };
    if !plan.relays() {
        report.stage(run, "relay", t0, plan.report().summary());
    }
    // the control plane's files cross the link first, and it starts while the nodes' files follow
    // and fan out; each node starts as soon as it holds its own files (containerd and its images
    // need no apiserver; from flanneld on it waits for the control plane, if that is not up yet)
    let workers = by_role(nodes, Role::Node);
    let first: Vec<&str> = nodes.iter().filter(|n| [Role::Etcd, Role::Master, Role::Lb].iter().any(|r| n.host.has(*r))).map(|n| n.host.name.as_str()).collect();
    let mut done = Report::default();
    let (relay, addons) = engine::relay::alongside(run, nodes, plan, &first, |staged| -> Result<Option<super::manifests::Applied>, Error> {
        let control = engine::Latch::default();
        let converge_nodes = || {
            let t0 = Instant::now();
            let plane = super::node::ControlPlane::Later(&control);
            let r = super::node::converge_each(&ctx, &workers, &plane, &|n| {
                staged.wait(&[n.host.name.as_str()]).map_err(|e| e.chain())?;
                // a host of the control plane too: its node part once that is up
                if [Role::Etcd, Role::Master, Role::Lb].iter().any(|r| n.host.has(*r)) {
                    plane.wait(&run.cancel)?;
                }
                Ok(())
            });
            (t0, r)
        };
        std::thread::scope(|s| {
            // however the control plane's deploy ends (a panic included), no node waits on
            let _unblock = Unblock(&control);
            // a dry run says the control plane's plan first, then the nodes'
            let converging = (!workers.is_empty() && !run.dry_run).then(|| s.spawn(converge_nodes));
            let masters = by_role(nodes, Role::Master);
            let up = control_plane(inp, &ctx, nodes, &facts, staged, &mut done)
                .and_then(|addons| Ok((addons, if workers.is_empty() { None } else { Some(super::node::endpoint(&ctx, &masters)?) })));
            let up = match up {
                Ok((addons, ep)) => {
                    control.set(ep.ok_or_else(|| "no master".to_string()));
                    Ok(addons)
                }
                Err(e) => {
                    control.set(Err(crate::exit::chain(&e)));
                    Err(e)
                }
            };
            let nodes_done = match converging {
                Some(h) => Some(h.join().expect("the nodes' converge does not panic")),
                None => (!workers.is_empty() && up.is_ok()).then(converge_nodes),
            };
            let addons = up?;
            if let Some((t0, r)) = nodes_done {
                let r = r?;
                done.add(&r);
                done.stage(run, "nodes", t0, summarize(&r));
            }
            Ok(addons)
        })
    })
    .inspect_err(|_| report.merge(std::mem::take(&mut done)))?;
    if relay.mode == "relay" {
        report.stage_took(run, "relay", t0, planned + std::time::Duration::from_millis(relay.millis), format!("{}, alongside the deploy", relay.summary()));
    }
    report.bytes_sent += relay.operator_bytes;
    report.relay = relay;
    report.merge(done);

    if let Some(applied) = addons {
        let t0 = Instant::now();
        let r = applied.wait(run)?;
        let s = r.addons.iter().map(|a| format!("{} {}/{}", a.name, a.ready, a.replicas)).collect::<Vec<_>>().join(", ");
        report.manifests.extend(r.objects);
        report.addons = r.addons;
        report.stage(run, "addons", t0, if run.dry_run { "planned".into() } else { format!("{s} ready") });
    }
    Ok(())
}

/// etcd, the masters, the LB pair, the manifests and the add-ons (applied, not waited for), each
/// once its hosts' files are in.
fn control_plane(inp: &Inputs<'_>, ctx: &Ctx<'_>, nodes: &[Node<'_>], facts: &[Facts], staged: &engine::relay::Staged<'_>, report: &mut Report) -> Result<Option<super::manifests::Applied>, Error> {
    let run = &inp.run;
    let names = |role: Role| -> Vec<&str> { nodes.iter().filter(|n| n.host.has(role)).map(|n| n.host.name.as_str()).collect() };
    // etcd
    staged.wait(&names(Role::Etcd))?;
    let t0 = Instant::now();
    let members = by_role(nodes, Role::Etcd);
    let member_facts: Vec<Facts> = nodes.iter().zip(facts).filter(|(n, _)| n.host.has(Role::Etcd)).map(|(_, f)| f.clone()).collect();
    let etcd_ctx = etcd::Ctx::new(Run { timeout: inp.etcd_timeout, ..run.clone() })?;
    let r = etcd::rollout(&etcd_ctx, &members, &member_facts, inp.templates, ctx.bins)?;
    report.bytes_sent += r.bytes_sent;
    report.started.extend(r.started.iter().map(|h| format!("{h}/etcd")));
    report.restarted.extend(r.restarted.iter().map(|h| format!("{h}/etcd")));
    let healthy = r.members.iter().filter(|m| m.healthy).count();
    let summary = if run.dry_run { format!("{} members planned", members.len()) } else { format!("{healthy}/{} members healthy", r.members.len()) };
    report.stage(run, "etcd", t0, summary);

    // masters, each out of the running LB hosts' upstreams while it restarts (setting the LB
    // hosts up is the LB stage's business)
    staged.wait(&names(Role::Master))?;
    let t0 = Instant::now();
    let masters = by_role(nodes, Role::Master);
    let r = super::master::rollout(ctx, &masters, &by_role(nodes, Role::Lb))?;
    report.add(&r.masters);
    report.stage(run, "masters", t0, summarize(&r.masters));

    // LB pair
    let lbs = by_role(nodes, Role::Lb);
    if !lbs.is_empty() {
        staged.wait(&names(Role::Lb))?;
        let t0 = Instant::now();
        let r = super::lb::converge_all(ctx, &lbs)?;
        report.add(&r.hosts);
        let holder = r.holder.map(|h| format!(", VIP held by {h}")).unwrap_or_default();
        report.stage(run, "lb", t0, format!("{}{holder}", summarize(&r.hosts)));
    }

    // manifests (bootstrap token, RBAC) before any kubelet asks for a certificate
    let t0 = Instant::now();
    match super::manifests::apply_to_masters(run.cluster, &masters, &run.printer, run.dry_run) {
        Ok(r) => {
            let s = r.summary();
            report.manifests = r.objects;
            report.stage(run, "manifests", t0, s);
        }
        Err(Error::Refused { what, .. }) if run.dry_run => report.stage(run, "manifests", t0, format!("would be applied once an apiserver runs ({what})")),
        Err(e) => return Err(e),
    }
    // the add-ons before any kubelet starts, so their pods start on the first nodes Ready
    if by_role(nodes, Role::Node).is_empty() {
        return Ok(None);
    }
    super::manifests::apply_addons(run, &masters)
}

/// Sets the nodes' control-plane latch, if nothing did, when dropped.
struct Unblock<'a>(&'a engine::Latch<Result<crate::kube::Endpoint, String>>);

impl Drop for Unblock<'_> {
    fn drop(&mut self) {
        self.0.set(Err("the control plane's deploy stopped".into()));
    }
}
