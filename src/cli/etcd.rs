//! `kbin etcd ...`: deploy, status, add, remove, backup, restore, defrag.

use std::path::PathBuf;

use clap::Subcommand;
use kbin::config::Cluster;
use kbin::engine::Bins;
use kbin::deploy::etcd::{self, MemberReport};
use kbin::deploy::etcd_maint;
use kbin::render::Component;

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
    /// Disaster recovery: every member restored from SNAPSHOT as a new cluster
    ///
    /// The snapshot is verified first, and every etcd host and master must answer (exit 2,
    /// nothing changed). The control plane is stopped on every master, etcd on every member; each
    /// member's data is restored beside its data directory, the current data kept aside
    /// (<data>.kbin-before-restore-<time>) and the restored data moved in; etcd starts on every
    /// member at once, then the control plane, and kbin waits for the apiservers and the nodes.
    /// A failure before etcd is healthy puts each member's previous data back.
    Restore(RestoreArgs),
    /// Defragment every member, one at a time, followers first and the leader last, each
    /// healthy again before the next (all members must be healthy to begin)
    Defrag(DefragArgs),
}

#[derive(Debug, clap::Args)]
pub struct DefragArgs {
    /// Show the order and each member's database size; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
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
    /// Say what would be done (the member to announce, the files that would change, with diffs);
    /// change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the members as JSON on stdout (an error report on failure)
    #[arg(long)]
    pub json: bool,
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
    /// Print the result as JSON on stdout (an error report on failure)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The snapshot (from `kbin etcd backup`, `kbin upgrade` or `etcdctl snapshot save`)
    pub snapshot: PathBuf,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Say what would be done on each host; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the snapshot [default: backups/etcd-<cluster>-<UTC time>.db next to the cluster file]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Print the snapshot's path, size, digest and source member as JSON on stdout (an error
    /// report on failure)
    #[arg(long)]
    pub json: bool,
}

pub fn exec(global: &Global, cmd: &EtcdCommand) -> kbin::Result<()> {
    let cluster = global.cluster()?;
    // only deploy and add install etcd
    let fetch = |c: &Cluster, parts: &[Component]| match cmd {
        EtcdCommand::Deploy(DeployArgs { net, .. }) | EtcdCommand::Add(AddArgs { net, .. }) => super::cluster::binaries(global, c, net, parts),
        _ => Ok(Bins::default()),
    };
    let (conn, dry_run) = match cmd {
        EtcdCommand::Deploy(a) => (&a.conn, a.dry_run),
        EtcdCommand::Status(a) => (&a.conn, false),
        EtcdCommand::Add(a) => (&a.conn, a.dry_run),
        EtcdCommand::Remove(a) => (&a.conn, a.dry_run),
        EtcdCommand::Backup(a) => (&a.conn, false),
        EtcdCommand::Restore(a) => (&a.conn, a.dry_run),
        EtcdCommand::Defrag(a) => (&a.conn, a.dry_run),
    };
    let o = super::cluster::opts(global, &conn.ssh, conn.health_timeout, dry_run, &fetch);
    match cmd {
        EtcdCommand::Deploy(a) => deploy(&o, &cluster, a),
        EtcdCommand::Status(a) => status(&o, &cluster, a),
        EtcdCommand::Add(a) => {
            let members = etcd::add_host(&o, &cluster, &a.host);
            if let (Ok(m), false) = (&members, a.json) {
                print_members(m);
            }
            super::emit(a.json, members.map(|m| serde_json::json!({ "dry_run": a.dry_run, "members": m })))
        }
        EtcdCommand::Remove(a) => super::emit(a.json, etcd::remove_host(&o, &cluster, &a.host)),
        EtcdCommand::Backup(a) => {
            let b = etcd_maint::backup_to(&o, &cluster, a.out.as_deref());
            if let (Ok(b), false) = (&b, a.json) {
                println!("{}", b.path);
            }
            super::emit(a.json, b)
        }
        EtcdCommand::Restore(a) => {
            let r = kbin::deploy::etcd_restore::restore(&o, &cluster, &a.snapshot);
            if let Ok(r) = &r {
                let what = if r.dry_run { "planned; nothing was changed".to_string() } else { format!("{} members restored from {}", r.members.len(), r.snapshot) };
                o.printer.phase("restore", None, &what);
            }
            super::emit(a.json, r)
        }
        EtcdCommand::Defrag(a) => super::emit(a.json, etcd_maint::defrag_all(&o, &cluster)),
    }
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

fn deploy(o: &kbin::deploy::Opts<'_>, cluster: &Cluster, a: &DeployArgs) -> kbin::Result<()> {
    let report = match etcd::deploy_all(o, cluster) {
        Ok(r) => r,
        Err(e) => return super::emit::<()>(a.json, Err(e)),
    };
    if a.json {
        super::print_json(&report);
    } else if !a.dry_run {
        print_members(&report.members);
    }
    if !a.dry_run {
        let healthy = report.members.iter().filter(|m| m.healthy).count();
        let leader = report.members.iter().find(|m| m.leader).map(|m| m.name.as_str()).unwrap_or("?");
        let version = report.members.first().and_then(|m| m.version.clone()).unwrap_or_default();
        o.printer.phase(
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

fn status(o: &kbin::deploy::Opts<'_>, cluster: &Cluster, a: &StatusArgs) -> kbin::Result<()> {
    let members = etcd::status_all(o, cluster)?;
    let healthy = members.iter().filter(|m| m.healthy).count();
    if a.json {
        super::print_json(&serde_json::json!({ "healthy": healthy, "members": members }));
    } else {
        print_members(&members);
    }
    o.printer.phase("etcd", None, &format!("{healthy}/{} members healthy", members.len()));
    if healthy * 2 <= members.len() {
        return Err(kbin::Error::Failed { what: format!("only {healthy} of {} members are healthy: the cluster has no quorum", members.len()), problems: vec![], hint: Some("bring members back (`systemctl status etcd` on their hosts) before changing anything".into()) });
    }
    Ok(())
}
