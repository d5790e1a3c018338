//! The manifests stage: kbin's objects applied through the first ready apiserver.

use crate::config::Cluster;
use crate::error::Error;
use crate::host::Node;
use crate::kube::Client;
use crate::kube::manifests::{ApplyReport, apply_all, render};
use crate::output::Printer;

/// The cluster's manifests applied through the first of `masters` (connected, in cluster file
/// order) whose apiserver is ready, as the super-admin; an error if no apiserver is ready
/// (exit 2, nothing changed) or if the apiserver refused any object.
pub fn apply_to_masters(cluster: &Cluster, masters: &[Node<'_>], printer: &Printer, dry_run: bool) -> Result<ApplyReport, Error> {
    let objects = render(cluster)?;
    let client = Client::from_pki(&cluster.pki_dir(), "super-admin")?;
    let connected = masters.iter().map(|n| (n.host, Ok(n.clone()))).collect();
    let ep = crate::kube::masters::ready_master(cluster, &client, connected, printer)?;
    let report = apply_all(&client, &ep, &objects, printer, dry_run)?;
    printer.phase("manifests", None, &report.headline());
    report.check()?;
    Ok(report)
}

/// For the deploy commands: [`apply_to_masters`]; in a dry run with no apiserver ready yet
/// (nothing deployed), say so instead of failing: the real run applies them once the masters
/// are up. The report, when there is one.
pub fn apply_through(cluster: &Cluster, masters: &[Node<'_>], printer: &Printer, dry_run: bool) -> Result<Option<ApplyReport>, Error> {
    match apply_to_masters(cluster, masters, printer, dry_run) {
        Err(Error::Refused { what, .. }) if dry_run => {
            printer.phase("manifests", None, &format!("would apply {} objects; {what}", render(cluster)?.len()));
            Ok(None)
        }
        r => r.map(Some),
    }
}
