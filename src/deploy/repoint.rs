//! `kbin repoint-nodes`: move every node's kubelet, kube-proxy (and flanneld) from the apiserver
//! address they use now (usually the first master's) to the VIP, safely.
//!
//! Preflight runs on every node and master before anything changes and refuses the run with the
//! full list of problems: the target must answer TLS *from every node* with a certificate valid
//! for the target's name, every master's serving certificate must carry that name, every node
//! must be Ready now, and each node's kubeconfigs must point at the current endpoint (or already
//! at the target). Then nodes move in batches: the `server:` of the clusters that pointed at the
//! old endpoint is changed by parsing each kubeconfig (never by text substitution), the files are
//! replaced atomically with backups, the services restart, and kbin waits for the node to be
//! Ready with a heartbeat newer than the restart. A node that does not come back gets its old
//! files back, restarts on them and must be Ready again; the rollout stops there.

use std::time::Instant;

use serde::Serialize;
use serde_yaml_ng::Value;

use crate::config::{Cluster, Role, url_for};
use crate::engine::{self, HostFailure, HostOutcome, Rollback, Run, Tx};
use crate::error::Error;
use crate::host::{Cmd, HostError, Node, Source, WriteOpts};
use crate::kube::{Client, Endpoint};

/// Where the nodes should talk to the apiservers.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn url(&self) -> String {
        url_for(&self.host, self.port)
    }
    /// `HOST:PORT`, `HOST` (port from the cluster file), or `https://HOST[:PORT]`.
    pub fn parse(s: &str, default_port: u16) -> Result<Target, String> {
        let rest = s.strip_prefix("https://").unwrap_or(s).trim_end_matches('/');
        if rest.contains('/') {
            return Err(format!("{s:?} is not HOST[:PORT]"));
        }
        let (host, port) = crate::kube::split_host_port(rest, default_port).map_err(|m| format!("{s:?}: {m}"))?;
        Ok(Target { host, port })
    }
}

/// The service that reads a kubeconfig of the common layouts, by file name; `None` for files
/// that are not a node's (the control plane's own kubeconfigs are left alone).
pub fn unit_for(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.contains("bootstrap") || name.contains("kubelet") {
        Some("kubelet")
    } else if name.contains("proxy") {
        Some("kube-proxy")
    } else if name.contains("flannel") {
        Some("flanneld")
    } else {
        None
    }
}

/// One `server:` change inside a kubeconfig.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub cluster: String,
    pub from: String,
    pub to: String,
}

/// A kubeconfig rewritten: only the `server:` of the clusters `is_old` says so changes. `None`
/// when nothing points at an old server. `Err` names a cluster whose server is neither old nor
/// the target (kbin does not move what it does not know).
pub fn rewrite(text: &str, is_old: &dyn Fn(&str) -> bool, target: &str) -> Result<(Option<String>, Vec<Change>, bool), String> {
    let mut doc: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not a kubeconfig: {e}"))?;
    let clusters = doc.get_mut("clusters").and_then(Value::as_sequence_mut).ok_or("no clusters list")?;
    let mut changes = Vec::new();
    let mut at_target = false;
    for c in clusters.iter_mut() {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("?").to_string();
        let Some(server) = c.get_mut("cluster").and_then(|x| x.get_mut("server")) else { return Err(format!("cluster {name:?} has no server")) };
        let s = server.as_str().unwrap_or_default().trim_end_matches('/').to_string();
        if s == target {
            at_target = true;
        } else if is_old(&s) {
            *server = Value::String(target.to_string());
            changes.push(Change { cluster: name, from: s, to: target.to_string() });
        } else {
            return Err(format!("cluster {name:?} points at {s}, which is neither the current endpoint nor a master"));
        }
    }
    if changes.is_empty() {
        return Ok((None, changes, at_target));
    }
    let out = serde_yaml_ng::to_string(&doc).map_err(|e| format!("cannot write the kubeconfig back: {e}"))?;
    Ok((Some(out), changes, at_target))
}

/// A kubeconfig on a node and what repointing does to it.
#[derive(Debug, Clone, Serialize)]
pub struct FilePlan {
    pub path: String,
    pub unit: String,
    pub changes: Vec<Change>,
    pub mode: u32,
    #[serde(skip)]
    pub new_text: Option<String>,
}

/// One node's plan.
#[derive(Debug, Clone, Serialize)]
pub struct NodePlan {
    pub node: String,
    pub files: Vec<FilePlan>,
}

impl NodePlan {
    pub fn needs_change(&self) -> bool {
        self.files.iter().any(|f| !f.changes.is_empty())
    }
    fn units(&self) -> Vec<String> {
        let mut u: Vec<String> = Vec::new();
        for name in ["kubelet", "kube-proxy", "flanneld"] {
            if self.files.iter().any(|f| !f.changes.is_empty() && f.unit == name) {
                u.push(name.to_string());
            }
        }
        u
    }
}

const LIST: &str = r#"for f in "$1"/*.kubeconfig; do [ -f "$f" ] && echo "$(stat -c %a "$f") $f"; done; true"#;

/// Read a node's kubeconfigs and plan their rewrite.
pub fn plan_node(cluster: &Cluster, node: &Node<'_>, target: &Target, is_old: &dyn Fn(&str) -> bool) -> Result<Result<NodePlan, Vec<String>>, HostError> {
    let out = node.remote.check(&Cmd::new(["sh", "-c", LIST, "kbin-list", cluster.layout.k8s_cfg.as_str()]).sudo())?;
    let mut plan = NodePlan { node: node.host.name.clone(), files: Vec::new() };
    let mut problems = Vec::new();
    for line in out.stdout_str().lines() {
        let Some((mode, path)) = line.split_once(' ') else { continue };
        let Some(unit) = unit_for(path) else { continue };
        let Some(bytes) = node.remote.read_file(path)? else { continue };
        match rewrite(&String::from_utf8_lossy(&bytes), is_old, &target.url()) {
            Ok((new_text, changes, _)) => plan.files.push(FilePlan { path: path.to_string(), unit: unit.to_string(), changes, mode: u32::from_str_radix(mode, 8).unwrap_or(0o600), new_text }),
            Err(e) => problems.push(format!("{path}: {e}")),
        }
    }
    if !plan.files.iter().any(|f| f.unit == "kubelet") {
        problems.push(format!("no kubelet kubeconfig (kubelet.kubeconfig or bootstrap.kubeconfig) in {}", cluster.layout.k8s_cfg));
    }
    Ok(if problems.is_empty() { Ok(plan) } else { Err(problems) })
}

/// The report of a run.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub target: String,
    pub dry_run: bool,
    /// Nodes whose kubeconfigs now point at the target (this run).
    pub moved: Vec<String>,
    /// Nodes that pointed at the target already.
    pub already: Vec<String>,
    /// Nodes that failed and got their previous files back.
    pub rolled_back: Vec<RolledBack>,
    /// Nodes the run did not get to (after a failure).
    pub untouched: Vec<String>,
    pub plans: Vec<NodePlan>,
    /// The cluster file's endpoint and the local kubeconfigs were updated.
    pub recorded: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    pub node: String,
    pub error: String,
    /// Ready again on the old endpoint after the rollback.
    pub ready_again: bool,
}

/// Check everything before any node is touched; returns the plans of the nodes.
pub fn preflight(ctx: &Run<'_>, client: &Client, target: &Target, nodes: &[Node<'_>], masters: &[Node<'_>], api: &Endpoint) -> Result<Vec<NodePlan>, Error> {
    let cluster = ctx.cluster;
    let current = cluster.endpoint_url();
    let master_urls: Vec<String> = cluster.hosts_with(Role::Master).map(|h| url_for(&h.address.to_string(), cluster.apiserver.port)).collect();
    let target_url = target.url();
    let is_old = move |s: &str| s != target_url && (s == current || master_urls.iter().any(|m| m == s));
    let mut problems = Vec::new();
    // masters: the certificate each serves must be valid for the target's name (all of them
    // when the target balances over them; only that one when the target is a master's address)
    let own = masters.iter().filter(|m| m.host.address.to_string() == target.host).collect::<Vec<_>>();
    let checked: Vec<&Node<'_>> = if own.is_empty() { masters.iter().collect() } else { own };
    for m in checked {
        let mut ep = crate::kube::masters::endpoint(cluster, m);
        ep.server_name = target.host.clone();
        if let Err(e) = client.healthz(&ep, "/healthz") {
            problems.push(HostFailure::new(&m.host.name, "preflight", format!("its apiserver certificate is not valid for {}: {}", target.host, crate::kube::chain(&e))));
        }
    }
    let gather = |n: &Node<'_>| -> Result<(NodePlan, Vec<String>), HostError> {
        let mut p = Vec::new();
        // TLS from the node itself (the tunnel's TCP connection starts on the node)
        let ep = Endpoint::through(n.remote.clone(), &target.host, target.port);
        match client.healthz(&ep, "/healthz") {
            Ok((200, _)) => {}
            Ok((st, body)) => p.push(format!("{} answers /healthz with {st}: {body}", target.url())),
            Err(e) => p.push(format!("cannot reach {} with a valid certificate from here: {}", target.url(), crate::kube::chain(&e))),
        }
        match client.get_opt(api, &format!("/api/v1/nodes/{}", n.host.name)) {
            Ok(Some(v)) => match crate::kube::nodes::node_status(&v) {
                Ok(s) if s.ready == Some(true) => {}
                Ok(s) => p.push(format!("the node is not Ready now ({}); fix it first, or leave it out with --nodes", s.ready_reason.unwrap_or_default())),
                Err(e) => p.push(e),
            },
            Ok(None) => p.push("not registered as a node with the apiserver".into()),
            Err(e) => p.push(format!("cannot ask the apiserver about this node: {}", crate::kube::chain(&e))),
        }
        match plan_node(cluster, n, target, &is_old)? {
            Ok(plan) => Ok((plan, p)),
            Err(more) => Ok((NodePlan { node: n.host.name.clone(), files: vec![] }, p.into_iter().chain(more).collect())),
        }
    };
    let (gathered, more) = engine::phase::gather_all(ctx, nodes, &gather, &|_, (_, p)| p.clone())?;
    problems.extend(more);
    if !problems.is_empty() {
        let lacking: Vec<String> = masters.iter().filter(|m| problems.iter().any(|p| p.host == m.host.name && p.error.starts_with("its apiserver certificate"))).map(|m| format!("apiserver/{}", m.host.name)).collect();
        let hint = if lacking.is_empty() {
            "fix what is listed (network, firewall, the node), then run this again; nothing was changed".to_string()
        } else {
            format!("put {} into apiserver.vip or apiserver.extra_sans, run `kbin pki renew {}` and `kbin up` (or `kbin master add` per master) to give the masters certificates that name it, then run this again", target.host, lacking.join(" "))
        };
        return Err(Error::Hosts { what: format!("preflight refused moving the nodes to {}; no node was touched", target.url()), hosts: problems, hint: Some(hint), refused: true });
    }
    let plans: Vec<NodePlan> = gathered.into_iter().map(|(p, _)| p).collect();
    for p in &plans {
        let n = p.files.iter().filter(|f| !f.changes.is_empty()).count();
        let msg = if n == 0 { format!("ok, already on {}", target.url()) } else { format!("ok, {n} kubeconfigs to move ({})", p.units().join(", ")) };
        ctx.printer.phase("preflight", Some(&p.node), &msg);
    }
    Ok(plans)
}

/// Move one node inside a transaction: write, restart, wait; on failure the transaction puts
/// the kubeconfigs back and restarts the services on them, and the node must be Ready again.
fn move_node(ctx: &Run<'_>, client: &Client, api: &Endpoint, node: &Node<'_>, plan: &NodePlan) -> Result<HostOutcome, HostFailure> {
    let name = node.host.name.clone();
    let before = super::node::Heartbeat::Lease(client.lease_renew_time(api, &name).ok().flatten());
    let mut tx = Tx::new(node.remote.clone(), &ctx.cluster.layout.units);
    let mut sent = 0;
    for f in plan.files.iter().filter(|f| !f.changes.is_empty()) {
        let text = f.new_text.as_ref().expect("a changed file has its new text");
        sent += tx.write(&f.path, &Source::bytes(text.clone().into_bytes()), WriteOpts::mode(f.mode))?.bytes_sent;
    }
    let units = plan.units();
    let verify = |before: super::node::Heartbeat| -> Result<(), String> {
        super::node::wait_ready(ctx, client, api, &name, before)?;
        if units.iter().any(|u| u == "kube-proxy") {
            engine::wait_for(ctx.timeout, &ctx.cancel, || match super::node::local_http_status(node, 10256, "/healthz")? {
                200 => Ok(()),
                st => Err(format!("kube-proxy /healthz answered {st}")),
            })?;
        }
        engine::all_running(node.remote.as_ref(), &units.iter().map(String::as_str).collect::<Vec<_>>())
    };
    ctx.printer.phase("repoint", Some(&name), &format!("kubeconfigs point at the target now; restarting {}", units.join(", ")));
    let t0 = Instant::now();
    let mut restart = || -> Result<(), String> {
        for u in &units {
            tx.restarted(u, "restart");
            engine::systemctl(node, &["restart", u]).map_err(|e| format!("{u}: {}", e.chain()))?;
        }
        Ok(())
    };
    match restart().and_then(|()| verify(before)) {
        Ok(()) => {
            tx.commit();
            ctx.printer.phase("repoint", Some(&name), &format!("Ready with a fresh heartbeat through the target ({} ms)", t0.elapsed().as_millis()));
            Ok(HostOutcome { host: name, part: "repoint".into(), changed: plan.files.iter().filter(|f| !f.changes.is_empty()).map(|f| f.path.clone()).collect(), bytes_sent: sent, restarted: units, ..Default::default() })
        }
        Err(error) => {
            let journal: Vec<String> = units.iter().flat_map(|u| engine::journal_tail(node, u, 6)).collect();
            ctx.printer.phase("rollback", Some(&name), "did not come back through the target: restoring its kubeconfigs");
            let before = super::node::Heartbeat::Lease(client.lease_renew_time(api, &name).ok().flatten());
            let rollback = match tx.rollback() {
                Rollback::Done { .. } => match verify(before) {
                    Ok(()) => Rollback::Done { what: "previous kubeconfigs restored; Ready again on the old endpoint".into() },
                    Err(e) => Rollback::Incomplete { what: "previous kubeconfigs restored".into(), error: format!("the node is not Ready again: {e}") },
                },
                r => r,
            };
            Err(HostFailure { journal, rollback, ..HostFailure::new(&name, "verify", error) })
        }
    }
}

/// The rollout over `nodes` (preflight first), `batch` at a time.
pub fn run(ctx: &Run<'_>, target: &Target, nodes: &[Node<'_>], masters: &[Node<'_>], batch: usize) -> Result<Report, Error> {
    let client = super::api_client(ctx.cluster)?;
    let api = crate::kube::masters::ready_master(ctx.cluster, &client, masters.iter().map(|n| (n.host, Ok(n.clone()))).collect(), &ctx.printer)?;
    let plans = preflight(ctx, &client, target, nodes, masters, &api)?;
    let mut report = Report { target: target.url(), dry_run: ctx.dry_run, ..Default::default() };
    let (todo, done): (Vec<&NodePlan>, Vec<&NodePlan>) = plans.iter().partition(|p| p.needs_change());
    report.already = done.iter().map(|p| p.node.clone()).collect();
    if ctx.dry_run {
        for p in &todo {
            for f in p.files.iter().filter(|f| !f.changes.is_empty()) {
                for c in &f.changes {
                    ctx.printer.phase("dry-run", Some(&p.node), &format!("{}: cluster {:?} server {} -> {} (restarts {})", f.path, c.cluster, c.from, c.to, f.unit));
                }
            }
        }
        ctx.printer.phase("dry-run", None, &format!("{} nodes would move to {}, {} at a time; {} already there", todo.len(), target.url(), batch, report.already.len()));
        report.plans = plans.clone();
        report.untouched = todo.iter().map(|p| p.node.clone()).collect();
        return Ok(report);
    }
    let mut failures: Vec<HostFailure> = Vec::new();
    for (i, chunk) in todo.chunks(batch.max(1)).enumerate() {
        if ctx.cancel.is_cancelled() {
            report.untouched.extend(todo[i * batch.max(1)..].iter().map(|p| p.node.clone()));
            break;
        }
        let chunk_nodes: Vec<Node<'_>> = chunk.iter().map(|p| nodes.iter().find(|n| n.host.name == p.node).expect("planned from these").clone()).collect();
        let (ok, bad) = engine::on_each(ctx, ctx.concurrency, &chunk_nodes, "repoint", |i, n| move_node(ctx, &client, &api, n, chunk[i]));
        report.moved.extend(ok.into_iter().map(|o| o.host));
        if !bad.is_empty() {
            report.rolled_back.extend(bad.iter().map(|f| RolledBack { node: f.host.clone(), error: f.error.clone(), ready_again: f.rollback.is_done() }));
            failures = bad;
            report.untouched.extend(todo[(i + 1) * batch.max(1)..].iter().map(|p| p.node.clone()));
            break;
        }
    }
    report.plans = plans.clone();
    if !failures.is_empty() {
        let mut problems: Vec<String> = failures.iter().flat_map(|f| f.lines()).collect();
        problems.push(format!("moved: {}", list(&report.moved)));
        problems.push(format!("rolled back: {}", list(&report.rolled_back.iter().map(|r| r.node.clone()).collect::<Vec<_>>())));
        problems.push(format!("not touched: {}", list(&report.untouched)));
        return Err(Error::Failed {
            what: format!("the rollout to {} stopped: {} did not come back through it", target.url(), report.rolled_back.iter().map(|r| r.node.as_str()).collect::<Vec<_>>().join(", ")),
            problems,
            hint: Some("fix the cause (can that node reach the target? see the journal lines), then run the same command again: it continues with the nodes not moved yet".into()),
        });
    }
    Ok(report)
}

fn list(v: &[String]) -> String {
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

/// `kbin repoint-nodes`: the target (`endpoint`, else the VIP), the nodes (`only`, else every
/// node), connect, [`run`], and after a complete rollout of every node, [`record`].
pub fn repoint_nodes(opts: &super::Opts<'_>, cluster: &Cluster, endpoint: Option<&str>, only: &[String], batch: usize) -> Result<Report, Error> {
    let target = match endpoint {
        Some(e) => Target::parse(e, cluster.apiserver.port).map_err(|m| Error::other(format!("--endpoint: {m}"), Some("write HOST or HOST:PORT, e.g. --endpoint k8s-api.example.com:6443")))?,
        None => match cluster.apiserver.vip {
            Some(v) => Target { host: v.to_string(), port: cluster.apiserver.port },
            None => return Err(Error::Refused { what: format!("--vip: {} sets no apiserver.vip", cluster.file.display()), problems: vec![], hint: Some("set apiserver.vip (and deploy the LB pair with `kbin lb deploy`), or give --endpoint HOST[:PORT]".into()) }),
        },
    };
    let mut hosts = Vec::new();
    for spec in only {
        match cluster.host(spec) {
            Some(h) if h.has(Role::Node) => hosts.push(h),
            Some(h) => return Err(Error::other(format!("--nodes: {} does not have the node role", h.name), Some("list hosts with the node role"))),
            None => return Err(Error::other(format!("--nodes: no host {spec:?} in {}", cluster.file.display()), Some("use host names or addresses from the cluster file"))),
        }
    }
    if only.is_empty() {
        hosts = super::node::hosts(cluster);
    }
    let run = opts.run(cluster);
    let connector = run.connector(opts.accept_new_host_keys);
    let nodes = connector.connect_all(&hosts)?;
    let masters = connector.connect_all(&super::master::hosts(cluster))?;
    let mut report = self::run(&run, &target, &nodes, &masters, batch)?;
    if !run.dry_run {
        let p = run.printer;
        p.phase("repoint", None, &format!("{} nodes moved to {}, {} were there already", report.moved.len(), target.url(), report.already.len()));
        if only.is_empty() {
            for c in record(cluster, &target)? {
                p.phase("repoint", None, &format!("updated {c}"));
            }
            report.recorded = true;
        } else {
            p.phase("repoint", None, "only some nodes were asked for: the cluster file's endpoint and the local kubeconfigs stay as they are");
        }
    }
    Ok(report)
}

/// After a complete rollout: record the target as the cluster's endpoint (cluster file) and
/// point the local kubeconfigs (admin and the ones kbin pushes) at it.
pub fn record(cluster: &Cluster, target: &Target) -> Result<Vec<String>, Error> {
    let mut changed = Vec::new();
    let current = cluster.endpoint_url();
    let masters: Vec<String> = cluster.hosts_with(Role::Master).map(|h| url_for(&h.address.to_string(), cluster.apiserver.port)).collect();
    let target_url = target.url();
    let is_old = |s: &str| s != target_url && (s == current || masters.iter().any(|m| m == s));
    let dir = cluster.pki_dir().join("kubeconfigs");
    let mut entries: Vec<_> = std::fs::read_dir(&dir).map_err(|e| Error::other(format!("cannot read {}: {e}", dir.display()), None))?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for path in entries.into_iter().filter(|p| p.extension().is_some_and(|x| x == "kubeconfig")) {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::other(format!("cannot read {}: {e}", path.display()), None))?;
        if let Ok((Some(new), _, _)) = rewrite(&text, &is_old, &target_url) {
            crate::fsutil::write_atomic(&path, new.as_bytes(), 0o600).map_err(|e| Error::other(format!("cannot write {}: {e}", path.display()), None))?;
            changed.push(path.display().to_string());
        }
    }
    if target.port == cluster.apiserver.port && cluster.apiserver.endpoint.as_deref() != Some(target.host.as_str()) {
        let text = std::fs::read_to_string(&cluster.file).map_err(|e| Error::other(format!("cannot read {}: {e}", cluster.file.display()), None))?;
        let new_text = crate::config::edit::with_endpoint(&cluster.file, &text, &target.host)?;
        crate::config::edit::replace(cluster, &new_text)?;
        changed.push(format!("{} (apiserver.endpoint = {:?})", cluster.file.display(), target.host));
    }
    Ok(changed)
}
