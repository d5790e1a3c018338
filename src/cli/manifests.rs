//! `kbin manifests ...`: render and apply the Kubernetes objects kbin manages.

use std::io::IsTerminal;

use clap::Subcommand;
use kbin::config::Role;
use kbin::kube::manifests::{self, Manifest};
use kbin::kube::{Client, Endpoint, masters};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum ManifestsCommand {
    /// Print the objects kbin applies, as YAML (Secret data redacted)
    ///
    /// The bootstrap token Secret, the RBAC for kubelet TLS bootstrapping, the apiserver's access
    /// to kubelets, the cluster admins group and flannel, rendered from manifests/ for this
    /// cluster. Nothing is contacted.
    Render(RenderArgs),
    /// Apply them by server-side apply, through the first master whose apiserver is ready
    ///
    /// kbin connects to the masters over SSH and reaches each apiserver through that connection
    /// (so it works behind a bastion), as the super-admin certificate (system:masters). Each
    /// object is reported as created, configured or unchanged; applying twice changes nothing.
    Apply(ApplyArgs),
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// Print Secret data as it is (for `kubectl apply -f -`); it holds the bootstrap token
    #[arg(long)]
    pub show_secrets: bool,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub ssh: super::SshArgs,
    /// Reach the apiserver directly from this machine at https://ADDRESS:PORT instead of through
    /// SSH to a master (ADDRESS must be in its certificate: a master's address, the VIP, an LB name)
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Only read: say which objects would be created and which exist
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn exec(global: &Global, cmd: &ManifestsCommand) -> kbin::Result<()> {
    let cluster = global.cluster()?;
    let objects = manifests::render(&cluster, manifests::Set::All)?;
    match cmd {
        ManifestsCommand::Render(a) => render(global, &objects, a),
        ManifestsCommand::Apply(a) => apply(global, &cluster, &objects, a),
    }
}

fn render(global: &Global, objects: &[Manifest], a: &RenderArgs) -> kbin::Result<()> {
    if a.show_secrets && std::io::stdout().is_terminal() {
        global.printer().warn("printing the bootstrap token's secret to the terminal", Some("pipe it instead: `kbin manifests render --show-secrets | kubectl apply --server-side -f -`"));
    }
    print!("{}", manifests::to_yaml(objects, a.show_secrets));
    Ok(())
}

fn apply(global: &Global, cluster: &kbin::config::Cluster, objects: &[Manifest], a: &ApplyArgs) -> kbin::Result<()> {
    let printer = global.printer();
    let client = Client::from_pki(&cluster.pki_dir(), "super-admin")?;
    let endpoint = match &a.server {
        Some(url) => masters::ready_server(&client, Endpoint::from_url(url)?, &printer)?,
        None => {
            let connector = super::run(global, cluster, &a.ssh, std::time::Duration::ZERO, a.dry_run).connector(a.ssh.accept_new_host_keys);
            let hosts: Vec<_> = cluster.hosts_with(Role::Master).collect();
            masters::ready_master(cluster, &client, connector.connect(&hosts), &printer)?
        }
    };
    let report = manifests::apply_all(&client, &endpoint, objects, &printer, a.dry_run)?;
    if a.json {
        super::print_json(&report);
    }
    printer.phase("manifests", None, &report.headline());
    report.check()?;
    Ok(())
}
