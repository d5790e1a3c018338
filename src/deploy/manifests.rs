//! The manifests stage: kbin's objects applied through the first ready apiserver.

use crate::config::Cluster;
use crate::error::Error;
use crate::host::Node;
use crate::engine::Run;
use crate::kube::Client;
use crate::kube::addons::{AddonStatus, Addons, status};
use crate::kube::manifests::{ApplyReport, Set, apply_all, render};
use crate::output::Printer;

/// The cluster's manifests applied through the first of `masters` (connected, in cluster file
/// order) whose apiserver is ready, as the super-admin; an error if no apiserver is ready
/// (exit 2, nothing changed) or if the apiserver refused any object.
pub fn apply_to_masters(cluster: &Cluster, masters: &[Node<'_>], printer: &Printer, dry_run: bool) -> Result<ApplyReport, Error> {
    let objects = render(cluster, Set::Core)?;
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
            printer.phase("manifests", None, &format!("would apply {} objects; {what}", render(cluster, Set::Core)?.len()));
            Ok(None)
        }
        r => r.map(Some),
    }
}

/// What the add-ons stage did: the objects applied and how each add-on runs.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AddonsReport {
    pub objects: Vec<crate::kube::manifests::ObjectReport>,
    pub addons: Vec<AddonStatus>,
}

/// The add-ons applied and not yet waited for: [`Applied::wait`] once the nodes are up.
pub struct Applied {
    client: Client,
    ep: crate::kube::Endpoint,
    objects: Vec<crate::kube::manifests::ObjectReport>,
}

/// The add-ons (CoreDNS, metrics-server; `[addons]`) applied through the first ready master,
/// before the nodes are: their pods then start on the first nodes Ready rather than after the
/// last (the CoreDNS replicas still land on two nodes: its spread counts the nodes the cluster
/// file names, `minDomains`). `None` when every add-on is turned off, or in a dry run with no
/// apiserver yet.
pub fn apply_addons(run: &Run<'_>, masters: &[Node<'_>]) -> Result<Option<Applied>, Error> {
    let cluster = run.cluster;
    let objects = render(cluster, Set::Addons)?;
    if objects.is_empty() {
        return Ok(None);
    }
    let client = Client::from_pki(&cluster.pki_dir(), "super-admin")?;
    let connected = masters.iter().map(|n| (n.host, Ok(n.clone()))).collect();
    let ep = match crate::kube::masters::ready_master(cluster, &client, connected, &run.printer) {
        Err(e) if run.dry_run => {
            run.printer.phase("addons", None, &format!("would apply {} objects once an apiserver runs ({e})", objects.len()));
            return Ok(None);
        }
        r => r?,
    };
    let report = apply_all(&client, &ep, &objects, &run.printer, run.dry_run)?;
    run.printer.phase("addons", None, &report.headline());
    report.check()?;
    Ok(Some(Applied { client, ep, objects: report.objects }))
}

impl Applied {
    /// Wait until every add-on's replicas are ready (and an aggregated API Available); a dry
    /// run waits for nothing.
    pub fn wait(self, run: &Run<'_>) -> Result<AddonsReport, Error> {
        let Applied { client, ep, objects } = self;
        let mut out = AddonsReport { objects, addons: Vec::new() };
        if run.dry_run {
            return Ok(out);
        }
        if run.cluster.network == crate::config::NetworkPlugin::None {
            // no pod starts before the user's CNI runs: applied, reported pending, not waited for
            run.printer.phase("addons", None, "applied; their pods start once a CNI is applied ([network] plugin = \"none\")");
            return Ok(out);
        }
        let addons = Addons::of(run.cluster);
        let waited = crate::engine::wait_for(run.timeout, &run.cancel, || {
            let st = status(&client, &ep, &addons)?;
            let waiting: Vec<String> = st.iter().filter_map(|a| a.problem.as_ref().map(|p| format!("{}: {p}", a.name))).collect();
            out.addons = st;
            if waiting.is_empty() { Ok(()) } else { Err(waiting.join("; ")) }
        });
        if let Err(e) = waited {
            return Err(Error::Failed {
                what: "the add-ons did not become ready".into(),
                problems: vec![e],
                hint: Some("see the pods: kubectl -n kube-system get pods -o wide, kubectl -n kube-system describe pod <name>; an image the nodes lack is named in [images] of the cluster file".into()),
            });
        }
        for a in &out.addons {
            let api = if a.api_available == Some(true) { ", its API Available" } else { "" };
            run.printer.phase("addons", None, &format!("{}: {}/{} ready on {}{api}", a.name, a.ready, a.replicas, a.nodes.join(", ")));
        }
        Ok(out)
    }
}
