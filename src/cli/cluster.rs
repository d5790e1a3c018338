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
        p.warn(&format!("pki/{}: {}", s.file, s.problem), Some("`kbin pki renew` re-issues it; then deploy again"));
    }
    Ok(())
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
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            // ask the host itself, with the cluster's SSH defaults
            let probe = Host { name: spec.to_string(), address, roles: vec![role], ssh: cluster.ssh.default.clone(), lb_interface: String::new(), lb_priority: 0, labels: vec![] };
            let connector = Connector { cluster: &cluster, printer: p, concurrency: 1, cancel: Cancel::on_ctrl_c(), accept_new_host_keys: a.ssh.accept_new_host_keys };
            let node = connector.connect_all(&[&probe])?.remove(0);
            let out = node.remote.check(&kbin::host::Cmd::new(["hostname", "-s"]))?;
            out.stdout_str().trim().to_lowercase()
        }
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
