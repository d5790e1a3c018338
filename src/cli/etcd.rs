//! `kbin etcd ...`: deploy, status, add, remove, backup.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use kbin::config::{Cluster, Host, Role};
use kbin::engine::Bins;
use kbin::etcd::ops::{self as etcd, Ctx, MemberReport};
use kbin::render::{Component, Templates};

use super::Global;
use super::download::NetArgs;

#[derive(Debug, Subcommand)]
pub enum EtcdCommand {
    /// Install and start etcd on every etcd host, or bring it up to date
    ///
    /// Read-only preflight first on every host (reachable, architecture, ports 2379/2380, no data
    /// of another cluster); then binaries (verified download), certificates, config and unit are
    /// pushed in parallel, unchanged files are not sent, members start, and kbin waits until every
    /// member is healthy over mutual TLS (checked through the SSH connection). On a running
    /// cluster, only members whose files changed restart, one at a time.
    Deploy(DeployArgs),
    /// Health, leader, DB size, revision, version and certificate expiry of every member
    Status(StatusArgs),
    /// Add HOST (an etcd host of the cluster file) to the running cluster
    Add(AddArgs),
    /// Remove HOST's member from the cluster, then stop etcd and clean up the host
    Remove(RemoveArgs),
    /// Take a snapshot on a healthy member, bring it here and verify it
    Backup(BackupArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConnArgs {
    #[command(flatten)]
    pub ssh: super::SshArgs,
    /// Seconds to wait for members to become healthy
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub health_timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub net: NetArgs,
    /// Show, per host, what would be written (with diffs) and restarted; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The host (name or address; it must have the etcd role in the cluster file)
    pub host: String,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The host (name or address)
    pub host: String,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Say what would be done; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the snapshot [default: backups/etcd-<cluster>-<UTC time>.db next to the cluster file]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub fn exec(global: &Global, cmd: &EtcdCommand) -> kbin::Result<()> {
    let cluster = global.cluster()?;
    match cmd {
        EtcdCommand::Deploy(a) => deploy(global, &cluster, a),
        EtcdCommand::Status(a) => status(global, &cluster, a),
        EtcdCommand::Add(a) => add(global, &cluster, a),
        EtcdCommand::Remove(a) => remove(global, &cluster, a),
        EtcdCommand::Backup(a) => backup(global, &cluster, a),
    }
}

fn ctx<'c>(global: &Global, cluster: &'c Cluster, conn: &ConnArgs, dry_run: bool) -> kbin::Result<Ctx<'c>> {
    Ctx::new(super::run(global, cluster, &conn.ssh, Duration::from_secs(conn.health_timeout), dry_run))
}

/// etcd and etcdctl from the verified artifact (downloaded and extracted once, then reused).
fn binaries(global: &Global, cluster: &Cluster, net: &NetArgs) -> kbin::Result<Bins> {
    super::cluster::binaries(global, cluster, net, &[Component::Etcd])
}

fn print_members(members: &[MemberReport]) {
    println!("{:<12} {:<16} {:<8} {:<7} {:<17} {:<8} {:>10} {:>9} {:>9}", "MEMBER", "ADDRESS", "HEALTHY", "LEADER", "ID", "VERSION", "DB SIZE", "REVISION", "CERT DAYS");
    for m in members {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        println!(
            "{:<12} {:<16} {:<8} {:<7} {:<17} {:<8} {:>10} {:>9} {:>9}",
            m.name,
            m.address,
            if !m.reachable { "unreach" } else if m.healthy { "yes" } else { "no" },
            if m.leader { "*" } else { "" },
            opt(&m.id),
            opt(&m.version),
            m.db_size.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            m.revision.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            m.cert_days_left.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
        );
    }
}

fn deploy(global: &Global, cluster: &Cluster, a: &DeployArgs) -> kbin::Result<()> {
    let ctx = ctx(global, cluster, &a.conn, a.dry_run)?;
    let hosts = etcd::etcd_hosts(cluster);
    let templates = Templates::load(cluster)?;
    let nodes = ctx.connector(a.conn.ssh.accept_new_host_keys).connect_all(&hosts)?;
    let bins = binaries(global, cluster, &a.net)?;
    let report = match etcd::deploy(&ctx, &nodes, &templates, &bins) {
        Ok(r) => r,
        Err(e) => return super::emit::<()>(a.json, Err(e)),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("serializable"));
    } else if !a.dry_run {
        print_members(&report.members);
    }
    if !a.dry_run {
        let healthy = report.members.iter().filter(|m| m.healthy).count();
        let leader = report.members.iter().find(|m| m.leader).map(|m| m.name.as_str()).unwrap_or("?");
        let version = report.members.first().and_then(|m| m.version.clone()).unwrap_or_default();
        ctx.printer.phase(
            "etcd",
            None,
            &format!(
                "{healthy}/{} members healthy, leader {leader}, version {version}; {} bytes of files sent, started {}, restarted {}",
                report.members.len(),
                report.bytes_sent,
                report.started.len(),
                report.restarted.len()
            ),
        );
    }
    Ok(())
}

fn status(global: &Global, cluster: &Cluster, a: &StatusArgs) -> kbin::Result<()> {
    let ctx = ctx(global, cluster, &a.conn, false)?;
    let hosts = etcd::etcd_hosts(cluster);
    let conns = ctx.connector(a.conn.ssh.accept_new_host_keys).connect(&hosts).into_iter().map(|(h, r)| (h, r.map_err(|e| e.chain()))).collect();
    let members = etcd::status(&ctx, conns);
    let healthy = members.iter().filter(|m| m.healthy).count();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "healthy": healthy, "members": members })).expect("serializable"));
    } else {
        print_members(&members);
    }
    ctx.printer.phase("etcd", None, &format!("{healthy}/{} members healthy", members.len()));
    if healthy * 2 <= members.len() {
        return Err(kbin::Error::Failed { what: format!("only {healthy} of {} members are healthy: the cluster has no quorum", members.len()), problems: vec![], hint: Some("bring members back (`systemctl status etcd` on their hosts) before changing anything".into()) });
    }
    Ok(())
}

fn find<'c>(cluster: &'c Cluster, name: &str) -> kbin::Result<&'c Host> {
    cluster.host(name).ok_or_else(|| kbin::Error::other(format!("no host {name:?} in {}", cluster.file.display()), Some("use a host name or address from the cluster file")))
}

fn add(global: &Global, cluster: &Cluster, a: &AddArgs) -> kbin::Result<()> {
    let ctx = ctx(global, cluster, &a.conn, false)?;
    let host = find(cluster, &a.host)?;
    if !host.has(Role::Etcd) {
        return Err(kbin::Error::Refused { what: format!("{} does not have the etcd role in {}", host.name, cluster.file.display()), problems: vec![], hint: Some(format!("add \"etcd\" to the roles of {} in the cluster file, run `kbin pki init` for its certificates, then run this again", host.name)) });
    }
    let others: Vec<&Host> = etcd::etcd_hosts(cluster).into_iter().filter(|h| h.name != host.name).collect();
    let c = ctx.connector(a.conn.ssh.accept_new_host_keys);
    let new = c.connect_all(&[host])?.remove(0);
    let nodes = c.reachable(&others);
    let bins = binaries(global, cluster, &a.net)?;
    let templates = Templates::load(cluster)?;
    let members = etcd::add(&ctx, &new, &nodes, &templates, &bins)?;
    print_members(&members);
    Ok(())
}

fn remove(global: &Global, cluster: &Cluster, a: &RemoveArgs) -> kbin::Result<()> {
    let ctx = ctx(global, cluster, &a.conn, a.dry_run)?;
    let host = find(cluster, &a.host)?;
    let others: Vec<&Host> = etcd::etcd_hosts(cluster).into_iter().filter(|h| h.name != host.name).collect();
    let c = ctx.connector(a.conn.ssh.accept_new_host_keys);
    let target = c.connect(&[host]).remove(0).1.ok();
    let nodes = c.reachable(&others);
    etcd::remove(&ctx, host, target.as_ref(), &nodes)?;
    if !a.dry_run && host.has(Role::Etcd) {
        ctx.printer.warn(&format!("{} still has the etcd role in {}", host.name, cluster.file.display()), Some("remove \"etcd\" from its roles, or the next `kbin etcd deploy` adds it back as a new member"));
    }
    Ok(())
}

fn backup(global: &Global, cluster: &Cluster, a: &BackupArgs) -> kbin::Result<()> {
    let ctx = ctx(global, cluster, &a.conn, false)?;
    let hosts = etcd::etcd_hosts(cluster);
    let nodes = ctx.connector(a.conn.ssh.accept_new_host_keys).reachable(&hosts);
    let out = match &a.out {
        Some(p) => p.clone(),
        None => {
            let dir = cluster.state_dir.join("backups");
            kbin::fsutil::private_dir(&dir).map_err(|e| kbin::Error::other(format!("cannot create {}: {e}", dir.display()), None))?;
            dir.join(format!("etcd-{}-{}.db", cluster.name, kbin::fsutil::utc_stamp()))
        }
    };
    let b = etcd::backup(&ctx, &nodes, &out)?;
    ctx.printer.phase("backup", Some(&b.from), &format!("snapshot verified: {} ({} bytes, sha256 {})", b.path, b.bytes, b.sha256));
    println!("{}", b.path);
    Ok(())
}
