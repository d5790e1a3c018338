//! Command-line layer: clap types stop here. Each subcommand lives in its own file with its
//! `Args` and an `exec` that resolves arguments and the cluster file, then calls the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kbin::output::Printer;

mod bundle;
mod cluster;
mod completions;
mod hosts;
mod download;
mod etcd;
mod manifests;
mod pin;
mod pki;
mod render;

/// Build and run highly-available Kubernetes clusters from the official release binaries.
///
/// kbin runs on an operator machine and drives the hosts over SSH. The cluster is described by one
/// TOML file (cluster.toml); the directory holding it keeps kbin's local state (pki/, kbin.lock, known_hosts).
#[derive(Debug, Parser)]
#[command(name = "kbin", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Global {
    /// The cluster file
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE", env = "KBIN_CONFIG", default_value = kbin::config::DEFAULT_FILE)]
    pub config: PathBuf,
    /// Print only warnings and errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Certificates, keys, tokens and kubeconfigs: kbin's own CA
    #[command(subcommand)]
    Pki(pki::PkiCommand),
    /// Render every file kbin would push to a host
    Render(render::Args),
    /// The hosts over SSH: check prerequisites, record host keys, push files
    #[command(subcommand)]
    Hosts(hosts::HostsCommand),
    // help texts of these two come from their Args structs
    Download(download::Args),
    Pin(pin::Args),
    /// Offline bundles of every artifact a cluster needs
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// etcd on the etcd hosts: deploy, status, add, remove, backup
    #[command(subcommand)]
    Etcd(etcd::EtcdCommand),
    /// Control-plane hosts: add or remove a master (kube-apiserver, controller-manager, scheduler)
    #[command(subcommand)]
    Master(cluster::MasterCommand),
    /// Worker nodes: add or remove (containerd, flannel, kubelet, kube-proxy)
    #[command(subcommand)]
    Node(cluster::NodeCommand),
    /// The LB pair holding the apiserver VIP (nginx + keepalived)
    #[command(subcommand)]
    Lb(cluster::LbCommand),
    /// The Kubernetes objects kbin applies (bootstrap token, RBAC): render, apply
    #[command(subcommand)]
    Manifests(manifests::ManifestsCommand),
    /// The whole cluster from the cluster file: pki, every host's preflight, download, etcd,
    /// masters, LB, manifests, nodes, add-ons; a re-run changes only what differs
    Up(cluster::UpArgs),
    Upgrade(cluster::UpgradeArgs),
    Status(cluster::StatusArgs),
    RepointNodes(cluster::RepointArgs),
    /// Print shell completions for kbin
    Completions(completions::Args),
}

/// SSH options shared by every command that connects to hosts.
#[derive(Debug, clap::Args)]
pub struct SshArgs {
    /// Record the host keys of hosts seen for the first time instead of refusing them
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// How many hosts to work on at once [default: ssh.concurrency, 10]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: Option<u16>,
}

impl Global {
    pub fn printer(&self) -> Printer {
        Printer::new(self.quiet)
    }
    /// Load and validate the cluster file, printing its warnings.
    pub fn cluster(&self) -> kbin::Result<kbin::config::Cluster> {
        let cluster = kbin::config::load(&self.config)?;
        let p = self.printer();
        for w in &cluster.warnings {
            let loc = match w.line {
                Some(l) => format!("{}:{l}", cluster.file.display()),
                None => cluster.file.display().to_string(),
            };
            p.warn(&format!("{loc}: {}: {}", w.field, w.message), w.hint.as_deref());
        }
        Ok(cluster)
    }
}

/// Run the CLI and return the process exit code. The one place where errors are printed.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Pki(cmd) => pki::exec(&cli.global, cmd),
        Command::Render(args) => render::exec(&cli.global, args),
        Command::Hosts(cmd) => hosts::exec(&cli.global, cmd),
        Command::Download(args) => download::exec(&cli.global, args),
        Command::Pin(args) => pin::exec(&cli.global, args),
        Command::Bundle(cmd) => bundle::exec(&cli.global, cmd),
        Command::Etcd(cmd) => etcd::exec(&cli.global, cmd),
        Command::Master(cmd) => cluster::master(&cli.global, cmd),
        Command::Node(cmd) => cluster::node(&cli.global, cmd),
        Command::Lb(cmd) => cluster::lb(&cli.global, cmd),
        Command::Manifests(cmd) => manifests::exec(&cli.global, cmd),
        Command::Up(args) => cluster::up(&cli.global, args),
        Command::Upgrade(args) => cluster::upgrade(&cli.global, args),
        Command::Status(args) => cluster::status(&cli.global, args),
        Command::RepointNodes(args) => cluster::repoint(&cli.global, args),
        Command::Completions(args) => completions::exec(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprint!("{}", kbin::error::render(&e));
            e.exit() as i32
        }
    }
}

/// `--direct`, `--relay` or neither (the link decides).
pub fn relay_mode(direct: bool, relay: bool) -> kbin::engine::relay::Mode {
    use kbin::engine::relay::Mode;
    if direct {
        Mode::Direct
    } else if relay {
        Mode::Relay
    } else {
        Mode::Auto
    }
}

/// The run of a command that connects to hosts: its output, concurrency, Ctrl-C, timeout.
pub fn run<'c>(global: &Global, cluster: &'c kbin::config::Cluster, ssh: &SshArgs, timeout: std::time::Duration, dry_run: bool) -> kbin::engine::Run<'c> {
    kbin::engine::Run {
        cluster,
        printer: global.printer(),
        concurrency: ssh.concurrency.map(usize::from).unwrap_or(cluster.ssh.concurrency),
        cancel: kbin::host::parallel::Cancel::on_ctrl_c(),
        timeout,
        dry_run,
        known: Default::default(),
    }
}

pub fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

/// With `--json`: the report on stdout when the run worked, else one JSON document with the
/// error (headline, details, causes, hint, per-host failures and their rollback state). Either
/// way the result goes on to the edge, which prints the error and picks the exit code.
pub fn emit<T: serde::Serialize>(json: bool, result: kbin::Result<T>) -> kbin::Result<()> {
    match result {
        Ok(report) => {
            if json {
                print_json(&report);
            }
            Ok(())
        }
        Err(e) => {
            if json {
                print_json(&serde_json::json!({ "ok": false, "error": kbin::error::ErrorReport::of(&e) }));
            }
            Err(e)
        }
    }
}

/// [`emit`] for a command whose report exists whether it worked or not (`up`): on failure the
/// report's fields come with `ok: false` and the error.
pub fn emit_with<T: serde::Serialize>(json: bool, report: &T, result: kbin::Result<()>) -> kbin::Result<()> {
    if json {
        let mut v = serde_json::to_value(report).expect("serializable");
        if let (Err(e), Some(m)) = (&result, v.as_object_mut()) {
            m.insert("ok".into(), false.into());
            m.insert("error".into(), serde_json::to_value(kbin::error::ErrorReport::of(e)).expect("serializable"));
        }
        print_json(&v);
    }
    result
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command, at every level, says what it does in its help: its own words, not the doc
    /// of an options struct it flattens (`kbin up` once read "Options of every command that
    /// deploys").
    #[test]
    fn every_command_says_what_it_does() {
        fn walk(cmd: &clap::Command, path: &str, seen: &mut Vec<(String, String)>) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let name = format!("{path} {}", sub.get_name());
                let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
                assert!(!about.trim().is_empty(), "`{name}` has no help line");
                assert!(!about.starts_with("Options "), "`{name}` shows an options struct's doc: {about:?}");
                seen.push((name.clone(), about));
                walk(sub, &name, seen);
            }
        }
        let mut seen = Vec::new();
        walk(&super::Cli::command(), "kbin", &mut seen);
        assert!(seen.len() > 30, "{seen:?}");
        let up = &seen.iter().find(|(n, _)| n == "kbin up").unwrap().1;
        assert!(up.contains("whole cluster"), "{up}");
    }
}
