//! `kbin up`: the whole cluster from the file, stage after stage, each skipping what is done.

use std::time::Instant;

use serde::Serialize;

use super::{Ctx, HostOutcome};
use crate::config::Role;
use crate::error::Error;
use crate::etcd::ops as etcd;
use crate::host::Node;
use crate::kube::manifests::{self, ObjectReport};

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
}

impl Report {
    fn add(&mut self, outcomes: &[HostOutcome]) {
        for o in outcomes {
            self.bytes_sent += o.bytes_sent;
            self.started.extend(o.started.iter().map(|u| format!("{}/{u}", o.host)));
            self.restarted.extend(o.restarted.iter().map(|u| format!("{}/{u}", o.host)));
        }
    }
    fn stage(&mut self, ctx: &Ctx<'_>, name: &str, t0: Instant, summary: String) {
        ctx.printer.phase("up", None, &format!("{name}: {summary} ({} ms)", t0.elapsed().as_millis()));
        self.stages.push(Stage { name: name.into(), millis: t0.elapsed().as_millis(), summary });
    }
}

fn summarize(outcomes: &[HostOutcome]) -> String {
    let changed = outcomes.iter().filter(|o| !o.changed.is_empty() || !o.started.is_empty() || !o.restarted.is_empty()).count();
    format!("{} hosts, {changed} changed", outcomes.len())
}

fn by_role<'a, 'c>(nodes: &'a [Node<'c>], role: Role) -> Vec<Node<'c>> {
    nodes.iter().filter(|n| n.host.has(role)).cloned().collect()
}

/// The deploy stages of `up` over connected `nodes` (every host of the cluster file): etcd,
/// masters, LB, manifests, nodes. pki and download run before (they need no hosts).
pub fn run(ctx: &Ctx<'_>, etcd_ctx: &etcd::Ctx<'_>, nodes: &[Node<'_>], report: &mut Report) -> Result<(), Error> {
    report.dry_run = ctx.dry_run;
    // etcd
    let t0 = Instant::now();
    let members = by_role(nodes, Role::Etcd);
    let bins = etcd::Binaries { etcd: ctx.bins.get("etcd", "etcd")?, etcdctl: ctx.bins.get("etcd", "etcdctl")? };
    let r = etcd::deploy(etcd_ctx, &members, ctx.templates, &bins, ctx.dry_run)?;
    report.bytes_sent += r.bytes_sent;
    let fresh: Vec<&String> = r.started.iter().collect();
    report.started.extend(fresh.iter().map(|h| format!("{h}/etcd")));
    report.restarted.extend(r.restarted.iter().map(|h| format!("{h}/etcd")));
    let healthy = r.members.iter().filter(|m| m.healthy).count();
    let summary = if ctx.dry_run { format!("{} members planned", members.len()) } else { format!("{healthy}/{} members healthy", r.members.len()) };
    report.stage(ctx, "etcd", t0, summary);

    // masters (the LB upstreams are the LB stage's business)
    let t0 = Instant::now();
    let masters = by_role(nodes, Role::Master);
    let r = super::master::deploy(ctx, &masters, &[])?;
    report.add(&r.masters);
    report.stage(ctx, "masters", t0, summarize(&r.masters));

    // LB pair
    let lbs = by_role(nodes, Role::Lb);
    if !lbs.is_empty() {
        let t0 = Instant::now();
        let r = super::lb::deploy(ctx, &lbs)?;
        report.add(&r.hosts);
        let holder = r.holder.map(|h| format!(", VIP held by {h}")).unwrap_or_default();
        report.stage(ctx, "lb", t0, format!("{}{holder}", summarize(&r.hosts)));
    }

    // manifests (bootstrap token, RBAC) before any kubelet asks for a certificate
    let t0 = Instant::now();
    match manifests::apply_to_masters(ctx.cluster, &masters, &ctx.printer, ctx.dry_run) {
        Ok(r) => {
            let s = r.summary();
            report.manifests = r.objects;
            report.stage(ctx, "manifests", t0, s);
        }
        Err(Error::Refused { what, .. }) if ctx.dry_run => report.stage(ctx, "manifests", t0, format!("would be applied once an apiserver runs ({what})")),
        Err(e) => return Err(e),
    }

    // nodes
    let workers = by_role(nodes, Role::Node);
    if !workers.is_empty() {
        let t0 = Instant::now();
        let r = super::node::deploy(ctx, &workers, &masters)?;
        report.add(&r);
        report.stage(ctx, "nodes", t0, summarize(&r));
    }
    Ok(())
}
