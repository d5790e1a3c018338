//! `kbin node remove HOST` and `kbin master remove HOST`: taking a host out of the cluster.
//!
//! Read-only first, nothing changed on a refusal (exit 2): the host is in the cluster file with
//! the role, an apiserver (another master's, for `master remove`) is ready, the host answers over
//! SSH (or `--force`: the API side only), its facts (which units and which flannel/CNI state it
//! has) are gathered through the engine, and the cluster file without the host still validates.
//! `master remove` also refuses the last master and a master the nodes reach the apiserver
//! through (`apiserver.endpoint`, or no VIP: the first master).
//!
//! Then, in this order: drain through the API (cordon, evict every pod but DaemonSet and mirror
//! pods with the Eviction subresource so PodDisruptionBudgets hold, retry what a budget refuses
//! until `--timeout`, wait until the pods are gone; a drain that does not finish uncordons the
//! node again); for a master, the LB upstreams without it (the LB converge path: `nginx -t`, a
//! reload), then its control plane stopped and disabled, then its etcd member removed (the etcd
//! remove path); the node services stopped and disabled (kubelet first) and flannel's and CNI's
//! state deleted (exactly [`CNI_IFACES`], [`CNI_DIRS`], [`CNI_FILES`]); the Node object deleted
//! once its kubelet is stopped (a running kubelet would register it again); last, the roles taken
//! off the host in the cluster file, comments kept. `--dry-run` takes the same path and says what
//! each step would do.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::Ctx;
use crate::config::{Cluster, Host, Role};
use crate::engine::{self, Bins, Facts, HostFailure, HostOutcome, Probe, Rollback, Run};
use crate::error::Error;
use crate::host::{Cmd, HostError, Node};
use crate::kube::drain::Eviction;
use crate::kube::{Client, Endpoint};

/// The node's services, in the order they stop: the kubelet first, the runtime last.
pub const NODE_UNITS: [&str; 4] = ["kubelet", "kube-proxy", "flanneld", "containerd"];
/// The control plane, in the order it stops: the apiserver last.
pub const MASTER_UNITS: [&str; 3] = ["kube-scheduler", "kube-controller-manager", "kube-apiserver"];
/// Network interfaces flannel and the bridge CNI plugin made.
pub const CNI_IFACES: [&str; 2] = ["flannel.1", "cni0"];
/// Directories of flannel's and CNI's state, deleted with what they hold: flanneld's subnet file,
/// the host-local IPAM allocations.
pub const CNI_DIRS: [&str; 2] = ["/run/flannel", "/var/lib/cni"];
/// Files deleted: the CNI configuration kbin wrote.
pub const CNI_FILES: [&str; 1] = ["/etc/cni/net.d/10-flannel.conflist"];

/// What a removal did (or, in a dry run, would do).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub host: String,
    pub dry_run: bool,
    /// Reached over SSH; `false` only with `--force`, when only the API side was done.
    pub reachable: bool,
    /// The Node was marked unschedulable by this run.
    pub cordoned: bool,
    /// Pods evicted (`namespace/name`).
    pub evicted: Vec<String>,
    /// Pods left where they are: DaemonSet and mirror pods (`namespace/name (why)`).
    pub left: Vec<String>,
    /// LB hosts whose upstreams were re-rendered (`master remove`).
    pub lb: Vec<HostOutcome>,
    /// Services stopped and disabled, in order.
    pub stopped: Vec<String>,
    pub etcd_member_removed: bool,
    /// Interfaces, directories and files deleted on the host.
    pub removed: Vec<String>,
    pub node_deleted: bool,
    /// Roles taken off the host in the cluster file.
    pub roles_removed: Vec<String>,
    /// The host's `[[hosts]]` entry went (no role was left).
    pub host_entry_removed: bool,
}

/// How a removal runs besides the [`Run`]: go on without the host (`--force`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub force: bool,
}

fn refused(what: String, hint: &str) -> Error {
    Error::Refused { what, problems: vec![], hint: Some(hint.into()) }
}

/// The host of the cluster file named `name` (or with that address) with `role`; a refusal
/// (exit 2) otherwise.
pub fn host_with<'c>(cluster: &'c Cluster, name: &str, role: Role) -> Result<&'c Host, Error> {
    let host = cluster.host(name).ok_or_else(|| refused(format!("no host {name:?} in {}; nothing was changed", cluster.file.display()), "use a host name or address from the cluster file"))?;
    if !host.has(role) {
        let roles: Vec<&str> = host.roles.iter().map(|r| r.as_str()).collect();
        return Err(refused(format!("{} does not have the {} role in {} (roles: {}); nothing was changed", host.name, role.as_str(), cluster.file.display(), roles.join(", ")), "check the host name; `kbin status` lists the hosts and their roles"));
    }
    Ok(host)
}

/// What preflight looks at on the host: its units (and whether their unit files exist), and the
/// flannel/CNI state a node has.
pub fn probe(cluster: &Cluster, units: &[&str], node: bool) -> Probe {
    let files: Vec<String> = units.iter().map(|u| format!("{}/{u}.service", cluster.layout.units)).collect();
    let mut p = Probe::default().ask("unit", units).ask("path", &files);
    if node {
        p = p.ask("iface", &CNI_IFACES).ask("path", &CNI_DIRS).ask("path", &CNI_FILES);
    }
    p
}

/// Why kbin cannot take services off the host: a pure function of its facts.
pub fn refusal(f: &Facts) -> Vec<String> {
    if f.systemd { Vec::new() } else { vec!["systemd is not the init system".into()] }
}

/// What the host holds of `units` and flannel/CNI state, from its facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostPlan {
    /// Units that run or are installed, in stop order.
    pub stop: Vec<String>,
    pub ifaces: Vec<String>,
    pub paths: Vec<String>,
}

/// The plan for the host: a pure function of its facts.
pub fn host_plan(cluster: &Cluster, units: &[&str], node: bool, f: &Facts) -> HostPlan {
    let stop = units.iter().filter(|u| f.active(u) || f.has("path", &format!("{}/{u}.service", cluster.layout.units))).map(|u| u.to_string()).collect();
    if !node {
        return HostPlan { stop, ..Default::default() };
    }
    let ifaces = CNI_IFACES.iter().filter(|i| f.has("iface", i)).map(|i| i.to_string()).collect();
    let paths = CNI_DIRS.iter().chain(&CNI_FILES).filter(|p| f.has("path", p)).map(|p| p.to_string()).collect();
    HostPlan { stop, ifaces, paths }
}

/// Stop and disable `units` one after the other, in order.
fn stop(run: &Run<'_>, node: &Node<'_>, units: &[String], report: &mut Report) -> Result<(), Error> {
    for u in units {
        if run.dry_run {
            run.printer.phase("dry-run", Some(&node.host.name), &format!("would stop and disable {u}"));
        } else {
            engine::systemctl(node, &["disable", "--now", "--quiet", u]).map_err(|e| host_failed(node, "stop", e, &format!("stop it by hand (`systemctl disable --now {u}`) and run the command again")))?;
            run.printer.phase("stop", Some(&node.host.name), &format!("{u} stopped and disabled"));
        }
        report.stopped.push(u.clone());
    }
    Ok(())
}

/// Delete flannel's interfaces, then its and CNI's state directories and configuration.
fn clean_cni(run: &Run<'_>, node: &Node<'_>, plan: &HostPlan, report: &mut Report) -> Result<(), Error> {
    let name = &node.host.name;
    if run.dry_run {
        for x in plan.ifaces.iter().chain(&plan.paths) {
            run.printer.phase("dry-run", Some(name), &format!("would delete {x}"));
        }
        report.removed.extend(plan.ifaces.iter().chain(&plan.paths).cloned());
        return Ok(());
    }
    let hint = "delete what is left by hand and run the command again";
    for i in &plan.ifaces {
        node.remote.check(&Cmd::new(["ip", "link", "delete", "dev", i.as_str()]).sudo()).map_err(|e| host_failed(node, "clean", e, hint))?;
        report.removed.push(i.clone());
    }
    let dirs: Vec<&str> = plan.paths.iter().filter(|p| CNI_DIRS.contains(&p.as_str())).map(String::as_str).collect();
    let files: Vec<&str> = plan.paths.iter().filter(|p| CNI_FILES.contains(&p.as_str())).map(String::as_str).collect();
    for (flag, list) in [("-rf", dirs), ("-f", files)] {
        if list.is_empty() {
            continue;
        }
        let mut argv = vec!["rm", flag, "--"];
        argv.extend(&list);
        node.remote.check(&Cmd::new(argv).sudo()).map_err(|e| host_failed(node, "clean", e, hint))?;
        report.removed.extend(list.iter().map(|s| s.to_string()));
    }
    if !report.removed.is_empty() {
        run.printer.phase("clean", Some(name), &format!("deleted {}", report.removed.join(" ")));
    }
    Ok(())
}

fn host_failed(node: &Node<'_>, phase: &str, e: HostError, hint: &str) -> Error {
    let f = HostFailure { phase: phase.into(), ..HostFailure::from(e) };
    engine::failed(format!("removing {} stopped in the {phase} phase", node.host.name), vec![f], hint)
}

fn api_failed(host: &str, phase: &str, error: String, rollback: Rollback, hint: &str) -> Error {
    stopped("removing", host, phase, error, rollback, hint)
}

fn stopped(op: &str, host: &str, phase: &str, error: String, rollback: Rollback, hint: &str) -> Error {
    engine::failed(format!("{op} {host} stopped in the {phase} phase"), vec![HostFailure { rollback, ..HostFailure::new(host, phase, error) }], hint)
}

/// Cordon Node `name`, evict its pods (not DaemonSet or mirror pods; an eviction a
/// PodDisruptionBudget refuses is asked again until the timeout) and wait until they are gone —
/// or, when the host is gone (`wait_gone` false), until each is being deleted: no kubelet will
/// confirm their end, their controllers replace them already, and deleting the Node lets the
/// pod garbage collector remove them. A drain that does not finish makes the Node schedulable
/// again, if this run cordoned it.
/// `op` names the operation in errors ("removing", "upgrading").
pub fn drain(op: &str, run: &Run<'_>, client: &Client, ep: &Endpoint, name: &str, wait_gone: bool, report: &mut Report) -> Result<(), Error> {
    let api_failed = |host: &str, phase: &str, error: String, rollback: Rollback, hint: &str| stopped(op, host, phase, error, rollback, hint);
    let kube = |e: crate::kube::KubeError| crate::kube::chain(&e);
    let hint = "check that the apiserver answers (`kbin status`), then run the command again";
    let pods = client.pods_on(ep, name).map_err(|e| api_failed(name, "drain", kube(e), Rollback::NotNeeded, hint))?;
    report.left = pods.iter().filter_map(|p| p.skip.map(|why| format!("{} ({why})", p.id()))).collect();
    if run.dry_run {
        run.printer.phase("dry-run", Some(name), "would cordon the Node");
        for p in pods.iter().filter(|p| p.skip.is_none()) {
            run.printer.phase("dry-run", Some(name), &format!("would evict {}", p.id()));
            report.evicted.push(p.id());
        }
        for l in &report.left {
            run.printer.phase("dry-run", Some(name), &format!("would leave {l}"));
        }
        return Ok(());
    }
    report.cordoned = client.cordon(ep, name, true).map_err(|e| api_failed(name, "cordon", kube(e), Rollback::NotNeeded, hint))?;
    run.printer.phase("drain", Some(name), if report.cordoned { "cordoned" } else { "already cordoned" });
    let mut asked: BTreeSet<String> = BTreeSet::new();
    let mut blocked: BTreeMap<String, String> = BTreeMap::new();
    let result = engine::wait_for(run.timeout, &run.cancel, || {
        let pods: Vec<_> = client.pods_on(ep, name).map_err(kube)?.into_iter().filter(|p| p.skip.is_none() && (wait_gone || !p.terminating)).collect();
        if pods.is_empty() {
            return Ok(());
        }
        let todo: Vec<_> = pods.iter().filter(|p| !p.terminating && !asked.contains(&p.id())).collect();
        for p in todo {
            match client.evict(ep, p).map_err(kube)? {
                Eviction::Accepted | Eviction::Gone => {
                    run.printer.phase("drain", Some(name), &format!("evicting {}", p.id()));
                    blocked.remove(&p.id());
                    asked.insert(p.id());
                    report.evicted.push(p.id());
                }
                Eviction::Blocked(m) => {
                    if blocked.insert(p.id(), m.clone()).is_none() {
                        run.printer.phase("drain", Some(name), &format!("{} not evicted yet, retrying: {m}", p.id()));
                    }
                }
            }
        }
        let ids: Vec<String> = pods.iter().map(|p| p.id()).collect();
        let why: Vec<String> = blocked.iter().map(|(p, m)| format!("{p}: {m}")).collect();
        Err(format!("{} pods still on {name} ({}){}", ids.len(), ids.join(", "), if why.is_empty() { String::new() } else { format!("; refused: {}", why.join("; ")) }))
    });
    if let Err(e) = result {
        let rollback = match (report.cordoned, client.cordon(ep, name, false)) {
            (false, _) => Rollback::NotNeeded,
            (true, Ok(_)) => Rollback::Done { what: "the Node is schedulable again".into() },
            (true, Err(u)) => Rollback::Incomplete { what: String::new(), error: format!("cannot uncordon it: {}", kube(u)) },
        };
        let hint = "a PodDisruptionBudget may hold the pods (`kubectl get pdb -A`): scale the workload up or raise --timeout, then run the command again";
        return Err(api_failed(name, "drain", e, rollback, hint));
    }
    run.printer.phase("drain", Some(name), &format!("drained: {} pods evicted, {} left (DaemonSet or mirror pods)", report.evicted.len(), report.left.len()));
    Ok(())
}

/// Delete Node `name` (its kubelet is stopped, or the host is gone).
fn delete_node(run: &Run<'_>, client: &Client, ep: &Endpoint, name: &str, report: &mut Report) -> Result<(), Error> {
    if run.dry_run {
        run.printer.phase("dry-run", Some(name), "would delete the Node");
        report.node_deleted = true;
        return Ok(());
    }
    report.node_deleted = client.delete_node(ep, name).map_err(|e| api_failed(name, "delete", crate::kube::chain(&e), Rollback::NotNeeded, "delete it with `kubectl delete node` once the apiserver answers"))?;
    run.printer.phase("delete", Some(name), if report.node_deleted { "Node deleted" } else { "no Node object (already deleted)" });
    Ok(())
}

/// The cluster file without `roles` on `host`, parsed (validated) but not written.
fn without(cluster: &Cluster, host: &Host, roles: &[&str]) -> Result<(String, Cluster, Vec<String>), Error> {
    let text = std::fs::read_to_string(&cluster.file).map_err(|source| crate::config::ConfigError::Read { path: cluster.file.clone(), source })?;
    let (new_text, removed) = crate::config::edit::without_roles(&cluster.file, &text, &host.name, roles)?;
    let new = crate::config::parse(&cluster.file, &new_text).map_err(|e| Error::Refused {
        what: format!("{} without the {} role of {} would not be a valid cluster file; nothing was changed", cluster.file.display(), roles.join(", "), host.name),
        problems: e.details(),
        hint: Some("add what the cluster still needs (another host with that role) first".into()),
    })?;
    Ok((new_text, new, removed))
}

/// Write the cluster file without the host's roles (or the host), atomically, comments kept.
fn record(run: &Run<'_>, host: &Host, new_text: &str, new: &Cluster, removed: Vec<String>, report: &mut Report) -> Result<(), Error> {
    report.host_entry_removed = new.hosts.iter().all(|h| h.name != host.name);
    let what = if report.host_entry_removed { format!("its [[hosts]] entry (roles {})", removed.join(", ")) } else { format!("the roles {} (the host stays)", removed.join(", ")) };
    report.roles_removed = removed;
    let file = run.cluster.file.display();
    if run.dry_run {
        run.printer.phase("dry-run", Some(&host.name), &format!("would take {what} out of {file}"));
        return Ok(());
    }
    crate::config::edit::replace(run.cluster, new_text)?;
    run.printer.phase("cluster-file", Some(&host.name), &format!("{what} taken out of {file}"));
    Ok(())
}

/// Connected and its facts, or `None` with `--force` when it does not answer (refused otherwise).
fn reach<'c>(run: &Run<'_>, host: &Host, target: Result<Node<'c>, HostError>, opts: Options, p: &Probe) -> Result<Option<(Node<'c>, Facts)>, Error> {
    match target {
        Ok(n) => {
            let facts = engine::preflight(run, std::slice::from_ref(&n), "remove", &|_| p.clone(), &|_, f| refusal(f))?;
            Ok(Some((n, facts.into_iter().next().expect("one host"))))
        }
        Err(e) if opts.force => {
            run.printer.warn(&format!("{} does not answer ({}): only the API side and the cluster file change; its services and files stay", host.name, e.chain()), Some("wipe or reinstall the machine before it joins any cluster again"));
            Ok(None)
        }
        Err(e) => Err(Error::Hosts {
            what: format!("cannot reach {}; nothing was changed", host.name),
            hosts: vec![HostFailure { phase: "connect".into(), ..HostFailure::from(e) }],
            hint: Some("bring the host back, or pass --force to remove it from the API and the cluster file only".into()),
            refused: true,
        }),
    }
}

/// `node remove` on connected hosts: `target` is the host itself (an error when it does not
/// answer), `masters` every master with its connection, the apiserver is asked through the first
/// ready one.
pub fn node_on(run: &Run<'_>, host: &Host, target: Result<Node<'_>, HostError>, masters: Vec<(&Host, Result<Node<'_>, HostError>)>, opts: Options) -> Result<Report, Error> {
    let cluster = run.cluster;
    let mut report = Report { host: host.name.clone(), dry_run: run.dry_run, ..Default::default() };
    // read-only: everything that can refuse, before anything changes
    if !host.has(Role::Node) {
        host_with(cluster, &host.name, Role::Node)?;
    }
    let (new_text, new, removed) = without(cluster, host, &["node"])?;
    let reached = reach(run, host, target, opts, &probe(cluster, &NODE_UNITS, true))?;
    let client = super::api_client(cluster)?;
    let ep = crate::kube::masters::ready_master(cluster, &client, masters, &run.printer)?;
    report.reachable = reached.is_some();

    drain("removing", run, &client, &ep, &host.name, reached.is_some(), &mut report)?;
    if let Some((n, f)) = &reached {
        let plan = host_plan(cluster, &NODE_UNITS, true, f);
        stop(run, n, &plan.stop, &mut report)?;
        clean_cni(run, n, &plan, &mut report)?;
    }
    delete_node(run, &client, &ep, &host.name, &mut report)?;
    record(run, host, &new_text, &new, removed, &mut report)?;
    Ok(report)
}

/// Whether the nodes reach the apiserver through `host`: the cluster's endpoint is its address
/// or name (set so, or no VIP and no LB name: the first master).
pub fn is_endpoint(cluster: &Cluster, host: &Host) -> bool {
    let e = cluster.endpoint_host();
    e == host.address.to_string() || e == host.name
}

/// Why `master remove` of `host` is refused from the cluster file alone (exit 2, nothing
/// changed): not a master, the last master, the last etcd member, or the master the nodes reach
/// the apiserver through.
pub fn master_refusal(cluster: &Cluster, host: &Host) -> Result<(), Error> {
    if !host.has(Role::Master) {
        host_with(cluster, &host.name, Role::Master)?;
    }
    if cluster.hosts_with(Role::Master).count() < 2 {
        return Err(refused(format!("{} is the last master; removing it would leave the cluster without an apiserver; nothing was changed", host.name), "add another master first (`kbin master add HOST`)"));
    }
    if host.has(Role::Etcd) && cluster.hosts_with(Role::Etcd).count() < 2 {
        return Err(refused(format!("{} holds the last etcd member; removing it would destroy the cluster's data; nothing was changed", host.name), "add another etcd member first (`kbin etcd add HOST`)"));
    }
    if is_endpoint(cluster, host) {
        let why = if cluster.apiserver.endpoint.is_some() { "apiserver.endpoint names it" } else { "the cluster has no apiserver.endpoint or VIP, so they use the first master" };
        return Err(refused(
            format!("the nodes reach the apiserver through {} ({why}); nothing was changed", host.name),
            "move them first: `kbin repoint-nodes --vip` (or `--endpoint HOST[:PORT]` of another master or an LB), then run this again",
        ));
    }
    Ok(())
}

/// The hosts `master remove` works with, connected: the master itself, the other masters (the
/// apiserver is asked through the first ready one), the LB hosts, the other etcd members.
pub struct MasterHosts<'c> {
    pub target: Result<Node<'c>, HostError>,
    pub others: Vec<(&'c Host, Result<Node<'c>, HostError>)>,
    pub lbs: Vec<Node<'c>>,
    pub etcd: Vec<Node<'c>>,
}

/// `master remove` on connected hosts.
pub fn master_on(run: &Run<'_>, host: &Host, hosts: MasterHosts<'_>, opts: Options) -> Result<Report, Error> {
    let cluster = run.cluster;
    let mut report = Report { host: host.name.clone(), dry_run: run.dry_run, ..Default::default() };
    master_refusal(cluster, host)?;
    let (node, etcd) = (host.has(Role::Node), host.has(Role::Etcd));
    let mut roles = vec!["master"];
    roles.extend(etcd.then_some("etcd"));
    roles.extend(node.then_some("node"));
    let (new_text, new, removed) = without(cluster, host, &roles)?;
    let units: Vec<&str> = MASTER_UNITS.iter().chain(if node { &NODE_UNITS[..] } else { &[] }).copied().collect();
    let reached = reach(run, host, hosts.target, opts, &probe(cluster, &units, node))?;
    report.reachable = reached.is_some();
    let client = super::api_client(cluster)?;
    let ep = crate::kube::masters::ready_master(cluster, &client, hosts.others, &run.printer)?;
    let etcd_ctx = if etcd { Some(super::etcd::Ctx::new(run.clone())?) } else { None };
    if let Some(ctx) = &etcd_ctx
        && !hosts.etcd.iter().any(|n| super::etcd::member_health(ctx, n) == Ok(true))
    {
        return Err(refused(format!("no other healthy etcd member to remove {}'s member through; nothing was changed", host.name), "run `kbin etcd status`"));
    }

    if node {
        drain("removing", run, &client, &ep, &host.name, reached.is_some(), &mut report)?;
    }
    // the LB hosts stop sending to it before its apiserver stops
    let templates = crate::render::Templates::load(&new)?;
    let lb_ctx = Ctx { run: Run { cluster: &new, ..run.clone() }, templates: &templates, bins: &Bins::default() };
    report.lb = super::lb::update_upstreams(&lb_ctx, &hosts.lbs).map_err(|e| match e {
        Error::Hosts { hosts, refused, .. } => Error::Hosts {
            what: format!("taking {} out of the LB upstreams failed; its services run on{}", host.name, if node { " (its Node stays cordoned)" } else { "" }),
            hosts,
            hint: Some("fix the LB host (see the lines above; its previous nginx.conf is back) and run the command again".into()),
            refused,
        },
        e => e,
    })?;
    let plan = reached.as_ref().map(|(_, f)| host_plan(cluster, &units, node, f)).unwrap_or_default();
    if let Some((n, _)) = &reached {
        let control: Vec<String> = plan.stop.iter().filter(|u| MASTER_UNITS.contains(&u.as_str())).cloned().collect();
        stop(run, n, &control, &mut report)?;
    }
    if let Some(ctx) = &etcd_ctx {
        super::etcd::remove(ctx, host, reached.as_ref().map(|(n, _)| n), &hosts.etcd)?;
        report.etcd_member_removed = true;
    }
    if node {
        if let Some((n, _)) = &reached {
            let workers: Vec<String> = plan.stop.iter().filter(|u| NODE_UNITS.contains(&u.as_str())).cloned().collect();
            stop(run, n, &workers, &mut report)?;
            clean_cni(run, n, &plan, &mut report)?;
        }
        delete_node(run, &client, &ep, &host.name, &mut report)?;
    }
    record(run, host, &new_text, &new, removed, &mut report)?;
    Ok(report)
}

/// `kbin node remove HOST`: connect to it and to the masters, then [`node_on`].
pub fn node(opts: &super::Opts<'_>, cluster: &Cluster, name: &str, o: Options) -> Result<Report, Error> {
    let run = opts.run(cluster);
    let host = host_with(cluster, name, Role::Node)?;
    let c = run.connector(opts.accept_new_host_keys);
    let target = c.connect(&[host]).remove(0).1;
    let masters = c.connect(&super::master::hosts(cluster));
    node_on(&run, host, target, masters, o)
}

/// `kbin master remove HOST`: connect to it, the other masters, the LB hosts (all of them: an LB
/// that cannot be reached would keep sending to the master) and the other etcd members, then
/// [`master_on`].
pub fn master(opts: &super::Opts<'_>, cluster: &Cluster, name: &str, o: Options) -> Result<Report, Error> {
    let run = opts.run(cluster);
    let host = host_with(cluster, name, Role::Master)?;
    master_refusal(cluster, host)?;
    let c = run.connector(opts.accept_new_host_keys);
    let target = c.connect(&[host]).remove(0).1;
    let others: Vec<&Host> = super::master::hosts(cluster).into_iter().filter(|h| h.name != host.name).collect();
    let etcd: Vec<&Host> = if host.has(Role::Etcd) { super::etcd::etcd_hosts(cluster).into_iter().filter(|h| h.name != host.name).collect() } else { Vec::new() };
    let hosts = MasterHosts { target, others: c.connect(&others), lbs: c.connect_all(&super::lb::hosts(cluster))?, etcd: c.reachable(&etcd) };
    master_on(&run, host, hosts, o)
}
