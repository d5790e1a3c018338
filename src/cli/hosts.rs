//! `kbin hosts ...`: check, scan, push.

use std::path::PathBuf;

use clap::Subcommand;
use kbin::deploy::hosts;
use kbin::engine::HostFailure;
use kbin::host::check::{Report, Severity};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Connect to every host and check it can take part in a cluster
    ///
    /// Reports per host: reachable, OS, architecture, kernel, systemd, clock skew, sudo, free disk
    /// under the install paths, swap, br_netfilter/overlay, ip_forward, ports the host's roles
    /// need, and identities that must be unique across hosts (hostname, product_uuid, machine id,
    /// MAC addresses). Exits 2 when it finds a problem.
    Check(CheckArgs),
    /// Show every host's SSH host key fingerprint and record the unknown ones
    ///
    /// Keys go to known_hosts next to the cluster file. A key that differs from a recorded one
    /// is shown and never recorded.
    Scan(ScanArgs),
    /// Copy a local file to hosts atomically (skipped where it is already identical)
    ///
    /// On each host the file is planned (hashes compared) and written inside a transaction: a
    /// host where writing fails gets its previous file back.
    Push(PushArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConnArgs {
    #[command(flatten)]
    pub ssh: super::SshArgs,
    /// Only these hosts (name or address; repeatable)
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// Only hosts with this role (etcd, master, node, lb; repeatable)
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Only show the fingerprints; record nothing
    #[arg(long)]
    pub dry_run: bool,
    /// How many hosts to scan at once [default: ssh.concurrency, 10]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: Option<u16>,
    /// Print the keys as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The local file
    pub local: PathBuf,
    /// The absolute path on the hosts
    pub remote: String,
    /// Permission bits, octal
    #[arg(long, default_value = "644", value_parser = parse_mode)]
    pub mode: u32,
    /// Owner as user or user:group [default: root]
    #[arg(long)]
    pub owner: Option<String>,
    /// Keep the replaced file as <remote>.kbin-backup-<time>
    #[arg(long)]
    pub backup: bool,
    /// Show per host whether the file would change (with a diff of a small text file); change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Send the file straight from here to each host (by default, when the link from here is
    /// slower than 200 Mbit/s, a file of 1 MiB or more leaves here once and the hosts pass it on)
    #[arg(long, conflicts_with = "relay")]
    pub direct: bool,
    /// Relay the file between the hosts whatever the link from here
    #[arg(long)]
    pub relay: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Print the per-host results as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| format!("{s:?} is not an octal mode such as 644"))
}

pub fn exec(global: &Global, cmd: &HostsCommand) -> kbin::Result<()> {
    let json = match cmd {
        HostsCommand::Check(a) => a.json,
        HostsCommand::Scan(a) => a.json,
        HostsCommand::Push(a) => a.json,
    };
    // an error before there is any result (the cluster file, --host, the local file) is the
    // JSON document with --json
    exec_and_print(global, cmd).unwrap_or_else(|e| super::emit::<()>(json, Err(e)))
}

/// Run the command and print its results; the verdict comes back to the edge.
fn exec_and_print(global: &Global, cmd: &HostsCommand) -> kbin::Result<kbin::Result<()>> {
    let c = global.cluster()?;
    Ok(match cmd {
        HostsCommand::Check(a) => {
            let hosts = hosts::select(&c, &a.conn.hosts, &a.conn.roles)?;
            let (report, verdict) = hosts::check(&run(global, &c, &a.conn.ssh, false), &hosts, a.conn.ssh.accept_new_host_keys)?;
            if a.json {
                super::print_json(&report);
            } else {
                print!("{}", render_report(&report));
            }
            verdict
        }
        HostsCommand::Scan(a) => {
            let ssh = super::SshArgs { accept_new_host_keys: false, concurrency: a.concurrency };
            let (scanned, verdict) = hosts::scan(&run(global, &c, &ssh, a.dry_run), a.dry_run)?;
            if a.json {
                super::print_json(&scanned.keys);
            } else {
                for k in &scanned.keys {
                    println!("{:<16} {:<22} {:<20} {} {}", k.host, kbin::host::known_hosts::host_name(&k.address, k.port), k.status, k.key_type, k.fingerprint);
                }
            }
            report_failures(&scanned.failed);
            verdict
        }
        HostsCommand::Push(a) => {
            let hosts = hosts::select(&c, &a.conn.hosts, &a.conn.roles)?;
            let spec = hosts::Push { files: vec![(a.local.clone(), a.remote.clone())], mode: a.mode, owner: a.owner.clone(), backup: a.backup, relay: super::relay_mode(a.direct, a.relay) };
            let (rows, verdict) = hosts::push(&run(global, &c, &a.conn.ssh, a.dry_run), &hosts, a.conn.ssh.accept_new_host_keys, &spec)?;
            if a.json {
                super::print_json(&rows);
            } else {
                for r in &rows {
                    let what = match (&r.failure, r.changed) {
                        (Some(_), _) => "failed".to_string(),
                        (None, true) if r.dry_run => "would change".to_string(),
                        (None, true) => format!("changed ({} bytes sent)", r.bytes_sent),
                        (None, false) => "unchanged".to_string(),
                    };
                    println!("{:<16} {what}", r.host);
                }
            }
            report_failures(&rows.iter().filter_map(|r| r.failure.clone()).collect::<Vec<_>>());
            verdict
        }
    })
}

fn run<'c>(global: &Global, c: &'c kbin::config::Cluster, ssh: &super::SshArgs, dry_run: bool) -> kbin::engine::Run<'c> {
    super::run(global, c, ssh, std::time::Duration::from_secs(c.ssh.command_timeout_secs), dry_run)
}

/// Each failed host's error with its hint (and what its rollback did), on stderr.
fn report_failures(failed: &[HostFailure]) {
    for f in failed {
        eprintln!("[{}] {}: error: {}", f.phase, f.host, f.error);
        if let Some(h) = &f.hint {
            eprintln!("  hint: {h}");
        }
        if let Some(r) = f.rollback.line() {
            eprintln!("[rollback] {}: {r}", f.host);
        }
    }
}

fn gib(kb: u64) -> String {
    format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0)
}

/// The human report: one block per host, problems with their hints, a summary line.
pub fn render_report(r: &Report) -> String {
    let mut s = String::new();
    for h in &r.hosts {
        let roles: Vec<&str> = h.roles.iter().map(|r| r.as_str()).collect();
        s.push_str(&format!("{} ({}; {})\n", h.host, h.address, roles.join(", ")));
        if let Some(f) = &h.facts {
            let row = |s: &mut String, k: &str, v: String| s.push_str(&format!("  {k:<12}{v}\n"));
            row(&mut s, "os", format!("{} ({} {})", f.os_name, f.os_id, f.os_version));
            row(&mut s, "arch", f.arch.clone());
            row(&mut s, "kernel", f.kernel.clone());
            row(&mut s, "cgroup", f.cgroup.map(|c| c.as_str().to_string()).unwrap_or_else(|| "unknown".into()));
            row(&mut s, "systemd", f.systemd.map(|v| v.to_string()).unwrap_or_else(|| "missing".into()));
            row(&mut s, "clock", format!("{:+.3}s (±{:.3}s)", f.clock_skew_ms as f64 / 1000.0, f.clock_uncertainty_ms as f64 / 1000.0));
            row(&mut s, "sudo", f.sudo.clone());
            row(&mut s, "swap", if f.swap_kb == 0 && f.swap_devices == 0 { "off".into() } else { format!("on ({} MiB)", f.swap_kb / 1024) });
            row(&mut s, "modules", f.modules.iter().map(|(m, st)| format!("{m} {st}")).collect::<Vec<_>>().join(", "));
            row(&mut s, "ip_forward", f.ip_forward.map(|b| if b { "1" } else { "0" }.to_string()).unwrap_or_else(|| "unknown".into()));
            row(&mut s, "hostname", f.hostname.clone());
            row(&mut s, "disk free", f.disk_free_kb.iter().map(|(p, kb)| format!("{p} {}", gib(*kb))).collect::<Vec<_>>().join(", "));
        } else {
            s.push_str("  reachable   no\n");
        }
        if h.problems.is_empty() {
            s.push_str("  ok\n");
        }
        for p in &h.problems {
            let tag = if p.severity == Severity::Error { "error" } else { "warning" };
            s.push_str(&format!("  {tag}: [{}] {}\n    hint: {}\n", p.check, p.message, p.hint));
        }
        s.push('\n');
    }
    s.push_str(&format!(
        "{} host{} checked: {} error{}, {} warning{}\n",
        r.hosts.len(),
        kbin::output::plural(r.hosts.len()),
        r.errors,
        kbin::output::plural(r.errors),
        r.warnings,
        kbin::output::plural(r.warnings)
    ));
    s
}

