//! `kbin hosts ...`: check, scan, push.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;
use kbin::config::{Cluster, Host, Role};
use kbin::error::Reportable;
use kbin::host::check::{self, Report, Severity};
use kbin::host::parallel::{self, Cancel, Outcome};
use kbin::host::ssh::{self, ConnectOptions, Target};
use kbin::host::{HostError, Remote, Source, WriteOpts};
use kbin::output::Printer;

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
    match cmd {
        HostsCommand::Check(a) => check(global, a),
        HostsCommand::Scan(a) => scan(global, a),
        HostsCommand::Push(a) => push(global, a),
    }
}

fn select<'c>(c: &'c Cluster, conn: &ConnArgs) -> kbin::Result<Vec<&'c Host>> {
    for n in &conn.hosts {
        if c.host(n).is_none() {
            return Err(kbin::Error::other(format!("no host {n:?} in {}", c.file.display()), Some("use a host name or address from the cluster file")));
        }
    }
    let mut roles = Vec::new();
    for r in &conn.roles {
        roles.push(Role::parse(r).ok_or_else(|| kbin::Error::other(format!("unknown role {r:?}"), Some("roles are etcd, master, node and lb")))?);
    }
    Ok(c.hosts
        .iter()
        .filter(|h| conn.hosts.is_empty() || conn.hosts.iter().any(|n| *n == h.name || *n == h.address.to_string()))
        .filter(|h| roles.is_empty() || roles.iter().any(|r| h.has(*r)))
        .collect())
}

fn concurrency(c: &Cluster, flag: Option<u16>) -> usize {
    flag.map(usize::from).unwrap_or(c.ssh.concurrency)
}

fn connected_line(p: &Printer, name: &str, r: &Result<ssh::SshHost, HostError>) {
    match r {
        Ok(h) => p.phase("connect", Some(name), &format!("connected as {}", h.user())),
        Err(e) => p.phase("connect", Some(name), &format!("failed: {e}")),
    }
}

/// Print each failed host's error with its hint on stderr (the per-host report at the end).
fn report_failures<T>(p: &Printer, results: &[parallel::HostResult<T>]) {
    for r in results {
        if let Outcome::Failed(e) = &r.outcome {
            let _ = p;
            eprintln!("[{}] {}: error: {}", r.phase, r.host, e.chain().trim_start_matches(&format!("{}: ", r.host)));
            if let Some(h) = e.hint() {
                eprintln!("  hint: {h}");
            }
        }
    }
}

fn interrupted<T>(results: &[parallel::HostResult<T>]) -> kbin::Error {
    let t = parallel::tally(results);
    kbin::Error::Interrupted { what: format!("{} host(s) done, {} failed, {} not started", t.done, t.failed, t.skipped) }
}

fn check(global: &Global, a: &CheckArgs) -> kbin::Result<()> {
    let c = global.cluster()?;
    let p = global.printer();
    let hosts = select(&c, &a.conn)?;
    let opts = ConnectOptions::for_cluster(&c, a.conn.ssh.accept_new_host_keys);
    let cancel = Cancel::on_ctrl_c();
    let paths = check::install_paths(&c);
    let bastion = c.bastion.as_ref().map(Target::from_bastion);
    let results = parallel::for_each(&hosts, |h| h.name.clone(), "check", concurrency(&c, a.conn.ssh.concurrency), &cancel, |h| {
        let t = Instant::now();
        let conn = ssh::connect(&Target::from_host(h), bastion.as_ref(), &opts);
        connected_line(&p, &h.name, &conn);
        let f = check::gather(&conn?, &paths)?;
        p.phase("check", Some(&h.name), &format!("facts gathered in {} ms", t.elapsed().as_millis()));
        Ok(f)
    });
    if cancel.is_cancelled() {
        return Err(interrupted(&results));
    }
    let gathered: Vec<(&Host, Result<check::Facts, HostError>)> = hosts
        .iter()
        .zip(results)
        .map(|(h, r)| {
            let res = match r.outcome {
                Outcome::Done(f) => Ok(f),
                Outcome::Failed(e) => Err(e),
                Outcome::Skipped => Err(HostError::Interrupted { host: h.name.clone() }),
            };
            (*h, res)
        })
        .collect();
    let report = check::evaluate(&c, gathered);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
    } else {
        print!("{}", render_report(&report));
    }
    if report.errors > 0 {
        let bad = report.hosts.iter().filter(|h| h.problems.iter().any(|p| p.severity == Severity::Error)).count();
        return Err(kbin::Error::Refused {
            what: format!("{} problem{} on {bad} of {} host{}", report.errors, plural(report.errors), report.hosts.len(), plural(report.hosts.len())),
            problems: Vec::new(),
            hint: Some("fix the problems listed above (each has a hint) and run `kbin hosts check` again".into()),
        });
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
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
        plural(r.hosts.len()),
        r.errors,
        plural(r.errors),
        r.warnings,
        plural(r.warnings)
    ));
    s
}

fn scan(global: &Global, a: &ScanArgs) -> kbin::Result<()> {
    let c = global.cluster()?;
    let p = global.printer();
    // the bastion must be known (or recorded now) before hosts behind it can be scanned
    let mut opts = ConnectOptions::for_cluster(&c, false);
    let mut keys = Vec::new();
    let bastion = c.bastion.as_ref().map(Target::from_bastion);
    if let Some(b) = &bastion {
        let k = ssh::scan(b, None, &opts, !a.dry_run)?;
        p.phase("scan", Some(&b.name), &format!("{} {} ({})", k.key_type, k.fingerprint, k.status));
        keys.push(k);
    }
    opts.accept_new_host_keys = false;
    let hosts: Vec<&Host> = c.hosts.iter().collect();
    let cancel = Cancel::on_ctrl_c();
    let results = parallel::for_each(&hosts, |h| h.name.clone(), "scan", concurrency(&c, a.concurrency), &cancel, |h| {
        let k = ssh::scan(&Target::from_host(h), bastion.as_ref(), &opts, !a.dry_run)?;
        p.phase("scan", Some(&h.name), &format!("{} {} ({})", k.key_type, k.fingerprint, k.status));
        Ok(k)
    });
    let mut changed = Vec::new();
    for r in &results {
        if let Outcome::Done(k) = &r.outcome {
            if k.status == "changed" {
                changed.push(format!("{} ({}:{}): presents {} {}", k.host, k.address, k.port, k.key_type, k.fingerprint));
            }
            keys.push(k.clone());
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&keys).expect("keys serialize"));
    } else {
        for k in &keys {
            println!("{:<16} {:<22} {:<20} {} {}", k.host, kbin::host::known_hosts::host_name(&k.address, k.port), k.status, k.key_type, k.fingerprint);
        }
    }
    report_failures(&p, &results);
    if cancel.is_cancelled() {
        return Err(interrupted(&results));
    }
    if !changed.is_empty() {
        return Err(kbin::Error::Refused {
            what: format!("{} host key{} differ from the recorded ones", changed.len(), plural(changed.len())),
            problems: changed,
            hint: Some(format!(
                "someone may be intercepting the connection, or the hosts were reinstalled; if you are sure, delete their lines from {} (or ~/.ssh/known_hosts) and scan again",
                c.state_dir.join("known_hosts").display()
            )),
        });
    }
    let t = parallel::tally(&results);
    if t.failed > 0 {
        return Err(kbin::Error::other(format!("{} of {} hosts could not be scanned", t.failed, results.len()), None));
    }
    if !a.dry_run {
        p.phase("scan", None, &format!("known keys are in {}", c.state_dir.join("known_hosts").display()));
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct PushResult {
    host: String,
    ok: bool,
    changed: bool,
    bytes_sent: u64,
    backup: Option<String>,
    error: Option<String>,
}

fn push(global: &Global, a: &PushArgs) -> kbin::Result<()> {
    let c = global.cluster()?;
    let p = global.printer();
    let hosts = select(&c, &a.conn)?;
    let opts = ConnectOptions::for_cluster(&c, a.conn.ssh.accept_new_host_keys);
    let started = Instant::now();
    let meta = std::fs::metadata(&a.local).map_err(|e| kbin::Error::Other {
        message: format!("cannot read {}", a.local.display()),
        hint: Some("check the local file's path".into()),
        source: Some(Box::new(e)),
    })?;
    p.phase("push", None, &format!("{} ({} bytes) to {} host{}", a.local.display(), meta.len(), hosts.len(), plural(hosts.len())));
    let cancel = Cancel::on_ctrl_c();
    let bars = (!p.quiet && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
    let bastion = c.bastion.as_ref().map(Target::from_bastion);
    // the local file is hashed while the connections are being set up
    let src: std::sync::OnceLock<Result<Source, String>> = std::sync::OnceLock::new();
    let results = std::thread::scope(|s| {
        s.spawn(|| {
            let _ = src.set(Source::file(&a.local).map_err(|e| e.to_string()));
        });
        parallel::for_each(&hosts, |h| h.name.clone(), "push", concurrency(&c, a.conn.ssh.concurrency), &cancel, |h| {
            let conn = ssh::connect(&Target::from_host(h), bastion.as_ref(), &opts);
            connected_line(&p, &h.name, &conn);
            let conn = conn?;
            let src = src.wait().as_ref().map_err(|e| HostError::Local { host: h.name.clone(), path: a.local.clone(), source: std::io::Error::other(e.clone()) })?;
            let bar = bars.as_ref().map(|m| {
                let b = m.add(indicatif::ProgressBar::new(src.len()));
                b.set_style(indicatif::ProgressStyle::with_template("{prefix:>12} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}").unwrap());
                b.set_prefix(h.name.clone());
                b
            });
            let progress = |n: u64| {
                if let Some(b) = &bar {
                    b.set_position(n);
                }
            };
            let mut wo = WriteOpts::mode(a.mode).progress(&progress);
            wo.owner = a.owner.clone();
            wo.backup = a.backup;
            let r = conn.write_file(&a.remote, src, &wo);
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            if let Ok(w) = &r {
                p.phase("push", Some(&h.name), if w.changed { if w.bytes_sent > 0 { "written" } else { "mode/owner fixed" } } else { "unchanged" });
            }
            r
        })
    });
    let rows: Vec<PushResult> = results
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Done(w) => PushResult { host: r.host.clone(), ok: true, changed: w.changed, bytes_sent: w.bytes_sent, backup: w.backup.clone(), error: None },
            Outcome::Failed(e) => PushResult { host: r.host.clone(), ok: false, changed: false, bytes_sent: 0, backup: None, error: Some(e.chain()) },
            Outcome::Skipped => PushResult { host: r.host.clone(), ok: false, changed: false, bytes_sent: 0, backup: None, error: Some("not started (interrupted)".into()) },
        })
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("results serialize"));
    } else {
        for r in &rows {
            let what = match (&r.error, r.changed) {
                (Some(_), _) => "failed".to_string(),
                (None, true) => format!("changed ({} bytes sent)", r.bytes_sent),
                (None, false) => "unchanged".to_string(),
            };
            println!("{:<16} {what}", r.host);
        }
    }
    report_failures(&p, &results);
    p.phase("push", None, &format!("done in {:.2}s", started.elapsed().as_secs_f64()));
    if cancel.is_cancelled() {
        return Err(interrupted(&results));
    }
    let t = parallel::tally(&results);
    if t.failed > 0 {
        return Err(kbin::Error::other(format!("push failed on {} of {} hosts", t.failed, results.len()), Some("see each host's error and hint above")));
    }
    Ok(())
}
