//! Masters: kube-apiserver, kube-controller-manager and kube-scheduler, then the LB upstreams.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use super::Ctx;
use crate::config::{Cluster, Host, Role};
use crate::engine::{self, Facts, HostFailure, HostOutcome, Probe, Spec, converge};
use crate::error::Error;
use crate::host::parallel::{self, Outcome};
use crate::host::{Cmd, Node};
use crate::kube::Client;
use crate::render::Component;

pub const UNITS: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// The controller-manager and scheduler run, and keep running, next to a ready apiserver. Each
/// holding a leader lease exits when its apiserver restarts (it cannot renew the lease: that is
/// how leader election is meant to fail) and systemd starts it again after `RestartSec`; so wait
/// until both are active, then make sure neither restarts over the next seconds (a crash loop is
/// active for an instant between restarts).
pub fn control_plane_settled(timeout: std::time::Duration, cancel: &crate::host::parallel::Cancel, n: &Node<'_>) -> Result<(), String> {
    let units = &UNITS[1..];
    let restarts = || -> Result<String, String> {
        let mut argv = vec!["systemctl", "show", "-p", "NRestarts", "--value", "--"];
        argv.extend_from_slice(units);
        n.remote.run(&Cmd::new(argv)).map(|o| o.stdout_str().trim().to_string()).map_err(|e| e.chain())
    };
    // running, and not restarted for SETTLE: a controller-manager that lost its lease while its
    // apiserver restarted exits once, maybe a few seconds after the apiserver is back, and is
    // waited for; one that keeps restarting never gets a quiet SETTLE within `timeout`
    engine::wait_for(timeout, cancel, || {
        engine::all_running(n.remote.as_ref(), units)?;
        let before = restarts()?;
        std::thread::sleep(SETTLE);
        engine::all_running(n.remote.as_ref(), units).map_err(|e| format!("{e} (it keeps restarting)"))?;
        if restarts()? != before {
            return Err(format!("{} keep restarting", units.join(" or ")));
        }
        Ok(())
    })
}

/// How long the controller-manager and scheduler must stay up to count as running.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(3);

/// `/healthz` and `/readyz` of the apiserver of `node` both answer 200 (through its SSH
/// connection; the serving certificate is verified against the cluster CA for the host's address).
pub fn apiserver_ready(client: &Client, cluster: &Cluster, node: &Node<'_>) -> Result<(), String> {
    let ep = crate::kube::masters::endpoint(cluster, node);
    for path in ["/healthz", "/readyz"] {
        match client.healthz(&ep, path) {
            Ok((200, _)) => {}
            Ok((st, body)) => return Err(format!("kube-apiserver {path} answered {st}: {body}")),
            Err(e) => return Err(crate::kube::chain(&e)),
        }
    }
    Ok(())
}

/// The apiserver of `node` runs the release it is switched to (`/version`): a switched release
/// that did not take is a failed verification.
pub fn apiserver_version(client: &Client, cluster: &Cluster, node: &Node<'_>) -> Result<(), String> {
    let Some(want) = super::release_of(cluster, node, "kube-apiserver")? else { return Ok(()) };
    let ep = crate::kube::masters::endpoint(cluster, node);
    let v = client.get(&ep, "/version").map_err(|e| crate::kube::chain(&e))?;
    let got = v.get("gitVersion").and_then(serde_json::Value::as_str).unwrap_or("no gitVersion");
    if got == want { Ok(()) } else { Err(format!("kube-apiserver reports {got}, not {want} (the release it is switched to)")) }
}

/// What preflight looks at on a master.
pub fn probe(cluster: &Cluster) -> Probe {
    Probe::default().ask("unit", &UNITS).ports(cluster, Role::Master)
}

/// Why a host cannot become a master: a pure function of its facts.
pub fn refusal(cluster: &Cluster, f: &Facts) -> Vec<String> {
    let mut problems: Vec<String> = f.wrong_arch(cluster).into_iter().collect();
    if !UNITS.iter().any(|u| f.active(u)) {
        problems.extend(f.busy_ports(cluster, Role::Master));
    }
    problems
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub masters: Vec<HostOutcome>,
    /// LB hosts whose nginx upstreams changed.
    pub lb: Vec<HostOutcome>,
}

/// Preflight on `masters`, then [`rollout`].
pub fn deploy(ctx: &Ctx<'_>, masters: &[Node<'_>], lbs: &[Node<'_>]) -> Result<Report, Error> {
    let c = ctx.cluster;
    engine::preflight(ctx, masters, "master", &|_| probe(c), &|_, f| refusal(c, f))?;
    rollout(ctx, masters, lbs)
}

/// Install or update the control plane on `masters` (one after the other), wait until each apiserver
/// answers `/healthz` and `/readyz` through its SSH connection, then put every master into the
/// upstreams of the LB hosts whose nginx runs (reloaded, connections kept). Preflight has run.
pub fn rollout(ctx: &Ctx<'_>, masters: &[Node<'_>], lbs: &[Node<'_>]) -> Result<Report, Error> {
    let client = super::api_client(ctx.cluster)?;
    let plans = super::plans(ctx, masters, Component::Master)?;
    let logs = ctx.cluster.layout.k8s_logs.clone();
    // read-only first, every master at once: which ones have anything to do
    let idx: Vec<usize> = (0..masters.len()).collect();
    let results = parallel::for_each(&idx, |i| masters[*i].host.name.clone(), "master", ctx.concurrency, &ctx.cancel, |i| engine::needs_change(&masters[*i], &plans[*i], &UNITS, &ctx.known));
    let mut report = Report::default();
    let mut todo = Vec::new();
    let mut unreadable = Vec::new();
    for ((r, n), i) in results.into_iter().zip(masters).zip(0..) {
        match r.outcome {
            Outcome::Done(false) => {
                ctx.printer.phase("master", Some(&n.host.name), "up to date, nothing sent");
                report.masters.push(HostOutcome { host: n.host.name.clone(), part: "master".into(), dry_run: ctx.dry_run, ..Default::default() });
            }
            Outcome::Done(true) => todo.push((i, n.clone())),
            Outcome::Failed(e) => unreadable.push(HostFailure { phase: "facts".into(), ..HostFailure::from(e) }),
            Outcome::Skipped => return Err(Error::Interrupted { what: "stopped before any master was changed".into() }),
        }
    }
    if !unreadable.is_empty() {
        return Err(engine::failed(format!("cannot read the state of {} masters; nothing was changed", unreadable.len()), unreadable, "check the SSH access to those masters"));
    }
    // then one master at a time: a change that restarts apiservers never takes them all down at
    // once, and a master that does not come back stops the rollout before the next one
    let stop = AtomicBool::new(false);
    let (plan_of, todo): (Vec<usize>, Vec<Node<'_>>) = todo.into_iter().unzip();
    let (ok, bad) = engine::on_each(ctx, 1, &todo, "master", |t, n| {
        if stop.load(Ordering::SeqCst) {
            return Err(HostFailure::new(&n.host.name, "skipped", "not touched: an earlier master failed"));
        }
        let i = plan_of[t];
        if !ctx.dry_run {
            n.remote.check(&Cmd::new(["mkdir", "-p", logs.as_str()]).sudo())?;
        }
        let spec = Spec { items: &plans[i], units: &UNITS, ..Default::default() };
        // out of the LB upstreams while it restarts (nginx proxies TCP and cannot tell an
        // apiserver going down): clients through the VIP meet the other masters only
        let drained = !ctx.dry_run && masters.len() > 1 && !lbs.is_empty() && drain_from_lb(ctx, lbs, n.host);
        let r = converge(ctx, n, "master", &spec, &|n| {
            engine::wait_for(ctx.timeout, &ctx.cancel, || apiserver_ready(&client, ctx.cluster, n))?;
            apiserver_version(&client, ctx.cluster, n)?;
            control_plane_settled(ctx.timeout, &ctx.cancel, n)
        });
        if drained && let Err(e) = super::lb::update_upstreams(ctx, lbs) {
            ctx.printer.warn(&format!("{}: back into the LB upstreams failed: {e}", n.host.name), Some("run `kbin lb deploy`"));
        }
        r
        .inspect(|o| {
            if !o.dry_run && (!o.started.is_empty() || !o.restarted.is_empty()) {
                ctx.printer.phase("master", Some(&o.host), "kube-apiserver /healthz and /readyz ok");
            }
        })
        .inspect_err(|_| stop.store(true, Ordering::SeqCst))
    });
    if !bad.is_empty() {
        return Err(engine::failed(
            format!("{} of {} masters failed; the LB upstreams were not changed", bad.len(), masters.len()),
            bad,
            "fix the cause (see the journal lines) and run the command again; hosts that finished are not sent anything again",
        ));
    }
    report.masters.extend(ok);
    report.lb = super::lb::update_upstreams(ctx, lbs)?;
    Ok(report)
}

/// Take `host` out of the upstreams of the LB hosts whose nginx runs (`nginx -t`, a reload that
/// keeps open connections); whether it was.
fn drain_from_lb(ctx: &Ctx<'_>, lbs: &[Node<'_>], host: &Host) -> bool {
    let mut without = ctx.cluster.clone();
    if let Some(h) = without.hosts.iter_mut().find(|h| h.name == host.name) {
        h.roles.retain(|r| *r != Role::Master);
    }
    let run = engine::Run { cluster: &without, ..ctx.run.clone() };
    let quiet = engine::Run { printer: crate::output::Printer { quiet: true, ..run.printer }, ..run };
    match super::lb::update_upstreams(&Ctx { run: quiet, templates: ctx.templates, bins: ctx.bins }, lbs) {
        Ok(o) => {
            let changed = o.iter().any(|x| !x.changed.is_empty());
            if changed {
                ctx.printer.phase("master", Some(&host.name), "out of the LB upstreams while it restarts");
            }
            changed
        }
        Err(e) => {
            ctx.printer.warn(&format!("{}: cannot take it out of the LB upstreams: {e}", host.name), Some("it restarts behind the VIP; clients may see a few errors"));
            false
        }
    }
}

/// `kbin master add HOST`: adopt HOST into the cluster file if it is a new address, issue its
/// certificates, then [`deploy`] it and give the LB hosts the new upstream.
pub fn add(opts: &super::Opts<'_>, cluster: Cluster, spec: &str, name: Option<&str>) -> Result<Report, Error> {
    let (cluster, name) = super::adopt::resolve_or_add(&opts.run(&cluster), cluster.clone(), spec, name, Role::Master, opts.accept_new_host_keys)?;
    let run = opts.run(&cluster);
    super::adopt::ensure_pki_for_add(&run, &cluster)?;
    let templates = crate::render::Templates::load(&cluster)?;
    let c = run.connector(opts.accept_new_host_keys);
    let target = c.connect_all(&[cluster.host(&name).expect("resolved")])?;
    let lbs = c.connect_all(&super::lb::hosts(&cluster))?;
    let bins = (opts.fetch)(&cluster, &[Component::Master])?;
    deploy(&Ctx { run, templates: &templates, bins: &bins }, &target, &lbs)
}

/// The masters of the cluster file, in file order.
pub fn hosts(cluster: &Cluster) -> Vec<&Host> {
    cluster.hosts_with(Role::Master).collect()
}
