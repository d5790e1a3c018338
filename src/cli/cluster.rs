//! `kbin master add|remove`, `node add|remove`, `lb deploy`, `up`, `status`, `repoint-nodes`: arguments, one
//! library call each (`kbin::deploy`), and the output.

use std::collections::BTreeSet;
use std::time::Duration;

use clap::Subcommand;
use kbin::artifacts::Catalog;
use kbin::artifacts::download::{FetchOptions, Fetcher};
use kbin::artifacts::progress::Reporter;
use kbin::config::Cluster;
use kbin::deploy;
use kbin::engine::Bins;
use kbin::render::Component;

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
    /// Send every file straight from here to each host (by default, when the link from here is
    /// slower than 200 Mbit/s, each large file goes into the cluster once, compressed, and the
    /// hosts pass it on to each other)
    #[arg(long, conflicts_with = "relay")]
    pub direct: bool,
    /// Relay large files between the hosts whatever the link from here
    #[arg(long)]
    pub relay: bool,
}

impl DeployArgs {
    pub fn relay_mode(&self) -> kbin::engine::relay::Mode {
        super::relay_mode(self.direct, self.relay)
    }
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
    /// Take master HOST out of the cluster: LB upstreams first, then its control plane, its etcd
    /// member and its Node
    ///
    /// Refuses (nothing changed) the last master, and a master the nodes reach the apiserver
    /// through (run `kbin repoint-nodes` first). If HOST is also a node it is drained first
    /// (PodDisruptionBudgets respected). The LB hosts get upstreams without it (nginx -t, a
    /// reload), then kube-apiserver, kube-controller-manager and kube-scheduler are stopped and
    /// disabled, its etcd member is removed (if it has the etcd role), its node services stop and
    /// its Node is deleted, and the cluster file loses the host (comments kept).
    Remove(RemoveArgs),
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
    /// Take node HOST out of the cluster: cordon and drain it, stop its services, clean flannel's
    /// and CNI's state, delete its Node, take it out of the cluster file
    ///
    /// Every pod but DaemonSet and mirror pods is evicted through the API (policy/v1 Eviction, so
    /// PodDisruptionBudgets are respected; a refused eviction is retried until --timeout) and
    /// kbin waits until they are gone. Then kubelet, kube-proxy, flanneld and containerd are
    /// stopped and disabled, the flannel.1 and cni0 interfaces, /run/flannel, /var/lib/cni and
    /// /etc/cni/net.d/10-flannel.conflist are deleted, the Node object is deleted, and the host
    /// leaves the cluster file (a host with other roles only loses the node role). Binaries,
    /// certificates and kubeconfigs stay on the host.
    Remove(RemoveArgs),
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// Host name or address from the cluster file
    pub host: String,
    /// Go on when the host does not answer over SSH: only the API side and the cluster file change
    #[arg(long)]
    pub force: bool,
    /// Seconds the drain (and every other wait) may take
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
    /// Show the plan (pods that would be evicted, services that would stop, files that would go);
    /// change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub ssh: super::SshArgs,
}

/// Run a remove command and print its report.
fn remove_cmd(global: &Global, a: &RemoveArgs, f: fn(&deploy::Opts<'_>, &Cluster, &str, deploy::remove::Options) -> kbin::Result<deploy::remove::Report>) -> kbin::Result<()> {
    let o = opts(global, &a.ssh, a.timeout, a.dry_run, &|_, _| Ok(Bins::default()));
    let result = global.cluster().and_then(|c| f(&o, &c, &a.host, deploy::remove::Options { force: a.force }));
    if let Ok(r) = &result {
        let what = if r.dry_run { "planned; nothing was changed" } else { "removed" };
        global.printer().phase("remove", Some(&r.host), what);
    }
    super::emit(a.json, result)
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

/// The verified release binaries of `parts` (downloaded once, then read from the cache).
pub fn binaries(global: &Global, cluster: &Cluster, net: &NetArgs, parts: &[Component]) -> kbin::Result<Bins> {
    let components: BTreeSet<&str> = Bins::components(cluster, parts);
    if components.is_empty() {
        return Ok(Bins::default());
    }
    let settings = net.settings(cluster)?;
    let fetcher = Fetcher::new(FetchOptions::from_env())?;
    let reporter = Reporter::new(global.quiet);
    let mut bins = Bins::resolve(Catalog::embedded(), &settings, &fetcher, &reporter, &components)?;
    bins.resolve_images(cluster, &settings, &fetcher, &reporter, parts)?;
    Ok(bins)
}

/// How a deploy command runs, and where its binaries come from.
pub fn opts<'a>(global: &'a Global, ssh: &super::SshArgs, timeout: u64, dry_run: bool, fetch: &'a dyn Fn(&Cluster, &[Component]) -> kbin::Result<Bins>) -> deploy::Opts<'a> {
    deploy::Opts {
        printer: global.printer(),
        concurrency: ssh.concurrency.map(usize::from),
        cancel: kbin::host::parallel::Cancel::on_ctrl_c(),
        timeout: Duration::from_secs(timeout),
        dry_run,
        accept_new_host_keys: ssh.accept_new_host_keys,
        fetch,
        relay: Default::default(),
    }
}

/// Run a deploy command with the release binaries it fetches, and print its report.
pub fn deploy_cmd<T: serde::Serialize>(global: &Global, d: &DeployArgs, f: impl FnOnce(&deploy::Opts<'_>, Cluster) -> kbin::Result<T>) -> kbin::Result<()> {
    let fetch = |c: &Cluster, parts: &[Component]| binaries(global, c, &d.net, parts);
    let o = opts(global, &d.ssh, d.timeout, d.dry_run, &fetch);
    super::emit(d.json, f(&o, global.cluster()?))
}

pub fn master(global: &Global, cmd: &MasterCommand) -> kbin::Result<()> {
    match cmd {
        MasterCommand::Add(a) => deploy_cmd(global, &a.deploy, |o, c| deploy::master::add(o, c, &a.host, a.name.as_deref())),
        MasterCommand::Remove(a) => remove_cmd(global, a, deploy::remove::master),
    }
}

pub fn node(global: &Global, cmd: &NodeCommand) -> kbin::Result<()> {
    match cmd {
        NodeCommand::Add(a) => deploy_cmd(global, &a.deploy, |o, c| deploy::node::add(o, c, &a.hosts, a.name.as_deref())),
        NodeCommand::Remove(a) => remove_cmd(global, a, deploy::remove::node),
    }
}

pub fn lb(global: &Global, cmd: &LbCommand) -> kbin::Result<()> {
    let LbCommand::Deploy(a) = cmd;
    deploy_cmd(global, a, |o, c| deploy::lb::deploy_all(o, &c))
}

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
    let fetch = |c: &Cluster, parts: &[Component]| binaries(global, c, &a.deploy.net, parts);
    let mut o = opts(global, &a.deploy.ssh, a.deploy.timeout, a.deploy.dry_run, &fetch);
    o.relay = a.deploy.relay_mode();
    let mut report = deploy::up::Report::default();
    let result = deploy::up::up(&o, &cluster, Duration::from_secs(a.etcd_timeout), &mut report);
    if result.is_ok() && !report.stages.is_empty() {
        global.printer().phase("up", None, &report.summary());
    }
    super::emit_with(a.deploy.json, &report, result)
}

/// Move the cluster to the Kubernetes release of the cluster file (kubernetes_version), or back
///
/// Refused (exit 2, nothing changed) unless every host answers, etcd is healthy, every node is
/// Ready and the version skew rules hold (the control plane one minor release at a time, no
/// kubelet newer than the apiservers). Then an etcd snapshot (backups/ next to the cluster file),
/// etcd members one at a time if their release changes too, masters one at a time, then the
/// nodes in batches: cordoned, drained (PodDisruptionBudgets respected), switched, restarted,
/// verified Ready with the new version, uncordoned. Releases sit side by side on the hosts
/// (layout.k8s_releases) and are switched by a symlink swap: a host that fails verification is
/// switched back at once and the upgrade stops. --rollback switches every host back to the
/// release the last upgrade came from (nodes first) and sets kubernetes_version back.
#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub deploy: DeployArgs,
    /// Switch every host back to the release the last upgrade came from
    #[arg(long)]
    pub rollback: bool,
    /// Nodes drained and switched at once
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: u16,
}

pub fn upgrade(global: &Global, a: &UpgradeArgs) -> kbin::Result<()> {
    let cluster = global.cluster()?;
    let fetch = |c: &Cluster, parts: &[Component]| binaries(global, c, &a.deploy.net, parts);
    let mut o = opts(global, &a.deploy.ssh, a.deploy.timeout, a.deploy.dry_run, &fetch);
    o.relay = a.deploy.relay_mode();
    let mut report = deploy::upgrade::Report::default();
    let result = deploy::upgrade::upgrade(&o, &cluster, deploy::upgrade::Options { rollback: a.rollback, batch: usize::from(a.batch) }, &mut report);
    if result.is_ok() {
        global.printer().phase("upgrade", None, &report.summary());
    }
    super::emit_with(a.deploy.json, &report, result)
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

pub fn status(global: &Global, a: &StatusArgs) -> kbin::Result<()> {
    let cluster = global.cluster()?;
    let run = super::run(global, &cluster, &a.ssh, Duration::from_secs(5), false);
    let report = deploy::status::report(&run, a.ssh.accept_new_host_keys)?;
    if a.json {
        super::print_json(&report);
    } else {
        print_status(&report);
    }
    if report.problems.is_empty() {
        run.printer.phase("status", None, "everything is as it should be");
        return Ok(());
    }
    Err(kbin::Error::Failed { what: format!("{} problems", report.problems.len()), problems: report.problems.clone(), hint: Some("`kbin up` starts stopped services and repairs changed files; `journalctl -u UNIT` on the host says why a service stopped".into()) })
}

fn print_status(r: &deploy::status::StatusReport) {
    println!("cluster {}  endpoint {}", r.cluster, r.endpoint);
    println!();
    println!("{:<10} {:<16} {:<24} {:<9} {:<7} SERVICES", "HOST", "ADDRESS", "ROLES", "CERT DAYS", "CGROUP");
    for h in &r.hosts {
        let units: Vec<String> = h.units.iter().map(|(u, s)| if s == "active" { u.clone() } else { format!("{u}({s})") }).collect();
        let days = h.cert_days_left.values().min().map(|d| d.to_string()).unwrap_or_else(|| "-".into());
        let mut svc = if h.reachable { units.join(" ") } else { "unreachable".into() };
        if h.holds_vip == Some(true) {
            svc.push_str("  [VIP]");
        }
        let cgroup = h.cgroup.map(|c| c.as_str()).unwrap_or("-");
        println!("{:<10} {:<16} {:<24} {:<9} {:<7} {}", h.name, h.address, h.roles.join(","), days, cgroup, svc);
    }
    println!();
    println!("{:<10} {:<8} {:<10} {:<20} {:<16} LAST HEARTBEAT", "NODE", "READY", "VERSION", "POD CIDR", "INTERNAL IP");
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
    for a in &r.addons {
        let api = match a.api_available {
            Some(true) => ", API Available",
            Some(false) => ", API not Available",
            None => "",
        };
        let on = if a.nodes.is_empty() { String::new() } else { format!(" on {}", a.nodes.join(", ")) };
        println!("{}: {}/{} ready{on}{api}", a.name, a.ready, a.replicas);
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
    let o = opts(global, &a.ssh, a.timeout, a.dry_run, &|_, _| Ok(Bins::default()));
    super::emit(a.json, deploy::repoint::repoint_nodes(&o, &cluster, a.endpoint.as_deref(), &a.nodes, usize::from(a.batch)))
}
