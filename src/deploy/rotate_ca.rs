//! `kbin pki rotate-ca kubernetes|etcd|front-proxy`: a new CA with no moment at which a client,
//! a kubelet, an etcd peer or a pod stops trusting what it talks to. The stages (the files in
//! `pki/` say where it stands, [`crate::pki::rotate`]), each placed on every host by the same
//! converge as `kbin up` (etcd members and masters one at a time, each verified, masters out of
//! the LB upstreams while they restart; only the services whose files changed restart):
//!
//! 1. **trust**: a new CA is made, and every place that trusts the CA gets old + new (apiserver
//!    client CA, kubelets, every kubeconfig, etcd peers and clients, the controller-manager's root
//!    CA, so the `kube-root-ca.crt` ConfigMaps pods read hold both); for the kubernetes CA, kbin
//!    waits until every namespace's `kube-root-ca.crt` holds the new CA and pods had time to see it;
//! 2. **reissue**: the new CA signs (the controller-manager's signing pair too); every leaf it
//!    signs is re-issued and placed; for the kubernetes CA each node's kubelet gets a new client
//!    certificate (what TLS bootstrapping gave it, signed by the new CA, switched by a link swap);
//! 3. **finish**: the old CA leaves every bundle; kbin reads every host and fails unless nothing
//!    there is, trusts or was signed by the old CA; the old pair goes to `pki/retired/`.
//!
//! Before anything: every host must answer, every etcd member be healthy and every node Ready,
//! else the run is refused (exit 2) with nothing changed. A run stopped anywhere is resumed by
//! running the command again.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Cluster, Host, Role};
use crate::engine::{self, Item, Spec, converge};
use crate::error::Error;
use crate::host::{Cmd, Node};
use crate::pki::onhost::Target;
use crate::pki::rotate::{self, Stage};
use crate::render::Templates;

/// The CAs `rotate-ca` rotates: the name on the command line and the id in the certificate table.
pub const CAS: [(&str, &str); 4] = [("kubernetes", "ca"), ("etcd", "etcd-ca"), ("front-proxy", "front-proxy-ca"), ("service-account", "sa")];

pub struct Options {
    /// The id of the CA in the certificate table (`ca`, `etcd-ca`, `front-proxy-ca`).
    pub ca: String,
    /// How long pods get to see a new `kube-root-ca.crt` before the apiservers serve
    /// certificates of the new CA (the kubelet refreshes projected volumes about once a minute).
    pub settle: Duration,
    /// Stop once this stage is reached and placed (tests and careful operators).
    pub until: Option<Stage>,
    /// Service-account key: how long the new key must have signed before the old one is no
    /// longer accepted (pods' tokens signed by the old one are refreshed by their kubelets).
    pub drop_after: Duration,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub ca: String,
    pub before: Option<Stage>,
    pub after: Option<Stage>,
    /// The steps this run took, in order.
    pub steps: Vec<String>,
    pub renewed: Vec<String>,
    /// `host/unit` of every service restarted.
    pub restarted: Vec<String>,
    /// Nodes whose kubelet got a client certificate of the new CA.
    pub kubelet_clients: Vec<String>,
    /// Where the old pair went.
    pub retired: Option<String>,
    pub millis: u128,
}

fn say(run: &engine::Run<'_>, report: &mut Report, what: String) {
    run.printer.phase("rotate-ca", None, &what);
    report.steps.push(what);
}

fn refused(what: String, problems: Vec<String>, hint: &str) -> Error {
    Error::Refused { what, problems, hint: Some(hint.into()) }
}

/// What is rotated, in words.
fn what(id: &str) -> String {
    if id == rotate::SA { "service-account key".into() } else { format!("{} CA", name_of(id)) }
}

/// The command-line name of CA `id`.
pub fn name_of(id: &str) -> &str {
    CAS.iter().find(|(_, i)| *i == id).map(|(n, _)| *n).unwrap_or(id)
}

pub fn rotate(opts: &super::Opts<'_>, cluster: &Cluster, o: &Options, report: &mut Report) -> Result<(), Error> {
    let t0 = Instant::now();
    let id = o.ca.as_str();
    let name = name_of(id);
    let run = opts.run(cluster);
    report.dry_run = run.dry_run;
    report.ca = name.into();
    let st = stage_of(cluster, id)?;
    report.before = Some(st);

    // read-only, before anything changes: every host, etcd healthy, every node Ready
    let all: Vec<&Host> = cluster.hosts.iter().collect();
    let nodes = run.connector(opts.accept_new_host_keys).connect_all(&all)?;
    let with = |r: Role| nodes.iter().filter(|n| n.host.has(r)).cloned().collect::<Vec<_>>();
    let (masters, workers, members) = (with(Role::Master), with(Role::Node), with(Role::Etcd));
    let (_, ep, problems) = super::upgrade::unhealthy(&run, &members, &masters, &workers)?;
    if !problems.is_empty() {
        return Err(refused(
            format!("the cluster is not healthy; a CA rotation starts or resumes only on a healthy cluster (it stands at {}), nothing was changed", st.as_str()),
            problems,
            "see `kbin status`, fix what it shows, then run `kbin pki rotate-ca` again",
        ));
    }
    run.printer.phase("rotate-ca", None, &format!("the {}: {}", what(id), describe(st)));
    if run.dry_run {
        let plan = match st {
            Stage::Settled | Stage::Prepared => "would make a new CA, place old + new wherever the CA is trusted, re-issue every certificate it signs with the new one, then drop the old one from every bundle",
            Stage::Trusted => "would re-issue every certificate the CA signs with the new one, then drop the old one from every bundle",
            Stage::Reissued => "would re-issue what the new CA has not signed yet, then drop the old CA from every bundle",
            Stage::Finishing => "would place the bundles without the old CA, verify every host and retire the old pair",
        };
        run.printer.phase("dry-run", None, &format!("{plan}; each stage placed like `kbin up` (etcd members and masters one at a time); `kbin up --dry-run` shows the files"));
        report.after = Some(st);
        return Ok(());
    }

    let templates = Templates::load(cluster)?;
    let place = |report: &mut Report| -> Result<(), Error> {
        let mut r = super::up::Report::default();
        let inp = super::up::Inputs { run: run.clone(), templates: &templates, etcd_timeout: Duration::from_secs(120), fetch: opts.fetch, relay: opts.relay };
        let res = super::up::run_on(&inp, &nodes, &mut r);
        report.restarted.extend(r.restarted);
        res
    };
    let mut began = false;
    loop {
        let st = stage_of(cluster, id)?;
        report.after = Some(st);
        match st {
            Stage::Settled if began => break,
            Stage::Settled => {
                prepare(cluster, id)?;
                say(&run, report, format!("a new {} made beside the current one", what(id)));
            }
            Stage::Prepared => {
                trust(cluster, id)?;
                if id == "ca" {
                    rotate::refresh_kubeconfigs(cluster)?;
                }
                say(&run, report, format!("1/3 trust: old + new {} in pki/; placing them everywhere it is trusted", what(id)));
            }
            Stage::Trusted => {
                place(report)?;
                if id == "ca" {
                    kubelet_kubeconfigs(&run, &super::api_client(cluster)?, &ep, &workers)?;
                    // a client of pki/ as it is now: the apiservers may serve another CA's certificate than at the start
                    wait_root_ca(&run, &super::api_client(cluster)?, &ep, cluster, &workers, o.settle)?;
                }
                if id == "ca" {
                    restart_addons(&run, &super::api_client(cluster)?, &ep, None, "they trust old + new")?;
                }
                if o.until == Some(Stage::Trusted) {
                    say(&run, report, "stopped with old + new trusted everywhere, as asked (--until trusted); run again without it to go on".into());
                    break;
                }
                switch(cluster, id)?;
                let names = if id == rotate::SA { vec![] } else { rotate::unsigned_leaves(cluster, id)? };
                renew(cluster, id, &names, report)?;
                say(&run, report, format!("2/3 reissue: the new {} signs; {} certificates re-issued; placing them", what(id), names.len()));
            }
            Stage::Reissued => {
                // what a stopped run did not re-issue yet
                let names = if id == rotate::SA { vec![] } else { rotate::unsigned_leaves(cluster, id)? };
                renew(cluster, id, &names, report)?;
                place(report)?;
                if id == "ca" {
                    kubelet_kubeconfigs(&run, &super::api_client(cluster)?, &ep, &workers)?;
                    kubelet_clients(&run, &super::api_client(cluster)?, &ep, &workers, report)?;
                    restart_addons(&run, &super::api_client(cluster)?, &ep, Some("metrics-server"), "it serves its certificate of the new CA")?;
                }
                if o.until == Some(Stage::Reissued) {
                    say(&run, report, "stopped with every certificate of the new CA placed, both trusted, as asked (--until reissued); run again without it to go on".into());
                    break;
                }
                if id == rotate::SA
                    && let Some(at) = rotate::sa_switched_at(cluster)
                {
                    let age = at.elapsed().unwrap_or_default();
                    if age < o.drop_after {
                        let left = o.drop_after - age;
                        say(&run, report, format!(
                            "stopped before dropping the old key: pods may hold tokens it signed until their kubelets refresh them (within 24 h); the new key signs since {} s, --drop-after is {} s: run again in {} s",
                            age.as_secs(), o.drop_after.as_secs(), left.as_secs()
                        ));
                        break;
                    }
                }
                drop_old(cluster, id)?;
                if id == "ca" {
                    rotate::refresh_kubeconfigs(cluster)?;
                }
                say(&run, report, format!("3/3 finish: the old {} leaves every bundle; placing them", what(id)));
            }
            Stage::Finishing => {
                place(report)?;
                if id == "ca" {
                    kubelet_kubeconfigs(&run, &super::api_client(cluster)?, &ep, &workers)?;
                }
                if id == rotate::SA {
                    verify_sa(&run, cluster, &masters)?;
                } else {
                    verify_hosts(&run, cluster, &nodes, id, &templates)?;
                }
                let dir = retire(cluster, id)?;
                say(&run, report, format!("no host holds, trusts or uses the old {}; moved to pki/{dir}", what(id)));
                report.retired = Some(dir);
            }
        }
        began = true;
    }
    report.millis = t0.elapsed().as_millis();
    Ok(())
}

/// The pki step of each stage, for a CA or the service-account key ([`rotate::SA`]).
fn stage_of(cluster: &Cluster, id: &str) -> Result<Stage, Error> {
    Ok(if id == rotate::SA { rotate::sa_stage(cluster)? } else { rotate::stage(cluster, id)? })
}
fn prepare(cluster: &Cluster, id: &str) -> Result<(), Error> {
    if id == rotate::SA { rotate::sa_prepare(cluster)? } else { rotate::prepare(cluster, id)? };
    Ok(())
}
fn trust(cluster: &Cluster, id: &str) -> Result<(), Error> {
    if id == rotate::SA { rotate::sa_trust(cluster)? } else { rotate::trust(cluster, id)? };
    Ok(())
}
fn switch(cluster: &Cluster, id: &str) -> Result<(), Error> {
    if id == rotate::SA { rotate::sa_switch(cluster)? } else { rotate::switch_signer(cluster, id)? };
    Ok(())
}
fn drop_old(cluster: &Cluster, id: &str) -> Result<(), Error> {
    if id == rotate::SA { rotate::sa_drop_old(cluster)? } else { rotate::drop_old(cluster, id)? };
    Ok(())
}
fn retire(cluster: &Cluster, id: &str) -> Result<String, Error> {
    Ok(if id == rotate::SA { rotate::sa_retire(cluster)? } else { rotate::retire(cluster, id)? })
}

fn describe(st: Stage) -> &'static str {
    match st {
        Stage::Settled => "no rotation under way",
        Stage::Prepared => "a rotation is under way: the new CA is made, not yet trusted anywhere (resuming)",
        Stage::Trusted => "a rotation is under way: old + new are trusted, the old CA still signs (resuming)",
        Stage::Reissued => "a rotation is under way: the new CA signs, both are trusted (resuming)",
        Stage::Finishing => "a rotation is under way: the old CA is dropped from the bundles in pki/ (resuming)",
    }
}

fn renew(cluster: &Cluster, id: &str, names: &[String], report: &mut Report) -> Result<(), Error> {
    if !names.is_empty() {
        crate::pki::renew(cluster, names)?;
        report.renewed.extend(names.iter().cloned());
    }
    if id == "ca" {
        rotate::refresh_kubeconfigs(cluster)?;
    }
    Ok(())
}

/// Every namespace's `kube-root-ca.crt` holds the new CA (the controller-manager publishes its
/// root CA file), then every running pod's service-account volume on every node does (the
/// kubelet refreshes projected volumes on its own sync, a minute or more later), read on the
/// nodes themselves; `settle` is the longest kbin waits for the pods.
fn wait_root_ca(run: &engine::Run<'_>, client: &crate::kube::Client, ep: &crate::kube::Endpoint, cluster: &Cluster, workers: &[Node<'_>], settle: Duration) -> Result<(), Error> {
    let files = rotate::files("ca")?;
    let new = std::fs::read_to_string(cluster.pki_dir().join(&files.new_crt)).ok().and_then(|t| rotate::blocks(&t).into_iter().next());
    let Some((new_pem, new)) = new else { return Ok(()) };
    engine::wait_for(run.timeout.max(Duration::from_secs(120)), &run.cancel, || {
        let list = client.get(ep, "/api/v1/configmaps?fieldSelector=metadata.name%3Dkube-root-ca.crt").map_err(|e| crate::kube::chain(&e))?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let stale: Vec<String> = items
            .iter()
            .filter(|cm| !rotate::blocks(cm["data"]["ca.crt"].as_str().unwrap_or("")).iter().any(|(_, d)| *d == new))
            .map(|cm| cm["metadata"]["namespace"].as_str().unwrap_or("?").to_string())
            .collect();
        if items.is_empty() || !stale.is_empty() {
            return Err(format!("kube-root-ca.crt does not hold the new CA yet in: {}", stale.join(", ")));
        }
        Ok(())
    })
    .map_err(|e| Error::other(format!("waiting for the controller-manager to publish the new CA: {e}"), Some("check the kube-controller-manager journal; run `kbin pki rotate-ca` again to resume")))?;
    run.printer.phase("rotate-ca", None, &format!("every namespace's kube-root-ca.crt holds old + new; waiting (up to {} s) until every pod's volume does", settle.as_secs()));
    // the PEM's last full line holds signature bytes: no other certificate has it
    let needle = new_pem.lines().filter(|l| l.len() == 64).last().unwrap_or_default().to_string();
    let t0 = Instant::now();
    engine::wait_for(settle, &run.cancel, || pods_behind(client, ep, workers, &needle).and_then(|stale| if stale.is_empty() { Ok(()) } else { Err(format!("{} pods do not see it yet: {}", stale.len(), stale.join(", "))) }))
        .map_err(|e| Error::other(format!("the pods' kube-root-ca.crt volumes: {e}"), Some("the kubelets refresh them on their own sync (a minute or two); run `kbin pki rotate-ca` again to resume, with a longer --settle")))?;
    run.printer.phase("rotate-ca", None, &format!("every pod's kube-root-ca.crt holds old + new ({} ms)", t0.elapsed().as_millis()));
    Ok(())
}

/// The running pods on `workers` whose service-account volume's `ca.crt` (what in-cluster
/// clients trust) lacks the line `needle`, as `namespace/name`, read on each node.
fn pods_behind(client: &crate::kube::Client, ep: &crate::kube::Endpoint, workers: &[Node<'_>], needle: &str) -> Result<Vec<String>, String> {
    const SCRIPT: &str = r#"needle=$1; shift
for u in "$@"; do
  for f in /var/lib/kubelet/pods/"$u"/volumes/kubernetes.io~projected/kube-api-access-*/ca.crt; do
    [ -e "$f" ] || continue
    grep -qxF -- "$needle" "$f" || echo "$u"
  done
done"#;
    let pods = client.get(ep, "/api/v1/pods?fieldSelector=status.phase%3DRunning").map_err(|e| crate::kube::chain(&e))?;
    let mut stale = Vec::new();
    for n in workers {
        let mine: Vec<(&str, String)> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["spec"]["nodeName"].as_str() == Some(n.host.name.as_str()))
            .filter_map(|p| Some((p["metadata"]["uid"].as_str()?, format!("{}/{}", p["metadata"]["namespace"].as_str()?, p["metadata"]["name"].as_str()?))))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut argv = vec!["sh", "-c", SCRIPT, "kbin-pod-ca", needle];
        argv.extend(mine.iter().map(|(u, _)| *u));
        let out = n.remote.check(&Cmd::new(argv).sudo()).map_err(|e| e.chain())?;
        for u in out.stdout_str().lines() {
            if let Some((_, name)) = mine.iter().find(|(x, _)| *x == u) {
                stale.push(format!("{name} on {}", n.host.name));
            }
        }
    }
    Ok(stale)
}

/// kbin's add-ons (CoreDNS, metrics-server) read the CA of their service-account volume once, at
/// start: restarted once their pods' `kube-root-ca.crt` holds old + new, they trust the new
/// CA's apiserver and kubelet certificates (metrics-server was found refusing them in the lab).
/// metrics-server is restarted once more when its serving certificate was re-issued, so that it
/// serves the new CA's before the old CA leaves the APIService's caBundle (the Secret reaches a
/// running pod only at the kubelet's next sync of it). `only`: just that add-on, if it is on.
/// Each Deployment's pod template gets an annotation (a rollout, as `kubectl rollout restart`
/// does), then kbin waits until each has rolled out and is ready.
fn restart_addons(run: &engine::Run<'_>, client: &crate::kube::Client, ep: &crate::kube::Endpoint, only: Option<&str>, why: &str) -> Result<(), Error> {
    let addons = crate::kube::addons::Addons::of(run.cluster);
    let names: Vec<&str> = addons.enabled().into_iter().filter(|n| only.is_none_or(|o| o == *n)).collect();
    if names.is_empty() {
        return Ok(());
    }
    let stamp = crate::fsutil::utc_stamp();
    for name in &names {
        let obj = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"template": {"metadata": {"annotations": {"kbin.io/ca-trust": stamp}}}},
        });
        client.apply(ep, &obj, "kbin-rotate-ca").map_err(|e| Error::other(format!("restarting the {name} add-on failed: {}", crate::kube::chain(&e)), Some("run the command again to resume")))?;
    }
    engine::wait_for(run.timeout.max(Duration::from_secs(180)), &run.cancel, || {
        let st = crate::kube::addons::status(client, ep, &addons)?;
        let waiting: Vec<String> = st.iter().filter_map(|a| a.problem.as_ref().map(|p| format!("{}: {p}", a.name))).collect();
        if waiting.is_empty() { Ok(()) } else { Err(waiting.join("; ")) }
    })
    .map_err(|e| Error::other(format!("the add-ons did not come back after their restart: {e}"), Some("see `kubectl -n kube-system get pods`; run the command again to resume")))?;
    run.printer.phase("rotate-ca", None, &format!("{} restarted: {why}", names.join(" and ")));
    Ok(())
}

/// Each node's kubelet gets a client certificate of the new CA (its TLS-bootstrapped one was
/// signed by the old), written beside the kubelet's own and switched to by swapping the
/// `kubelet-client-current.pem` link (the kubelet keeps rotating it from there). A node whose
/// kubelet already has one is left alone.
fn kubelet_clients(ctx: &engine::Run<'_>, client: &crate::kube::Client, ep: &crate::kube::Endpoint, workers: &[Node<'_>], report: &mut Report) -> Result<(), Error> {
    let dir = &ctx.cluster.layout.k8s_ssl;
    let target = Target::kubelet_client(dir);
    let signer = crate::pki::onhost::local_cas(ctx.cluster)?;
    let stamp = crate::fsutil::utc_stamp();
    let (ok, bad) = engine::on_each(ctx, ctx.concurrency, workers, "kubelet-client", |_, n| {
        let found = super::certs::read(n, std::slice::from_ref(&target))?;
        let check = crate::pki::onhost::judge(&target, found.get(&target.path).unwrap_or(&crate::pki::onhost::Found::Missing), &signer, time::OffsetDateTime::now_utc(), 0);
        if check.status != crate::pki::onhost::Status::NotSignedByCa && check.status != crate::pki::onhost::Status::Missing {
            ctx.printer.phase("rotate-ca", Some(&n.host.name), "the kubelet's client certificate is already the new CA's");
            return Ok(engine::HostOutcome { host: n.host.name.clone(), part: "kubelet-client".into(), ..Default::default() });
        }
        let pem = crate::pki::rotate::kubelet_client(ctx.cluster, &n.host.name).map_err(|e| engine::HostFailure::new(&n.host.name, "kubelet-client", e.to_string()))?;
        let file = format!("{dir}/kubelet-client-kbin-{stamp}.pem");
        let items = vec![
            Item { secret: true, text: None, ..Item::bytes(&file, &pem, 0o600, &[]) },
            Item::link(&format!("{dir}/{}", crate::pki::onhost::KUBELET_CLIENT), &file, vec!["kubelet".into()]),
        ];
        let before = super::node::Heartbeat::now(client, ep, &n.host.name);
        let spec = Spec { items: &items, units: &["kubelet"], ..Default::default() };
        converge(ctx, n, "kubelet-client", &spec, &|n| super::node::wait_ready(ctx, client, ep, &n.host.name, before.clone()).map(|_| ()))
    });
    if !bad.is_empty() {
        return Err(engine::failed(format!("{} of {} kubelets did not take a client certificate of the new CA", bad.len(), workers.len()), bad, "each was switched back to its previous certificate; fix the cause and run `kbin pki rotate-ca` again"));
    }
    report.kubelet_clients.extend(ok.iter().filter(|o| !o.changed.is_empty()).map(|o| o.host.clone()));
    Ok(())
}

/// The kubelet's own kubeconfig (TLS bootstrapping wrote it with the CA of the bootstrap
/// kubeconfig as it was then; kbin does not place it) trusting `pki/ca.crt` as it is now: each
/// `certificate-authority-data` line rewritten, nothing else; the kubelet restarted and Ready again.
fn kubelet_kubeconfigs(run: &engine::Run<'_>, client: &crate::kube::Client, ep: &crate::kube::Endpoint, workers: &[Node<'_>]) -> Result<(), Error> {
    use base64::Engine as _;
    let ca = std::fs::read_to_string(run.cluster.pki_dir().join("ca.crt")).map_err(|e| Error::other(format!("cannot read pki/ca.crt: {e}"), None))?;
    let data = base64::engine::general_purpose::STANDARD.encode(&ca);
    let path = kubelet_kubeconfig(run.cluster);
    let (_, bad) = engine::on_each(run, run.concurrency, workers, "kubelet-kubeconfig", |_, n| {
        let Some(bytes) = n.remote.read_file(&path)? else {
            return Ok(engine::HostOutcome { host: n.host.name.clone(), part: "kubelet-kubeconfig".into(), ..Default::default() });
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let new = with_ca_data(&text, &data);
        let items = vec![Item::bytes(&path, &new, 0o600, &["kubelet"])];
        let before = super::node::Heartbeat::now(client, ep, &n.host.name);
        let spec = Spec { items: &items, units: &["kubelet"], ..Default::default() };
        converge(run, n, "kubelet-kubeconfig", &spec, &|n| super::node::wait_ready(run, client, ep, &n.host.name, before.clone()).map(|_| ()))
    });
    if !bad.is_empty() {
        return Err(engine::failed(format!("{} of {} kubelets did not come back trusting pki/ca.crt", bad.len(), workers.len()), bad, "each was switched back to its previous kubeconfig; fix the cause and run the command again"));
    }
    Ok(())
}

/// Where the kubelet keeps the kubeconfig TLS bootstrapping writes (`--kubeconfig`).
fn kubelet_kubeconfig(cluster: &Cluster) -> String {
    format!("{}/kubelet.kubeconfig", cluster.layout.k8s_cfg)
}

/// `text` with the value of every `certificate-authority-data:` line replaced by `data`.
pub fn with_ca_data(text: &str, data: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let indent = &body[..body.len() - body.trim_start().len()];
        match body.trim_start().strip_prefix("certificate-authority-data:") {
            Some(_) => out.push_str(&format!("{indent}certificate-authority-data: {data}{}", if line.ends_with('\n') { "\n" } else { "" })),
            None => out.push_str(line),
        }
    }
    out
}

/// Every host read back: nothing kbin placed (nor the kubelet's own certificate) is, trusts or
/// was signed by the old CA.
fn verify_hosts(run: &engine::Run<'_>, cluster: &Cluster, nodes: &[Node<'_>], id: &str, templates: &Templates) -> Result<(), Error> {
    let Some(old) = rotate::old_ca(cluster, id)? else { return Ok(()) };
    let mut left = Vec::new();
    for n in nodes {
        let targets: Vec<Target> = super::certs::targets(cluster, n.host, templates)?;
        let found = super::certs::read(n, &targets).map_err(|e| Error::other(format!("{}: reading its certificates failed: {}", n.host.name, e.chain()), Some("run `kbin pki rotate-ca` again to resume")))?;
        for t in &targets {
            if let Some(f) = found.get(&t.path)
                && crate::pki::onhost::holds(t, f, &old)
            {
                left.push(format!("{}: {} still holds or trusts the old {} CA", n.host.name, t.path, name_of(id)));
            }
        }
    }
    if !left.is_empty() {
        return Err(Error::Failed {
            what: format!("{} files on the hosts still refer to the old CA; it is not retired", left.len()),
            problems: left,
            hint: Some("run `kbin pki rotate-ca` again (it resumes at the last stage); `kbin pki check --hosts` shows each file".into()),
        });
    }
    run.printer.phase("rotate-ca", None, &format!("{} hosts read back: nothing refers to the old CA", nodes.len()));
    Ok(())
}

/// Every master's `sa.pub` holds the new public key alone.
fn verify_sa(run: &engine::Run<'_>, cluster: &Cluster, masters: &[Node<'_>]) -> Result<(), Error> {
    let Some(old) = rotate::sa_old_public(cluster)? else { return Ok(()) };
    let path = format!("{}/sa.pub", cluster.layout.k8s_ssl);
    let mut left = Vec::new();
    for n in masters {
        let out = n.remote.check(&crate::host::Cmd::new(["cat", "--", path.as_str()]).sudo()).map_err(|e| Error::other(format!("{}: reading {path} failed: {}", n.host.name, e.chain()), Some("run the command again to resume")))?;
        let keys = rotate::public_keys(&out.stdout_str());
        if keys.len() != 1 || keys.contains(&old) {
            left.push(format!("{}: {path} holds {} key(s){}", n.host.name, keys.len(), if keys.contains(&old) { ", the old one among them" } else { "" }));
        }
    }
    if !left.is_empty() {
        return Err(Error::Failed { what: "the old service-account key is still accepted".into(), problems: left, hint: Some("run `kbin pki rotate-sa-key` again (it resumes at the last stage)".into()) });
    }
    run.printer.phase("rotate-ca", None, &format!("{} masters read back: only the new service-account key is accepted", masters.len()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_ca_data;

    #[test]
    fn only_the_certificate_authority_data_lines_change() {
        let text = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: T0xE\n    server: https://10.0.0.1:6443\n  name: default-cluster\nusers:\n- name: default-auth\n  user:\n    client-certificate: /opt/kubernetes/ssl/kubelet-client-current.pem\n";
        let out = with_ca_data(text, "TkVX");
        assert_eq!(out, text.replace("T0xE", "TkVX"));
        assert_eq!(with_ca_data("a: b", "X"), "a: b");
    }
}
