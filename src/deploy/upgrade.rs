//! `kbin upgrade`: a Kubernetes version bump in the cluster file, applied on purpose, and
//! `kbin upgrade --rollback`, which switches every host back.
//!
//! Read-only first, nothing changed on a refusal (exit 2): every host answers over SSH; the
//! version each master and node runs now (`--version` of what `layout.k8s_bin` points at);
//! the skew rules ([`skew`]: the control plane one minor at a time, no kubelet newer than the
//! apiservers, none more than three minors older); etcd healthy; every node Ready. Then an etcd
//! snapshot next to the cluster file, and the record of the upgrade (`upgrade.json` in the state
//! directory: from, to, snapshot), which `--rollback` reads.
//!
//! Each release lives side by side in `layout.k8s_releases/<version>/` and `layout.k8s_bin`
//! holds symlinks into the one in use ([`crate::render::binaries`]): the switch is a symlink
//! swap inside the host's transaction, so a host that fails verification is switched back (and
//! restarted on the previous release) at once, and the previous release stays on the host.
//!
//! Order: etcd members one at a time (when the etcd release changes too), masters one at a
//! time (each apiserver healthy and reporting the new version before the next), then the nodes
//! in batches (`--batch`): each cordoned and drained through the API (Eviction, so
//! PodDisruptionBudgets hold), switched, restarted, verified Ready with the new kubelet version,
//! uncordoned. A rollback runs the other way round (nodes, then masters): a kubelet is never
//! newer than an apiserver. `--dry-run` takes the same path and prints the plan per host.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::config::{Cluster, Host, Role};
use crate::engine::{self, HostOutcome};
use crate::error::Error;
use crate::host::{Cmd, Node};
use crate::kube::{Client, Endpoint};
use crate::render::{Component, Templates};

pub use crate::config::release::Version;

/// What one host runs now.
#[derive(Debug, Clone, Serialize)]
pub struct Running {
    pub host: String,
    /// `master` (kube-apiserver) or `node` (kubelet).
    pub part: String,
    pub version: String,
}

/// The version skew rules between what runs and `target`: every broken rule, naming it, the
/// host and the versions. `rollback`: going back to the release an upgrade came from.
pub fn skew(masters: &[(String, Version)], nodes: &[(String, Version)], target: Version, rollback: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (h, v) in masters {
        if v.0 != target.0 {
            out.push(format!("kube-apiserver on {h} runs {v}: a different major release than {target}"));
        } else if !rollback && target.1 > v.1 + 1 {
            out.push(format!("the control plane moves one minor release at a time: {h} runs {v}, and {target} skips v{}.{}", v.0, v.1 + 1));
        } else if !rollback && target < *v {
            out.push(format!("{h} runs {v}, newer than {target}: going back is `kbin upgrade --rollback`"));
        } else if rollback && target.1.abs_diff(v.1) > 1 {
            out.push(format!("a rollback goes back one minor release at most: {h} runs {v}, {target} is further"));
        }
    }
    for (h, v) in nodes {
        if v.0 != target.0 {
            out.push(format!("the kubelet on {h} runs {v}: a different major release than {target}"));
        } else if !rollback && *v > target {
            out.push(format!("a kubelet is never newer than the apiservers: {h} runs {v}, the apiservers would run {target}"));
        } else if target.1 > v.1 + 3 {
            out.push(format!("a kubelet is at most three minor releases older than the apiservers: {h} runs {v}, the apiservers would run {target}"));
        }
    }
    out
}

/// What `kbin upgrade` keeps in the state directory: what `--rollback` goes back to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub from: String,
    pub to: String,
    pub snapshot: Option<String>,
    pub finished: bool,
}

pub fn record_path(cluster: &Cluster) -> PathBuf {
    cluster.state_dir.join("upgrade.json")
}

fn read_record(cluster: &Cluster) -> Result<Option<Record>, Error> {
    let p = record_path(cluster);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| Error::other(format!("{}: {e}", p.display()), Some("the file is kbin's record of the last upgrade; restore it or remove it"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::other(format!("cannot read {}: {e}", p.display()), None)),
    }
}

fn write_record(cluster: &Cluster, r: &Record) -> Result<(), Error> {
    let p = record_path(cluster);
    let text = serde_json::to_string_pretty(r).expect("serializable") + "\n";
    crate::fsutil::write_atomic(&p, text.as_bytes(), 0o644).map_err(|e| Error::other(format!("cannot write {}: {e}", p.display()), Some("check the state directory")))
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub rollback: bool,
    /// Nodes drained and switched at once.
    pub batch: usize,
}

/// One node's step.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStep {
    pub host: String,
    pub millis: u128,
    pub evicted: Vec<String>,
    pub outcome: HostOutcome,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub rollback: bool,
    pub to: String,
    /// What each master and node ran before.
    pub before: Vec<Running>,
    /// The etcd snapshot taken before anything changed.
    pub snapshot: Option<String>,
    pub etcd: Vec<String>,
    pub masters: Vec<HostOutcome>,
    pub nodes: Vec<NodeStep>,
    pub millis: u128,
    /// How the new release reached the hosts.
    pub relay: engine::relay::Report,
}

impl Report {
    pub fn summary(&self) -> String {
        let verb = if self.rollback { "rolled back" } else { "upgraded" };
        let moved = self.masters.iter().filter(|o| !o.changed.is_empty()).count() + self.nodes.iter().filter(|n| !n.outcome.changed.is_empty()).count();
        if self.dry_run {
            format!("planned: {moved} hosts would switch to {}; nothing was changed", self.to)
        } else {
            format!("{verb} to {} in {} ms: {moved} hosts switched", self.to, self.millis)
        }
    }
}

/// The version `--version` of `binary` prints on `node` (`Kubernetes v1.34.2`).
fn running(node: &Node<'_>, bin_dir: &str, binary: &str) -> Result<Version, String> {
    let path = format!("{bin_dir}/{binary}");
    let out = node.remote.run(&Cmd::new([path.as_str(), "--version"]).sudo()).map_err(|e| e.chain())?;
    let text = out.stdout_str();
    text.split_whitespace().find_map(Version::parse).ok_or_else(|| format!("`{path} --version` printed {:?}{}", text.trim(), if out.success() { String::new() } else { format!(" and failed: {}", out.stderr_str().trim()) }))
}

fn refused(what: String, problems: Vec<String>, hint: &str) -> Error {
    Error::Refused { what, problems, hint: Some(hint.into()) }
}

/// `kbin upgrade [--rollback]`.
pub fn upgrade(opts: &super::Opts<'_>, cluster: &Cluster, o: Options, report: &mut Report) -> Result<(), Error> {
    let t0 = Instant::now();
    report.dry_run = opts.dry_run;
    report.rollback = o.rollback;
    let previous = read_record(cluster)?;
    // the release to go to: the cluster file's, or for a rollback the one the last upgrade left
    let mut target_cluster = cluster.clone();
    if o.rollback {
        let r = previous.clone().ok_or_else(|| refused(format!("no upgrade is recorded in {}: nothing to roll back to", record_path(cluster).display()), vec![], "`kbin upgrade` records where it came from; without it, set kubernetes_version and run `kbin upgrade`"))?;
        target_cluster.kubernetes_version = r.from;
    }
    let cluster = &target_cluster;
    let hosts: Vec<&Host> = cluster.hosts.iter().filter(|h| h.has(Role::Master) || h.has(Role::Node) || h.has(Role::Etcd) || h.has(Role::Lb)).collect();
    let nodes = opts.run(cluster).connector(opts.accept_new_host_keys).connect_all(&hosts)?;
    upgrade_on(opts, cluster, &nodes, previous, o, report)?;
    report.millis = t0.elapsed().as_millis();
    Ok(())
}

/// [`upgrade`] on connected hosts; `cluster` names the release to go to (for a rollback, the
/// one `previous` came from).
pub fn upgrade_on(opts: &super::Opts<'_>, cluster: &Cluster, nodes: &[Node<'_>], previous: Option<Record>, o: Options, report: &mut Report) -> Result<(), Error> {
    report.dry_run = opts.dry_run;
    report.rollback = o.rollback;
    report.to = cluster.kubernetes_version.clone();
    let target = Version::parse(&cluster.kubernetes_version).ok_or_else(|| Error::other(format!("kubernetes_version {:?} is not a release version", cluster.kubernetes_version), Some("write a release tag such as \"v1.34.3\"")))?;
    let run = opts.run(cluster);

    // read-only: what each host runs, the skew rules, the cgroup version, etcd's rules, etcd
    // and the nodes healthy
    let with = |r: Role| nodes.iter().filter(|n| n.host.has(r)).cloned().collect::<Vec<_>>();
    let (masters, workers, members, lbs) = (with(Role::Master), with(Role::Node), with(Role::Etcd), with(Role::Lb));
    let mut unreadable = Vec::new();
    let mut read = |list: &[Node<'_>], binary: &str, part: &str| -> Vec<(String, Version)> {
        let mut out = Vec::new();
        for n in list {
            match running(n, &cluster.layout.k8s_bin, binary) {
                Ok(v) => {
                    report.before.push(Running { host: n.host.name.clone(), part: part.into(), version: v.to_string() });
                    out.push((n.host.name.clone(), v));
                }
                Err(e) => unreadable.push(format!("{}: {e}", n.host.name)),
            }
        }
        out
    };
    let m = read(&masters, "kube-apiserver", "master");
    let w = read(&workers, "kubelet", "node");
    if !unreadable.is_empty() {
        return Err(refused("cannot tell which Kubernetes release some hosts run; nothing was changed".into(), unreadable, "`kbin upgrade` moves a running cluster: run `kbin up` first"));
    }
    let broken = skew(&m, &w, target, o.rollback);
    if !broken.is_empty() {
        return Err(refused(format!("the upgrade to {target} breaks the version skew rules; nothing was changed"), broken, "upgrade one minor release at a time: set kubernetes_version to the next minor release and run `kbin upgrade`"));
    }
    // the target kubelet on each node's cgroup version (from 1.35 on it exits on cgroup v1)
    let mut cgroup = Vec::new();
    for n in &workers {
        let f = engine::facts::gather(n, &engine::Probe::default()).map_err(|e| refused(format!("cannot read the facts of {}; nothing was changed", n.host.name), vec![e.chain()], "check the host and run `kbin upgrade` again"))?;
        cgroup.extend(f.cgroup_refusal(cluster, &target.to_string()).map(|p| format!("{}: {p}", n.host.name)));
    }
    if !cgroup.is_empty() {
        return Err(refused(format!("the kubelet of {target} would not start on some nodes; nothing was changed"), cgroup, "move those hosts to cgroup v2 first, or set failCgroupV1 = false under [kubelet.config] knowingly"));
    }
    let etcd_ctx = super::etcd::Ctx::new(run.clone())?;
    // etcd's rules (one minor at a time, 3.6 only from a valid 3.5 patch, never back a minor)
    // are the etcd preflight's: read-only, before the snapshot and any change. A rollback
    // leaves etcd as it is.
    let etcd_facts = if o.rollback { None } else { Some(super::etcd::preflight(&etcd_ctx, &members)?) };
    let todo: Vec<&str> = m.iter().chain(&w).filter(|(_, v)| *v != target).map(|(h, _)| h.as_str()).collect();
    // the etcd members whose release moves, and to which
    let etcd_target = Version::parse(&cluster.etcd_version);
    let etcd_from: Vec<(&Node<'_>, Version)> = match &etcd_facts {
        Some(facts) => members.iter().zip(facts).filter_map(|(n, f)| f.versions.get("etcd").and_then(|t| Version::of_etcd_output(t)).map(|v| (n, v))).filter(|(_, v)| Some(*v) != etcd_target).collect(),
        None => Vec::new(),
    };
    // 3.6 drops the v2store: a member whose v2store holds more than membership data must be
    // cleaned first (etcd's upgrade guide); checked with the etcdutl of the running release
    for (n, _) in etcd_from.iter().filter(|(_, v)| (v.0, v.1) == (3, 5) && etcd_target.is_some_and(|t| t.1 == 6)) {
        v2store_check(&run, n)?;
    }
    let (client, ep, problems) = unhealthy(&run, &members, &masters, &workers)?;
    if !problems.is_empty() {
        return Err(refused("the cluster is not healthy; an upgrade starts only from a healthy cluster, nothing was changed".into(), problems, "see `kbin status`, fix what it shows, then run `kbin upgrade` again"));
    }
    for (h, v) in m.iter().chain(&w) {
        let what = if *v == target { format!("{v}, nothing to do") } else { format!("{v} -> {target}") };
        let part = if masters.iter().any(|n| &n.host.name == h) && !workers.iter().any(|n| &n.host.name == h) { "master" } else { "node" };
        run.printer.phase("plan", Some(h), &format!("{part}: {what}"));
    }

    // the binaries of both parts (the previous release is on the hosts already; a rollback
    // finds its files there and sends nothing but the switch)
    let parts = if o.rollback { vec![Component::Master, Component::Node] } else { vec![Component::Etcd, Component::Master, Component::Node] };
    let bins = (opts.fetch)(cluster, &parts)?;
    let templates = Templates::load(cluster)?;
    let ctx = Ctx { run: run.clone(), templates: &templates, bins: &bins };
    // the new release into the cluster once, passed on between the hosts
    let plans: Vec<Vec<engine::Item>> = nodes.iter().map(|n| super::up::relay_items(&ctx, n.host, &parts)).collect::<Result<_, _>>()?;
    let relay = engine::relay::stage(&run, &nodes, &plans, opts.relay)?;
    let _stores = super::up::Cleanup { run: &run, nodes: &nodes, used: relay.mode == "relay" };
    report.relay = relay;

    // the snapshot, and the record of where this upgrade comes from
    if !o.rollback {
        let from = m.iter().chain(&w).map(|(_, v)| *v).filter(|v| *v != target).min();
        let from = match (from, &previous) {
            (Some(v), _) => Some(v.to_string()),
            // a re-run after a partial upgrade: every host is there already
            (None, Some(p)) if p.to == report.to => Some(p.from.clone()),
            (None, _) => None,
        };
        for (n, v) in &etcd_from {
            run.printer.phase("plan", Some(&n.host.name), &format!("etcd: {v} -> {}", cluster.etcd_version));
        }
        let moves = !todo.is_empty() || !etcd_from.is_empty();
        if run.dry_run {
            run.printer.phase("dry-run", None, "would take an etcd snapshot to backups/ next to the cluster file");
        } else if moves {
            let dir = cluster.state_dir.join("backups");
            crate::fsutil::private_dir(&dir).map_err(|e| Error::other(format!("cannot create {}: {e}", dir.display()), None))?;
            let before = if todo.is_empty() { format!("etcd-{}", cluster.etcd_version) } else { report.to.clone() };
            let out = dir.join(format!("etcd-{}-{}-before-{before}.db", cluster.name, crate::fsutil::utc_stamp()));
            let b = super::etcd_maint::backup(&etcd_ctx, &members, &out)?;
            run.printer.phase("upgrade", Some(&b.from), &format!("etcd snapshot verified: {}", b.path));
            report.snapshot = Some(b.path);
        }
        if let (Some(from), false) = (from, run.dry_run) {
            let snapshot = report.snapshot.clone().or_else(|| previous.as_ref().and_then(|p| p.snapshot.clone()));
            write_record(cluster, &Record { from, to: report.to.clone(), snapshot, finished: false })?;
        }
        // etcd first, one member at a time (a no-op when its release is unchanged)
        let facts = etcd_facts.unwrap_or_default();
        let r = super::etcd::rollout(&etcd_ctx, &members, &facts, &templates, &bins)?;
        report.etcd = r.restarted.clone();
        masters_step(&ctx, &masters, &lbs, report)?;
        nodes_step(&ctx, &client, &ep, &workers, &masters, o.batch, report)?;
    } else {
        nodes_step(&ctx, &client, &ep, &workers, &masters, o.batch, report)?;
        masters_step(&ctx, &masters, &lbs, report)?;
        // a member refuses data a newer etcd wrote: going back there is a restore, never a swap
        let snapshot = previous.as_ref().and_then(|p| p.snapshot.clone()).unwrap_or_else(|| "the snapshot taken before the upgrade".into());
        run.printer.phase("upgrade", None, &format!("etcd is not rolled back (it never goes back a minor release): to undo an etcd change, `kbin etcd restore {snapshot}`"));
    }
    if run.dry_run {
        return Ok(());
    }
    if o.rollback {
        // the cluster file says what runs again
        let text = std::fs::read_to_string(&cluster.file).map_err(|e| Error::other(format!("cannot read {}: {e}", cluster.file.display()), None))?;
        let new = crate::config::edit::with_kubernetes_version(&cluster.file, &text, &report.to)?;
        crate::config::edit::replace(cluster, &new)?;
        run.printer.phase("upgrade", None, &format!("{}: kubernetes_version = {:?}", cluster.file.display(), report.to));
        let _ = std::fs::remove_file(record_path(cluster));
    } else if let Some(mut r) = read_record(cluster)? {
        r.finished = true;
        write_record(cluster, &r)?;
    }
    Ok(())
}

/// What keeps the cluster from being healthy, for operations that start only from a healthy
/// cluster: etcd members not healthy, nodes not Ready; with a client and a Ready apiserver.
pub fn unhealthy(run: &engine::Run<'_>, members: &[Node<'_>], masters: &[Node<'_>], workers: &[Node<'_>]) -> Result<(Client, Endpoint, Vec<String>), Error> {
    let cluster = run.cluster;
    let etcd_ctx = super::etcd::Ctx::new(run.clone())?;
    let mut problems = Vec::new();
    for n in members {
        match super::etcd::member_health(&etcd_ctx, n) {
            Ok(true) => {}
            Ok(false) => problems.push(format!("{}: the etcd member is not healthy", n.host.name)),
            Err(e) => problems.push(format!("{}: etcd: {e}", n.host.name)),
        }
    }
    let client = super::api_client(cluster)?;
    let ep = crate::kube::masters::ready_master(cluster, &client, masters.iter().map(|n| (n.host, Ok(n.clone()))).collect(), &run.printer)?;
    problems.extend(not_ready_names(&client, &ep, &workers.iter().map(|n| n.host).collect::<Vec<_>>()));
    Ok((client, ep, problems))
}

/// Which of `hosts` have no Ready Node, each with why.
pub fn not_ready_names(client: &Client, ep: &Endpoint, hosts: &[&Host]) -> Vec<String> {
    let list = match client.get(ep, "/api/v1/nodes").map_err(|e| crate::kube::chain(&e)).and_then(|l| crate::kube::nodes::node_list(&l)) {
        Ok(l) => l,
        Err(e) => return vec![format!("cannot list the Nodes: {e}")],
    };
    hosts
        .iter()
        .filter_map(|h| match list.iter().find(|s| s.name == h.name) {
            None => Some(format!("{}: no Node registered", h.name)),
            Some(s) if s.ready != Some(true) => Some(format!("{}: the Node is not Ready ({})", h.name, s.ready_reason.clone().unwrap_or_else(|| "no Ready condition".into()))),
            Some(_) => None,
        })
        .collect()
}

/// `etcdutl check v2store` of `n`'s member (read-only; it reads the snapshot and WAL files, which
/// etcd writes by appending): refused when the v2store holds custom content, which 3.6 cannot
/// read. A host without etcdutl (installed by an older kbin) cannot be checked: said, not refused,
/// since kbin never enables the v2 API.
fn v2store_check(run: &engine::Run<'_>, n: &Node<'_>) -> Result<(), Error> {
    let cluster = run.cluster;
    let etcdutl = format!("{}/etcdutl", cluster.layout.etcd_bin);
    let out = n.remote.run(&Cmd::new([etcdutl.as_str(), "check", "v2store", "--data-dir", cluster.layout.etcd_data.as_str()]).sudo()).map_err(|e| refused(format!("{}: cannot run etcdutl check v2store; nothing was changed", n.host.name), vec![e.chain()], "check the host and run `kbin upgrade` again"))?;
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    if out.success() {
        run.printer.phase("upgrade", Some(&n.host.name), "v2store: no custom content (etcdutl check v2store)");
        return Ok(());
    }
    if out.status == 127 || text.contains("No such file") || text.contains("not found") {
        run.printer.warn(&format!("{}: no {etcdutl} to check the v2store with before etcd 3.6", n.host.name), Some("kbin never enables etcd's v2 API, so its v2store holds membership data only; `kbin etcd deploy` installs etcdutl"));
        return Ok(());
    }
    Err(refused(
        format!("{}: the etcd v2store holds data etcd 3.6 cannot read; nothing was changed", n.host.name),
        vec![text.trim().lines().last().unwrap_or("etcdutl check v2store failed").to_string()],
        "follow etcd's v3.5 -> v3.6 upgrade guide (v2store section: --snapshot-count=1 and a restart clean it), then run `kbin upgrade` again",
    ))
}

fn masters_step(ctx: &Ctx<'_>, masters: &[Node<'_>], lbs: &[Node<'_>], report: &mut Report) -> Result<(), Error> {
    let r = super::master::rollout(ctx, masters, lbs)?;
    report.masters = r.masters;
    Ok(())
}

/// The nodes in batches: drained, switched (the node converge path, its verify waiting for the
/// new kubelet version), uncordoned. A batch that fails stops the run; its nodes were switched
/// back by their transactions and are uncordoned again.
fn nodes_step(ctx: &Ctx<'_>, client: &Client, ep: &Endpoint, workers: &[Node<'_>], masters: &[Node<'_>], batch: usize, report: &mut Report) -> Result<(), Error> {
    let plans = super::plans(ctx, workers, Component::Node)?;
    let mut todo = Vec::new();
    for (n, items) in workers.iter().zip(&plans) {
        if engine::needs_change(n, items, &crate::config::node_units(ctx.cluster), &ctx.known)? {
            todo.push(n.clone());
        } else {
            ctx.printer.phase("node", Some(&n.host.name), "up to date, nothing sent");
        }
    }
    for (b, group) in todo.chunks(batch.max(1)).enumerate() {
        let t0 = Instant::now();
        let names: Vec<&str> = group.iter().map(|n| n.host.name.as_str()).collect();
        ctx.printer.phase("upgrade", None, &format!("batch {}: {}", b + 1, names.join(" ")));
        let mut drained = Vec::new();
        let mut result = Ok(());
        for n in group {
            let mut r = super::remove::Report::default();
            match super::remove::drain("upgrading", &ctx.run, client, ep, &n.host.name, true, &mut r) {
                Ok(()) => drained.push((n, r)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let result = result.and_then(|()| super::node::converge_all(ctx, group, masters));
        // schedulable again: switched and verified, or switched back by the rollback
        for (n, r) in &drained {
            if r.cordoned && !ctx.dry_run {
                match client.cordon(ep, &n.host.name, false) {
                    Ok(_) => ctx.printer.phase("upgrade", Some(&n.host.name), "uncordoned"),
                    Err(e) => ctx.printer.warn(&format!("{}: cannot uncordon: {}", n.host.name, crate::kube::chain(&e)), Some("kubectl uncordon it once the apiserver answers")),
                }
            }
        }
        let outcomes = result?;
        let per = t0.elapsed().as_millis() / group.len() as u128;
        for (o, (n, r)) in outcomes.into_iter().zip(drained) {
            report.nodes.push(NodeStep { host: n.host.name.clone(), millis: per, evicted: r.evicted, outcome: o });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }
    fn hosts(list: &[(&str, &str)]) -> Vec<(String, Version)> {
        list.iter().map(|(h, s)| (h.to_string(), v(s))).collect()
    }

    #[test]
    fn a_patch_or_the_next_minor_is_allowed() {
        let m = hosts(&[("m1", "v1.34.2"), ("m2", "v1.34.2")]);
        let n = hosts(&[("n1", "v1.34.2"), ("n2", "v1.33.5")]);
        assert!(skew(&m, &n, v("v1.34.3"), false).is_empty());
        assert!(skew(&m, &n, v("v1.35.0"), false).is_empty());
    }

    #[test]
    fn skipping_a_minor_release_names_the_rule_the_host_and_the_versions() {
        let m = hosts(&[("m1", "v1.34.2")]);
        let p = skew(&m, &[], v("v1.36.0"), false);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("one minor release at a time") && p[0].contains("m1 runs v1.34.2") && p[0].contains("v1.36.0 skips v1.35"), "{p:?}");
    }

    #[test]
    fn going_down_needs_rollback_and_kubelets_stay_within_their_skew() {
        let m = hosts(&[("m1", "v1.34.3")]);
        assert!(skew(&m, &[], v("v1.34.2"), false)[0].contains("--rollback"));
        assert!(skew(&m, &[], v("v1.34.2"), true).is_empty());
        let n = hosts(&[("n1", "v1.35.0")]);
        assert!(skew(&hosts(&[("m1", "v1.34.2")]), &n, v("v1.34.3"), false)[0].contains("never newer"));
        let old = hosts(&[("n1", "v1.30.1")]);
        assert!(skew(&hosts(&[("m1", "v1.34.2")]), &old, v("v1.35.0"), false)[0].contains("three minor releases older"));
        assert!(skew(&hosts(&[("m1", "v1.34.2")]), &hosts(&[("n1", "v2.0.0")]), v("v1.34.3"), false)[0].contains("major"));
    }
}
