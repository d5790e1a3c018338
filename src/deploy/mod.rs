//! The operations that deploy the Kubernetes parts of a cluster: masters, nodes, the LB pair,
//! the manifests, moving the nodes to a new endpoint, and `up`, which runs them all. Each is a
//! list of phases on the [`crate::engine`]: read-only facts and a refusal on every host first,
//! then converge per host inside a transaction that undoes itself.

pub mod adopt;
pub mod certs;
pub mod etcd;
pub mod encryption;
pub mod etcd_maint;
pub mod etcd_restore;
pub mod hosts;
pub mod images;
pub mod lb;
pub mod manifests;
pub mod master;
pub mod node;
pub mod remove;
pub mod repoint;
pub mod rotate_ca;
pub mod status;
pub mod up;
pub mod upgrade;

use std::ops::Deref;
use std::time::Duration;

use crate::config::{Cluster, Host};
use crate::engine::{Bins, Item, Run};
use crate::host::parallel::Cancel;
use crate::output::Printer;
use crate::error::Error;
use crate::render::{self, Component, Templates};

/// What every deploy needs: the run, the templates and the release binaries.
pub struct Ctx<'c> {
    pub run: Run<'c>,
    pub templates: &'c Templates,
    pub bins: &'c Bins,
}

impl<'c> Deref for Ctx<'c> {
    type Target = Run<'c>;
    fn deref(&self) -> &Run<'c> {
        &self.run
    }
}

/// Fetches (verified) and extracts the release binaries of these parts of the cluster.
pub type Fetch<'a> = &'a dyn Fn(&Cluster, &[Component]) -> Result<Bins, Error>;

/// How a command runs, given before the cluster file is final (adopting a host reloads it).
pub struct Opts<'a> {
    pub printer: Printer,
    /// Hosts at once; `None`: the cluster file's `ssh.concurrency`.
    pub concurrency: Option<usize>,
    pub cancel: Cancel,
    pub timeout: Duration,
    pub dry_run: bool,
    pub accept_new_host_keys: bool,
    pub fetch: Fetch<'a>,
    /// How large files reach the hosts ([`crate::engine::relay`]).
    pub relay: crate::engine::relay::Mode,
}

impl Opts<'_> {
    pub fn run<'c>(&self, cluster: &'c Cluster) -> Run<'c> {
        Run { cluster, printer: self.printer, concurrency: self.concurrency.unwrap_or(cluster.ssh.concurrency), cancel: self.cancel.clone(), timeout: self.timeout, dry_run: self.dry_run, known: Default::default() }
    }
}

/// The host of the cluster file named `name` (or with that address).
pub fn host_named<'c>(cluster: &'c Cluster, name: &str) -> Result<&'c Host, Error> {
    cluster.host(name).ok_or_else(|| Error::other(format!("no host {name:?} in {}", cluster.file.display()), Some("use a host name or address from the cluster file")))
}

/// Everything `part` needs on `host`: its binaries first, then the rendered files.
pub fn items(ctx: &Ctx<'_>, host: &Host, part: Component) -> Result<Vec<Item>, Error> {
    Ok(crate::engine::items(ctx.cluster, ctx.templates, ctx.bins, host, part, &render::Options::default())?)
}

/// [`items`] of every node, in the same order.
pub fn plans(ctx: &Ctx<'_>, nodes: &[crate::host::Node<'_>], part: Component) -> Result<Vec<Vec<Item>>, Error> {
    nodes.iter().map(|n| items(ctx, n.host, part)).collect()
}

/// The Kubernetes release `binary` on `node` is switched to: what its symlink in
/// `layout.k8s_bin` points at (`<k8s_releases>/<version>/<binary>`); `None` where it is not a
/// link into the releases. A verification compares what runs with this, so it holds after a
/// switch and after the switch back alike.
pub fn release_of(cluster: &Cluster, node: &crate::host::Node<'_>, binary: &str) -> Result<Option<String>, String> {
    let link = format!("{}/{binary}", cluster.layout.k8s_bin);
    let target = node.remote.read_links(&[&link]).map_err(|e| e.chain())?.pop().flatten();
    let prefix = format!("{}/", cluster.layout.k8s_releases.trim_end_matches('/'));
    Ok(target.and_then(|t| t.strip_prefix(&prefix).and_then(|r| r.strip_suffix(&format!("/{binary}"))).map(str::to_string)))
}

/// The client kbin talks to apiservers with: the cluster CA and the super-admin
/// (`system:masters`) certificate, which works before any RBAC exists.
pub fn api_client(cluster: &Cluster) -> Result<crate::kube::Client, Error> {
    Ok(crate::kube::Client::from_pki(&cluster.pki_dir(), "super-admin")?)
}
