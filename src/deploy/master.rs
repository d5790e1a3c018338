//! Masters: kube-apiserver, kube-controller-manager and kube-scheduler, then the LB upstreams.

use serde::Serialize;

use super::{Ctx, HostFailure, HostOutcome, Spec, converge, items};
use crate::config::Role;
use crate::error::Error;
use crate::host::parallel::{self, Outcome};
use crate::host::{Cmd, HostError, Node};
use crate::render::Component;
use crate::kube::Client;

pub const UNITS: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// `/healthz` and `/readyz` of the apiserver of `node` both answer 200 (through its SSH
/// connection; the serving certificate is verified against the cluster CA for the host's address).
/// The controller-manager and scheduler run, and keep running, next to a ready apiserver. Each
/// holding a leader lease exits when its apiserver restarts (it cannot renew the lease: that is
/// how leader election is meant to fail) and systemd starts it again after `RestartSec`; so wait
/// until both are active, then make sure neither restarts over the next seconds (a crash loop is
/// active for an instant between restarts).
pub fn control_plane_settled(ctx: &Ctx<'_>, n: &Node<'_>) -> Result<(), String> {
    let units = &UNITS[1..];
    let down = |n: &Node<'_>| -> Result<Vec<String>, String> {
        let active = super::active_units(n.remote.as_ref(), units).map_err(|e| e.chain())?;
        Ok(active.into_iter().filter(|(_, a)| !*a).map(|(u, _)| u).collect())
    };
    super::wait_for(ctx.timeout, &ctx.cancel, || match down(n)? {
        d if d.is_empty() => Ok(()),
        d => Err(format!("{} not running", d.join(" and "))),
    })?;
    let restarts = |n: &Node<'_>| -> Result<String, String> {
        let mut argv = vec!["systemctl", "show", "-p", "NRestarts", "--value", "--"];
        argv.extend_from_slice(units);
        n.remote.run(&Cmd::new(argv)).map(|o| o.stdout_str().trim().to_string()).map_err(|e| e.chain())
    };
    let before = restarts(n)?;
    std::thread::sleep(SETTLE);
    let d = down(n)?;
    if !d.is_empty() || restarts(n)? != before {
        return Err(format!("{} keep restarting", if d.is_empty() { units.join(" or ") } else { d.join(" and ") }));
    }
    Ok(())
}

/// How long the controller-manager and scheduler must stay up to count as running.
#[cfg(not(test))]
const SETTLE: std::time::Duration = std::time::Duration::from_secs(3);
#[cfg(test)]
const SETTLE: std::time::Duration = std::time::Duration::from_millis(10);

pub fn apiserver_ready(client: &Client, cluster: &crate::config::Cluster, node: &Node<'_>) -> Result<(), String> {
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

/// Facts that decide whether a host can become a master.
fn refusal(ctx: &Ctx<'_>, node: &Node<'_>) -> Result<Vec<String>, HostError> {
    let script = r#"
echo "arch=$(uname -m)"
for u in kube-apiserver kube-controller-manager kube-scheduler; do echo "active $u=$(systemctl is-active $u 2>/dev/null || true)"; done
for p in "$@"; do
  if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then echo "busy=$p"; fi
done
"#;
    let port = ctx.cluster.apiserver.port.to_string();
    let out = node.remote.check(&Cmd::new(["sh", "-c", script, "kbin-facts", port.as_str(), "10257", "10259"]).sudo())?;
    let mut problems = Vec::new();
    let mut running = 0;
    let mut busy = Vec::new();
    for line in out.stdout_str().lines() {
        match line.split_once('=') {
            Some(("arch", a)) if a.trim() != super::uname_arch(ctx.cluster) => {
                problems.push(format!("architecture is {a}, but the cluster installs {} binaries (artifacts.arch)", ctx.cluster.artifacts.arch.as_str()))
            }
            Some((k, "active")) if k.starts_with("active ") => running += 1,
            Some(("busy", p)) => busy.push(p.trim().to_string()),
            _ => {}
        }
    }
    if running == 0 {
        for p in busy {
            problems.push(format!("port {p} is already in use by another program"));
        }
    }
    Ok(problems)
}

/// Refuse (nothing changed) unless every host can take its part.
pub fn preflight(ctx: &Ctx<'_>, nodes: &[Node<'_>], what: &str, check: impl Fn(&Ctx<'_>, &Node<'_>) -> Result<Vec<String>, HostError> + Sync) -> Result<(), Error> {
    let results = parallel::for_each(nodes, |n| n.host.name.clone(), "preflight", ctx.concurrency, &ctx.cancel, |n| check(ctx, n));
    let mut problems = Vec::new();
    for (r, n) in results.into_iter().zip(nodes) {
        match r.outcome {
            Outcome::Done(p) => problems.extend(p.into_iter().map(|p| format!("[preflight] {}: {p}", n.host.name))),
            Outcome::Failed(e) => problems.push(format!("[preflight] {}: {}", n.host.name, e.chain())),
            Outcome::Skipped => return Err(Error::Interrupted { what: "stopped during preflight; nothing was changed".into() }),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Refused {
            what: format!("preflight refused the {what} run; nothing was changed"),
            problems,
            hint: Some("fix the hosts listed above (or the cluster file) and run the command again".into()),
        });
    }
    Ok(())
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub masters: Vec<HostOutcome>,
    /// LB hosts whose nginx upstreams changed.
    pub lb: Vec<HostOutcome>,
}

/// Run `f` on every node in parallel; collect outcomes, or the failures.
pub fn on_each<'c>(ctx: &Ctx<'_>, nodes: &[Node<'c>], phase: &str, f: impl Fn(&Node<'c>) -> Result<HostOutcome, HostFailure> + Sync) -> (Vec<HostOutcome>, Vec<HostFailure>) {
    on_each_at(ctx, ctx.concurrency, nodes, phase, f)
}

/// [`on_each`] with `concurrency` hosts at a time.
pub fn on_each_at<'c>(ctx: &Ctx<'_>, concurrency: usize, nodes: &[Node<'c>], phase: &str, f: impl Fn(&Node<'c>) -> Result<HostOutcome, HostFailure> + Sync) -> (Vec<HostOutcome>, Vec<HostFailure>) {
    let results = parallel::for_each(nodes, |n| n.host.name.clone(), phase, concurrency, &ctx.cancel, |n| Ok(f(n)));
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (r, n) in results.into_iter().zip(nodes) {
        match r.outcome {
            Outcome::Done(Ok(o)) => ok.push(o),
            Outcome::Done(Err(f)) => bad.push(f),
            Outcome::Failed(e) => bad.push(e.into()),
            Outcome::Skipped => bad.push(HostFailure { host: n.host.name.clone(), phase: "skipped", message: "not started (interrupted)".into(), journal: vec![], rollback: None }),
        }
    }
    (ok, bad)
}

/// Install or update the control plane on `masters` (one after the other), wait until each apiserver
/// answers `/healthz` and `/readyz` through its SSH connection, then put every master into the
/// upstreams of the LB hosts whose nginx runs (reloaded, connections kept).
pub fn deploy(ctx: &Ctx<'_>, masters: &[Node<'_>], lbs: &[Node<'_>]) -> Result<Report, Error> {
    preflight(ctx, masters, "master", refusal)?;
    let client = super::api_client(ctx.cluster)?;
    let mut plans = Vec::new();
    for n in masters {
        plans.push(items(ctx, n.host, Component::Master)?);
    }
    let logs = ctx.cluster.layout.k8s_logs.clone();
    // read-only first, every master at once: which ones have anything to do
    let results = parallel::for_each(masters, |n| n.host.name.clone(), "master", ctx.concurrency, &ctx.cancel, |n| {
        let i = masters.iter().position(|m| m.host.name == n.host.name).expect("one of them");
        super::needs_change(n, &plans[i], &UNITS)
    });
    let mut report = Report::default();
    let mut todo = Vec::new();
    let mut unreadable = Vec::new();
    for (r, n) in results.into_iter().zip(masters) {
        match r.outcome {
            Outcome::Done(false) => {
                ctx.printer.phase("master", Some(&n.host.name), "up to date, nothing sent");
                report.masters.push(HostOutcome { host: n.host.name.clone(), part: "master".into(), dry_run: ctx.dry_run, ..Default::default() });
            }
            Outcome::Done(true) => todo.push(n.clone()),
            Outcome::Failed(e) => unreadable.push(HostFailure::from(e)),
            Outcome::Skipped => return Err(Error::Interrupted { what: "stopped before any master was changed".into() }),
        }
    }
    if !unreadable.is_empty() {
        return Err(super::failed(format!("cannot read the state of {} masters; nothing was changed", unreadable.len()), &unreadable, "check the SSH access to those masters"));
    }
    // then one master at a time: a change that restarts apiservers never takes them all down at
    // once, and a master that does not come back stops the rollout before the next one
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, bad) = on_each_at(ctx, 1, &todo, "master", |n| {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(HostFailure { host: n.host.name.clone(), phase: "skipped", message: "not touched: an earlier master failed".into(), journal: vec![], rollback: None });
        }
        let i = masters.iter().position(|m| m.host.name == n.host.name).expect("one of them");
        if !ctx.dry_run {
            n.remote.check(&Cmd::new(["mkdir", "-p", logs.as_str()]).sudo())?;
        }
        let spec = Spec { items: &plans[i], units: &UNITS, reload: &[], precheck: None };
        converge(ctx, n, "master", &spec, &|n| {
            super::wait_for(ctx.timeout, &ctx.cancel, || apiserver_ready(&client, ctx.cluster, n))?;
            control_plane_settled(ctx, n)
        })
        .inspect(|o| {
            if !o.dry_run && (!o.started.is_empty() || !o.restarted.is_empty()) {
                ctx.printer.phase("master", Some(&o.host), "kube-apiserver /healthz and /readyz ok");
            }
        })
        .inspect_err(|_| stop.store(true, std::sync::atomic::Ordering::SeqCst))
    });
    if !bad.is_empty() {
        return Err(super::failed(
            format!("{} of {} masters failed; the LB upstreams were not changed", bad.len(), masters.len()),
            &bad,
            "fix the cause (see the journal lines) and run the command again; hosts that finished are not sent anything again",
        ));
    }
    report.masters.extend(ok);
    report.lb = super::lb::update_upstreams(ctx, lbs)?;
    Ok(report)
}

/// The masters of the cluster file, in file order.
pub fn hosts(cluster: &crate::config::Cluster) -> Vec<&crate::config::Host> {
    cluster.hosts_with(Role::Master).collect()
}
