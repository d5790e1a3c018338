//! `kbin master add`, `kbin node add`, `kbin lb deploy`: the Kubernetes parts of the cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use clap::Subcommand;
use kbin::artifacts::Catalog;
use kbin::artifacts::download::{FetchOptions, Fetcher};
use kbin::artifacts::progress::Reporter;
use kbin::config::{Cluster, Host, Role};
use kbin::deploy::{self, Bins, Ctx};
use kbin::host::Node;
use kbin::host::connect::Connector;
use kbin::host::parallel::Cancel;
use kbin::render::{Component, Templates};

use super::Global;
use super::download::NetArgs;

/// Options of every command that deploys.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub ssh: super::SshArgs,
    #[command(flatten)]
    pub net: NetArgs,
    /// Seconds a host may take to become healthy after a start or restart
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub timeout: u64,
    /// Show, per host, what would be written (with diffs) and started; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MasterCommand {
    /// Install kube-apiserver, kube-controller-manager and kube-scheduler on HOST and add it to
    /// the LB upstreams
    ///
    /// HOST is a host name or address from the cluster file, or a new address: it is then added
    /// to the file (role master; name from --name or the host's own hostname), keeping the file's
    /// comments. HOST's own apiserver certificate is issued (no other master is touched); files
    /// are pushed, units started, and kbin waits for /healthz and /readyz through the SSH
    /// connection before the LB hosts get the new upstream (nginx reload, connections kept).
    /// Running it again on an up-to-date master changes nothing.
    Add(MasterAddArgs),
}

#[derive(Debug, clap::Args)]
pub struct MasterAddArgs {
    /// Host name or address
    pub host: String,
    /// Name for a host not yet in the cluster file [default: its hostname]
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub deploy: DeployArgs,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Prepare HOSTs (swap off, kernel modules, sysctls) and install containerd, flanneld, the
    /// kubelet (TLS bootstrap with the bootstrap token) and kube-proxy; wait until each is Ready
    ///
    /// Each HOST is a host name or address from the cluster file with the node role (masters can
    /// be nodes too), or a new address, which is added to the file with the node role. The
    /// bootstrap token Secret and RBAC are applied first (a no-op when present).
    Add(NodeAddArgs),
}

#[derive(Debug, clap::Args)]
pub struct NodeAddArgs {
    /// Host names or addresses [default: every host with the node role]
    pub hosts: Vec<String>,
    /// Name for a single host not yet in the cluster file [default: its hostname]
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub deploy: DeployArgs,
}

#[derive(Debug, Subcommand)]
pub enum LbCommand {
    /// nginx (L4 stream proxy to every master) and keepalived (the VIP) on the LB hosts
    ///
    /// Verifies that exactly one LB host holds the VIP and that a TLS connection to VIP:port
    /// validates against the cluster CA with the VIP as the name.
    Deploy(DeployArgs),
}

pub struct Session<'c> {
    pub cluster: &'c Cluster,
    pub connector: Connector<'c>,
    pub templates: Templates,
}

impl<'c> Session<'c> {
    pub fn new(global: &Global, cluster: &'c Cluster, a: &DeployArgs) -> kbin::Result<Session<'c>> {
        Ok(Session {
            cluster,
            connector: Connector {
                cluster,
                printer: global.printer(),
                concurrency: a.ssh.concurrency.map(usize::from).unwrap_or(cluster.ssh.concurrency),
                cancel: Cancel::on_ctrl_c(),
                accept_new_host_keys: a.ssh.accept_new_host_keys,
            },
            templates: Templates::load(cluster)?,
        })
    }
    pub fn ctx<'s>(&'s self, a: &DeployArgs, bins: &'s Bins) -> Ctx<'s> {
        Ctx {
            cluster: self.cluster,
            printer: self.connector.printer,
            concurrency: self.connector.concurrency,
            cancel: self.connector.cancel.clone(),
            templates: &self.templates,
            bins,
            timeout: Duration::from_secs(a.timeout),
            dry_run: a.dry_run,
        }
    }
    /// Connections to those of `hosts` that answer (the others are reported and skipped).
    pub fn reachable(&self, hosts: &[&'c Host]) -> Vec<Node<'c>> {
        self.connector.connect(hosts).into_iter().filter_map(|(_, r)| r.ok()).collect()
    }
}

pub fn binaries(global: &Global, cluster: &Cluster, net: &NetArgs, parts: &[Component]) -> kbin::Result<Bins> {
    let components: BTreeSet<&str> = Bins::components(cluster, parts);
    if components.is_empty() {
        return Ok(Bins::default());
    }
    let settings = net.settings(cluster)?;
    let fetcher = Fetcher::new(FetchOptions::from_env())?;
    Bins::resolve(Catalog::embedded(), &settings, &fetcher, &Reporter::new(global.quiet), &components)
}

/// Issue whatever the cluster file needs and the pki lacks (a new host's certificates); never
/// touches what exists.
pub fn ensure_pki(global: &Global, cluster: &Cluster, dry_run: bool) -> kbin::Result<()> {
    let p = global.printer();
    if dry_run {
        return Ok(());
    }
    let r = kbin::pki::init(cluster)?;
    if !r.issued.is_empty() {
        p.phase("pki", None, &format!("issued {}", r.issued.join(", ")));
    }
    for s in &r.stale {
        p.warn(&format!("pki/{}: {}", s.file, s.problem), Some(stale_hint(s)));
    }
    Ok(())
}

/// What to do about a pki file that no longer matches the cluster file.
fn stale_hint(s: &kbin::pki::Stale) -> &'static str {
    if s.problem.starts_with("server is") {
        // re-issuing it and pushing it would move the nodes at once, without any check
        "the nodes still use the old address; `kbin repoint-nodes` moves them safely and updates this file"
    } else {
        "`kbin pki renew NAME` re-issues it; then deploy again"
    }
}

/// Resolve `spec` to a host of the cluster file; a new address is added to the file with
/// `role` (name from `name` or the host's hostname). Returns the (possibly reloaded) cluster
/// and the host's name.
pub fn resolve_or_add(global: &Global, cluster: Cluster, spec: &str, name: Option<&str>, role: Role, a: &DeployArgs) -> kbin::Result<(Cluster, String)> {
    if let Some(h) = cluster.host(spec) {
        if !h.has(role) {
            return Err(kbin::Error::Refused {
                what: format!("{} does not have the {} role in {}", h.name, role.as_str(), cluster.file.display()),
                problems: vec![],
                hint: Some(format!("add \"{}\" to the roles of {} in the cluster file and run this again", role.as_str(), h.name)),
            });
        }
        return Ok((cluster.clone(), h.name.clone()));
    }
    let Ok(address) = spec.parse::<std::net::IpAddr>() else {
        return Err(kbin::Error::other(format!("no host {spec:?} in {}", cluster.file.display()), Some("give a host name from the cluster file, or the IP address of a new host")));
    };
    let p = global.printer();
    // reach it first (with the cluster's SSH defaults): an address kbin cannot log in to is not
    // written into the file
    let probe = Host { name: name.unwrap_or(spec).to_string(), address, roles: vec![role], ssh: cluster.ssh.default.clone(), lb_interface: String::new(), lb_priority: 0, labels: vec![] };
    let connector = Connector { cluster: &cluster, printer: p, concurrency: 1, cancel: Cancel::on_ctrl_c(), accept_new_host_keys: a.ssh.accept_new_host_keys };
    let node = connector.connect_all(&[&probe])?.remove(0);
    let name = match name {
        Some(n) => n.to_string(),
        None => node.remote.check(&kbin::host::Cmd::new(["hostname", "-s"]))?.stdout_str().trim().to_lowercase(),
    };
    if cluster.host(&name).is_some() {
        return Err(kbin::Error::other(format!("{spec} is not in {}, but its name {name:?} is taken by another host", cluster.file.display()), Some("pick a name with --name")));
    }
    let text = std::fs::read_to_string(&cluster.file).map_err(|e| kbin::Error::other(format!("cannot read {}: {e}", cluster.file.display()), None))?;
    let new_text = kbin::config::edit::with_host(&cluster.file, &text, &name, spec, &[role.as_str()])?;
    if a.dry_run {
        p.phase("dry-run", None, &format!("would add host {name} ({spec}, role {}) to {}", role.as_str(), cluster.file.display()));
        let c = kbin::config::parse(&cluster.file, &new_text)?;
        return Ok((c, name));
    }
    let c = kbin::config::edit::replace(&cluster, &new_text)?;
    p.phase("config", None, &format!("added host {name} ({spec}, role {}) to {}", role.as_str(), cluster.file.display()));
    Ok((c, name))
}

fn print_json<T: serde::Serialize>(json: bool, v: &T) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
    }
}

pub fn master(global: &Global, cmd: &MasterCommand) -> kbin::Result<()> {
    let MasterCommand::Add(a) = cmd;
    let (cluster, name) = resolve_or_add(global, global.cluster()?, &a.host, a.name.as_deref(), Role::Master, &a.deploy)?;
    ensure_pki(global, &cluster, a.deploy.dry_run)?;
    let s = Session::new(global, &cluster, &a.deploy)?;
    let host = cluster.host(&name).expect("resolved");
    let target = s.connector.connect_all(&[host])?;
    let lbs = s.connector.connect_all(&deploy::lb::hosts(&cluster))?;
    let bins = binaries(global, &cluster, &a.deploy.net, &[Component::Master])?;
    let ctx = s.ctx(&a.deploy, &bins);
    let report = deploy::master::deploy(&ctx, &target, &lbs)?;
    print_json(a.deploy.json, &report);
    Ok(())
}

pub fn node(global: &Global, cmd: &NodeCommand) -> kbin::Result<()> {
    let NodeCommand::Add(a) = cmd;
    let mut cluster = global.cluster()?;
    let mut names = Vec::new();
    if a.hosts.is_empty() {
        names = deploy::node::hosts(&cluster).iter().map(|h| h.name.clone()).collect();
    }
    for spec in &a.hosts {
        let (c, n) = resolve_or_add(global, cluster, spec, a.name.as_deref().filter(|_| a.hosts.len() == 1), Role::Node, &a.deploy)?;
        cluster = c;
        names.push(n);
    }
    ensure_pki(global, &cluster, a.deploy.dry_run)?;
    let s = Session::new(global, &cluster, &a.deploy)?;
    let hosts: Vec<&Host> = names.iter().map(|n| cluster.host(n).expect("resolved")).collect();
    let nodes = s.connector.connect_all(&hosts)?;
    let masters = s.reachable(&deploy::master::hosts(&cluster));
    let bins = binaries(global, &cluster, &a.deploy.net, &[Component::Node])?;
    let ctx = s.ctx(&a.deploy, &bins);
    super::manifests::apply_through(&ctx, &masters)?;
    let report = deploy::node::deploy(&ctx, &nodes, &masters)?;
    print_json(a.deploy.json, &report);
    Ok(())
}

pub fn lb(global: &Global, cmd: &LbCommand) -> kbin::Result<()> {
    let LbCommand::Deploy(a) = cmd;
    let cluster = global.cluster()?;
    let s = Session::new(global, &cluster, a)?;
    let lbs = s.connector.connect_all(&deploy::lb::hosts(&cluster))?;
    if lbs.is_empty() {
        return Err(kbin::Error::Refused { what: format!("no host has the lb role in {}", cluster.file.display()), problems: vec![], hint: Some("add two hosts with roles = [\"lb\"] and set apiserver.vip".into()) });
    }
    let bins = Bins::default();
    let ctx = s.ctx(a, &bins);
    let report = deploy::lb::deploy(&ctx, &lbs)?;
    print_json(a.json, &report);
    Ok(())
}

/// Build or update the whole cluster from the cluster file
///
/// Stages, each skipping what is already done: pki (issue what is missing), download (verified
/// artifacts), etcd, masters, LB pair (when the file has lb hosts), manifests (bootstrap token
/// Secret and RBAC, by server-side apply), nodes. Every host must be reachable. Safe to re-run:
/// an up-to-date cluster is sent nothing and nothing restarts. --dry-run shows the plan.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub deploy: DeployArgs,
    /// Seconds to wait for etcd members to become healthy
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub etcd_timeout: u64,
}

pub fn up(global: &Global, a: &UpArgs) -> kbin::Result<()> {
    let cluster = global.cluster()?;
    let p = global.printer();
    let mut report = deploy::up::Report::default();
    let t0 = std::time::Instant::now();
    if a.deploy.dry_run && !cluster.pki_dir().join("ca.crt").exists() {
        p.phase("up", None, &format!("pki: would create the CAs and every certificate in {}; run without --dry-run (or `kbin pki init`) to plan the rest", cluster.pki_dir().display()));
        return Ok(());
    }
    let summary = if a.deploy.dry_run {
        "not checked in a dry run".to_string()
    } else {
        let r = kbin::pki::init(&cluster)?;
        for s in &r.stale {
            p.warn(&format!("pki/{}: {}", s.file, s.problem), Some(stale_hint(s)));
        }
        if r.issued.is_empty() { format!("{} kept, nothing to issue", r.kept) } else { format!("issued {}", r.issued.join(", ")) }
    };
    p.phase("up", None, &format!("pki: {summary} ({} ms)", t0.elapsed().as_millis()));
    report.stages.push(deploy::up::Stage { name: "pki".into(), millis: t0.elapsed().as_millis(), summary });

    let t0 = std::time::Instant::now();
    let bins = binaries(global, &cluster, &a.deploy.net, &[Component::Etcd, Component::Master, Component::Node])?;
    let summary = format!("{} components verified", Bins::components(&cluster, &[Component::Etcd, Component::Master, Component::Node]).len());
    p.phase("up", None, &format!("download: {summary} ({} ms)", t0.elapsed().as_millis()));
    report.stages.push(deploy::up::Stage { name: "download".into(), millis: t0.elapsed().as_millis(), summary });

    let s = Session::new(global, &cluster, &a.deploy)?;
    let all: Vec<&Host> = cluster.hosts.iter().collect();
    let nodes = s.connector.connect_all(&all)?;
    let ctx = s.ctx(&a.deploy, &bins);
    let etcd_ctx = kbin::etcd::ops::Ctx {
        cluster: &cluster,
        printer: p,
        concurrency: ctx.concurrency,
        cancel: ctx.cancel.clone(),
        client: kbin::etcd::api::Client::new(&kbin::etcd::ops::identity(&cluster)?).map_err(|e| kbin::Error::other(format!("etcd client identity: {e}"), Some("run `kbin pki check`")))?,
        health_timeout: Duration::from_secs(a.etcd_timeout),
    };
    deploy::up::run(&ctx, &etcd_ctx, &nodes, &mut report)?;
    let total: u128 = report.stages.iter().map(|s| s.millis).sum();
    if a.deploy.dry_run {
        p.phase("up", None, &format!("planned in {total} ms: {} services would start, {} would restart; nothing was changed", report.started.len(), report.restarted.len()));
    } else {
        p.phase("up", None, &format!("done in {total} ms: {} bytes sent, {} started, {} restarted", report.bytes_sent, report.started.len(), report.restarted.len()));
    }
    print_json(a.deploy.json, &report);
    Ok(())
}

/// Per host and component: services, versions, certificate days left, etcd health, the nodes as
/// the apiserver sees them, and which LB holds the VIP
///
/// Unreachable hosts are reported, not fatal. Exits 1 when something is not as it should be
/// (a service not active, an unhealthy member, a node not Ready, no single VIP holder).
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub ssh: super::SshArgs,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
struct StatusReport {
    cluster: String,
    endpoint: String,
    hosts: Vec<deploy::status::HostStatus>,
    etcd: Vec<kbin::etcd::ops::MemberReport>,
    nodes: Vec<kbin::kube::nodes::NodeStatus>,
    /// The apiserver that answered the node list.
    apiserver: Option<String>,
    vip: VipStatus,
    problems: Vec<String>,
}

#[derive(Debug, Default, serde::Serialize)]
struct VipStatus {
    address: Option<String>,
    holders: Vec<String>,
    /// `/healthz` through the VIP, the certificate verified for the VIP's name.
    healthz: Option<u16>,
    error: Option<String>,
}

pub fn status(global: &Global, a: &StatusArgs) -> kbin::Result<()> {
    let cluster = global.cluster()?;
    let p = global.printer();
    let connector = Connector { cluster: &cluster, printer: p, concurrency: a.ssh.concurrency.map(usize::from).unwrap_or(cluster.ssh.concurrency), cancel: Cancel::on_ctrl_c(), accept_new_host_keys: a.ssh.accept_new_host_keys };
    let all: Vec<&Host> = cluster.hosts.iter().collect();
    let conns: Vec<(&Host, Result<Node<'_>, String>)> = connector.connect(&all).into_iter().map(|(h, r)| (h, r.map_err(|e| e.chain()))).collect();
    let client = deploy::api_client(&cluster)?;
    let hosts = deploy::status::hosts(&cluster, &conns, &client, connector.concurrency, &connector.cancel);
    let etcd_ctx = kbin::etcd::ops::Ctx {
        cluster: &cluster,
        printer: p,
        concurrency: connector.concurrency,
        cancel: connector.cancel.clone(),
        client: kbin::etcd::api::Client::new(&kbin::etcd::ops::identity(&cluster)?).map_err(|e| kbin::Error::other(format!("etcd client identity: {e}"), Some("run `kbin pki check`")))?,
        health_timeout: Duration::from_secs(5),
    };
    let etcd_conns = conns.iter().filter(|(h, _)| h.has(Role::Etcd)).map(|(h, r)| (*h, r.clone())).collect();
    let etcd = kbin::etcd::ops::status(&etcd_ctx, etcd_conns);
    // nodes, through the first master whose apiserver is ready
    let mut nodes = Vec::new();
    let mut apiserver = None;
    let mut problems = Vec::new();
    let ready_master = conns.iter().filter(|(h, _)| h.has(Role::Master)).find_map(|(h, r)| r.as_ref().ok().filter(|_| hosts.iter().any(|s| s.name == h.name && s.apiserver_ready == Some(true))));
    match ready_master {
        Some(m) => match client.nodes(&kbin::kube::masters::endpoint(&cluster, m)) {
            Ok(n) => {
                nodes = n;
                apiserver = Some(m.host.name.clone());
            }
            Err(e) => problems.push(format!("nodes: {}", kbin::kube::chain(&e))),
        },
        None => problems.push("no master's apiserver is ready".into()),
    }
    let mut vip = VipStatus { address: cluster.apiserver.vip.map(|v| v.to_string()), ..Default::default() };
    vip.holders = hosts.iter().filter(|h| h.holds_vip == Some(true)).map(|h| h.name.clone()).collect();
    if let Some(holder) = vip.holders.first().and_then(|name| conns.iter().find(|(h, _)| &h.name == name)).and_then(|(_, r)| r.as_ref().ok()) {
        match deploy::lb::vip_tls_check(&client, &cluster, holder) {
            Ok(st) => vip.healthz = Some(st),
            Err(e) => vip.error = Some(e),
        }
    }
    // what is not as it should be
    for h in &hosts {
        if let Some(e) = &h.error {
            problems.push(format!("{}: unreachable: {e}", h.name));
        }
        for (u, s) in &h.units {
            if s != "active" {
                problems.push(format!("{}: {u} is {s}", h.name));
            }
        }
        if h.apiserver_ready == Some(false) {
            problems.push(format!("{}: kube-apiserver is not ready", h.name));
        }
    }
    for m in etcd.iter().filter(|m| !m.healthy) {
        problems.push(format!("{}: etcd member not healthy{}", m.name, m.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()));
    }
    for h in cluster.hosts_with(Role::Node) {
        match nodes.iter().find(|n| n.name == h.name) {
            Some(n) if n.ready == Some(true) => {}
            Some(n) => problems.push(format!("{}: node not Ready ({})", h.name, n.ready_reason.clone().unwrap_or_default())),
            None if apiserver.is_some() => problems.push(format!("{}: not registered as a node", h.name)),
            None => {}
        }
    }
    if cluster.hosts_with(Role::Lb).next().is_some() {
        if vip.holders.len() != 1 {
            problems.push(format!("{} LB hosts hold the VIP ({})", vip.holders.len(), vip.holders.join(", ")));
        } else if vip.healthz != Some(200) {
            problems.push(format!("the VIP does not answer /healthz with a valid certificate: {}", vip.error.clone().unwrap_or_else(|| format!("HTTP {}", vip.healthz.unwrap_or(0)))));
        }
    }
    let report = StatusReport { cluster: cluster.name.clone(), endpoint: cluster.endpoint_url(), hosts, etcd, nodes, apiserver, vip, problems };
    if a.json {
        print_json(true, &report);
    } else {
        print_status(&report);
    }
    if report.problems.is_empty() {
        p.phase("status", None, "everything is as it should be");
        return Ok(());
    }
    Err(kbin::Error::Failed { what: format!("{} problems", report.problems.len()), problems: report.problems.clone(), hint: Some("`kbin up` starts stopped services and repairs changed files; `journalctl -u UNIT` on the host says why a service stopped".into()) })
}

fn print_status(r: &StatusReport) {
    println!("cluster {}  endpoint {}", r.cluster, r.endpoint);
    println!();
    println!("{:<10} {:<16} {:<24} {:<9} {}", "HOST", "ADDRESS", "ROLES", "CERT DAYS", "SERVICES");
    for h in &r.hosts {
        let units: Vec<String> = h.units.iter().map(|(u, s)| if s == "active" { u.clone() } else { format!("{u}({s})") }).collect();
        let days = h.cert_days_left.values().min().map(|d| d.to_string()).unwrap_or_else(|| "-".into());
        let mut svc = if h.reachable { units.join(" ") } else { "unreachable".into() };
        if h.holds_vip == Some(true) {
            svc.push_str("  [VIP]");
        }
        println!("{:<10} {:<16} {:<24} {:<9} {}", h.name, h.address, h.roles.join(","), days, svc);
    }
    println!();
    println!("{:<10} {:<8} {:<10} {:<20} {:<16} {}", "NODE", "READY", "VERSION", "POD CIDR", "INTERNAL IP", "LAST HEARTBEAT");
    for n in &r.nodes {
        let ready = match n.ready {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        };
        let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        println!("{:<10} {:<8} {:<10} {:<20} {:<16} {}", n.name, ready, o(&n.kubelet_version), o(&n.pod_cidr), o(&n.internal_ip), o(&n.last_heartbeat));
    }
    println!();
    let healthy = r.etcd.iter().filter(|m| m.healthy).count();
    println!("etcd: {healthy}/{} members healthy, leader {}", r.etcd.len(), r.etcd.iter().find(|m| m.leader).map(|m| m.name.as_str()).unwrap_or("-"));
    if let Some(v) = &r.vip.address {
        println!("VIP {v}: held by {}, /healthz {}", if r.vip.holders.is_empty() { "nobody".into() } else { r.vip.holders.join(", ") }, r.vip.healthz.map(|s| s.to_string()).unwrap_or_else(|| "-".into()));
    }
}

/// Move every node's kubelet, kube-proxy and flanneld to the VIP (or another endpoint), safely
///
/// Preflight first, on every node and master, refusing the run (nothing changed) if anything is
/// wrong: the target must answer TLS from every node with a certificate valid for its name, every
/// master's apiserver certificate must carry that name, every node must be Ready, and each node's
/// kubeconfigs (<k8s_cfg>/*.kubeconfig) must point at the current endpoint or a master (or already
/// at the target). Then, BATCH nodes at a time: only the `server:` of those clusters changes (the
/// files are parsed, written atomically, backed up), kubelet then kube-proxy restart, and kbin
/// waits for Ready with a heartbeat newer than the restart. A node that does not come back gets
/// its files back and must be Ready again on the old endpoint; the rollout stops there. Re-running
/// continues where it stopped; after a complete rollout the cluster file's apiserver.endpoint and
/// the local kubeconfigs (pki/kubeconfigs/) point at the target.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["vip", "endpoint"])))]
pub struct RepointArgs {
    /// Move the nodes to apiserver.vip (and apiserver.port) from the cluster file
    #[arg(long)]
    pub vip: bool,
    /// Move the nodes to HOST[:PORT] (an LB's DNS name or another address)
    #[arg(long, value_name = "HOST[:PORT]")]
    pub endpoint: Option<String>,
    /// Only these nodes (names or addresses, comma-separated)
    #[arg(long, value_name = "NODES", value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// How many nodes change at once
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: u16,
    #[command(flatten)]
    pub ssh: super::SshArgs,
    /// Seconds a node may take to be Ready again after its restart
    #[arg(long, value_name = "SECS", default_value_t = 90)]
    pub timeout: u64,
    /// Show the preflight results and, per node, which servers would change; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn repoint(global: &Global, a: &RepointArgs) -> kbin::Result<()> {
    let cluster = global.cluster()?;
    let p = global.printer();
    let target = match (&a.endpoint, a.vip) {
        (Some(e), _) => deploy::repoint::Target::parse(e, cluster.apiserver.port).map_err(|m| kbin::Error::other(format!("--endpoint: {m}"), Some("write HOST or HOST:PORT, e.g. --endpoint k8s-api.example.com:6443")))?,
        (None, _) => match cluster.apiserver.vip {
            Some(v) => deploy::repoint::Target { host: v.to_string(), port: cluster.apiserver.port },
            None => return Err(kbin::Error::Refused { what: format!("--vip: {} sets no apiserver.vip", cluster.file.display()), problems: vec![], hint: Some("set apiserver.vip (and deploy the LB pair with `kbin lb deploy`), or give --endpoint HOST[:PORT]".into()) }),
        },
    };
    let mut hosts: Vec<&Host> = Vec::new();
    for spec in &a.nodes {
        match cluster.host(spec) {
            Some(h) if h.has(Role::Node) => hosts.push(h),
            Some(h) => return Err(kbin::Error::other(format!("--nodes: {} does not have the node role", h.name), Some("list hosts with the node role"))),
            None => return Err(kbin::Error::other(format!("--nodes: no host {spec:?} in {}", cluster.file.display()), Some("use host names or addresses from the cluster file"))),
        }
    }
    if a.nodes.is_empty() {
        hosts = deploy::node::hosts(&cluster);
    }
    let connector = Connector { cluster: &cluster, printer: p, concurrency: a.ssh.concurrency.map(usize::from).unwrap_or(cluster.ssh.concurrency), cancel: Cancel::on_ctrl_c(), accept_new_host_keys: a.ssh.accept_new_host_keys };
    let nodes = connector.connect_all(&hosts)?;
    let masters = connector.connect_all(&deploy::master::hosts(&cluster))?;
    let templates = Templates::load(&cluster)?;
    let bins = Bins::default();
    let ctx = Ctx { cluster: &cluster, printer: p, concurrency: connector.concurrency, cancel: connector.cancel.clone(), templates: &templates, bins: &bins, timeout: Duration::from_secs(a.timeout), dry_run: a.dry_run };
    let mut report = deploy::repoint::run(&ctx, &target, &nodes, &masters, usize::from(a.batch))?;
    if !a.dry_run {
        p.phase("repoint", None, &format!("{} nodes moved to {}, {} were there already", report.moved.len(), target.url(), report.already.len()));
        if a.nodes.is_empty() {
            for c in deploy::repoint::record(&cluster, &target)? {
                p.phase("repoint", None, &format!("updated {c}"));
            }
            report.recorded = true;
        } else {
            p.phase("repoint", None, "only some nodes were asked for: the cluster file's endpoint and the local kubeconfigs stay as they are");
        }
    }
    print_json(a.json, &report);
    Ok(())
}
