//! The LB pair: nginx as an L4 proxy to every apiserver, keepalived holding the VIP.

use serde::Serialize;

use super::Ctx;
use crate::config::{Cluster, Host, Role};
use crate::engine::{self, Bins, Facts, HostOutcome, Probe, Spec, converge};
use crate::error::Error;
use crate::host::{Cmd, Node};
use crate::render::Component;
use crate::kube::{Client, Endpoint};

pub const UNITS: [&str; 2] = ["nginx", "keepalived"];
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

fn nginx_test() -> Cmd {
    Cmd::new(["nginx", "-t", "-q", "-c", "/etc/nginx/nginx.conf"]).sudo()
}

/// What preflight looks at on an LB host.
pub fn probe(cluster: &Cluster, host: &Host) -> Probe {
    Probe::default().ask("cmd", &["nginx", "keepalived"]).ask("path", &[STREAM_MODULE]).ask("iface", &[&host.lb_interface]).ask("unit", &["nginx"]).ports(cluster, Role::Lb)
}

/// Why a host cannot hold the VIP: a pure function of its facts.
pub fn refusal(cluster: &Cluster, host: &Host, f: &Facts) -> Vec<String> {
    let mut problems = Vec::new();
    for p in ["nginx", "keepalived"].into_iter().filter(|p| !f.has("cmd", p)) {
        problems.push(format!("{p} is not installed (install the {p} package)"));
    }
    if !f.has("path", STREAM_MODULE) {
        problems.push(format!("nginx's stream module ({STREAM_MODULE}) is not installed (Debian/Ubuntu: libnginx-mod-stream; RHEL: nginx-mod-stream)"));
    }
    if !f.has("iface", &host.lb_interface) {
        problems.push(format!("no network interface {} for the VIP (set lb.interface or hosts.lb_interface)", host.lb_interface));
    }
    if !f.active("nginx") {
        problems.extend(f.busy_ports(cluster, Role::Lb));
    }
    problems
}

/// The LB hosts holding the VIP right now (`ip -o addr`), by name.
pub fn vip_holders(ctx: &Ctx<'_>, lbs: &[Node<'_>]) -> Vec<String> {
    let Some(vip) = ctx.cluster.apiserver.vip else { return Vec::new() };
    let needle = format!(" {vip}/");
    lbs.iter()
        .filter(|n| n.remote.run(&Cmd::new(["ip", "-o", "addr", "show"])).is_ok_and(|o| o.stdout_str().lines().any(|l| l.contains(&needle))))
        .map(|n| n.host.name.clone())
        .collect()
}

/// The LB host that should hold the VIP when every LB host is healthy: the highest
/// `lb_priority` (keepalived preempts in its favour); `None` on a tie (no clear holder).
pub fn top_priority<'a>(lbs: &'a [Node<'_>]) -> Option<&'a str> {
    let best = lbs.iter().map(|n| n.host.lb_priority).max()?;
    let mut top = lbs.iter().filter(|n| n.host.lb_priority == best);
    match (top.next(), top.next()) {
        (Some(n), None) => Some(n.host.name.as_str()),
        _ => None,
    }
}

/// A TLS handshake with `VIP:port`, made from `via`, that validates the serving certificate
/// against the cluster CA with the VIP as the name; then `GET /healthz`. Returns the status.
pub fn vip_tls_check(client: &Client, cluster: &Cluster, via: &Node<'_>) -> Result<u16, String> {
    let vip = cluster.apiserver.vip.ok_or("no apiserver.vip in the cluster file")?.to_string();
    let ep = Endpoint::through(via.remote.clone(), &vip, cluster.apiserver.port);
    client.healthz(&ep, "/healthz").map(|(st, _)| st).map_err(|e| crate::kube::chain(&e))
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub hosts: Vec<HostOutcome>,
    pub vip: Option<String>,
    pub holder: Option<String>,
    /// `/healthz` through the VIP (the TLS handshake validated the VIP as the name).
    pub healthz: Option<u16>,
}

/// Install or update nginx and keepalived on `lbs`; then check that exactly one holds the VIP
/// and that the VIP answers TLS with a certificate for the VIP.
pub fn deploy(ctx: &Ctx<'_>, lbs: &[Node<'_>]) -> Result<Report, Error> {
    if ctx.cluster.apiserver.vip.is_none() {
        return Err(Error::Refused { what: "no apiserver.vip in the cluster file".into(), problems: vec![], hint: Some("set apiserver.vip to a free address on the LB hosts' network".into()) });
    }
    let c = ctx.cluster;
    engine::preflight(ctx, lbs, "lb", &|n| probe(c, n.host), &|n, f| refusal(c, n.host, f))?;
    converge_all(ctx, lbs)
}

/// nginx and keepalived on every LB host, then the VIP checks. Preflight has run.
pub fn converge_all(ctx: &Ctx<'_>, lbs: &[Node<'_>]) -> Result<Report, Error> {
    let plans = super::plans(ctx, lbs, Component::Lb)?;
    let (ok, bad) = engine::on_each(ctx, ctx.concurrency, lbs, "lb", |i, n| {
        let spec = Spec { items: &plans[i], units: &UNITS, reload: &["nginx"], precheck: Some(("nginx -t", nginx_test())), ..Default::default() };
        converge(ctx, n, "lb", &spec, &|n| engine::wait_for(ctx.timeout, &ctx.cancel, || engine::all_running(n.remote.as_ref(), &UNITS)))
    });
    if !bad.is_empty() {
        return Err(engine::failed(format!("{} of {} LB hosts failed", bad.len(), lbs.len()), bad, "fix the cause (see the journal lines) and run `kbin lb deploy` again"));
    }
    let mut report = Report { hosts: ok, vip: ctx.cluster.apiserver.vip.map(|v| v.to_string()), ..Default::default() };
    if ctx.dry_run {
        return Ok(report);
    }
    // exactly one holder, the highest priority once VRRP settles: a BACKUP whose keepalived came
    // up first holds the VIP until the MASTER's preempts it (a few advertisement intervals)
    let top = top_priority(lbs);
    let mut holders = Vec::new();
    let settled = engine::wait_for(ctx.timeout, &ctx.cancel, || {
        holders = vip_holders(ctx, lbs);
        match holders.as_slice() {
            [one] if top.is_none() || Some(one.as_str()) == top => Ok(()),
            [one] => Err(format!("{one} holds the VIP, {} (the highest priority) has not taken it yet", top.unwrap_or("-"))),
            _ => Err(format!("{} LB hosts hold the VIP ({})", holders.len(), holders.join(", "))),
        }
    });
    if let Err(e) = settled {
        if holders.len() != 1 {
            return Err(Error::Failed { what: "the VIP has no single holder".into(), problems: vec![format!("[verify] {e}")], hint: Some("check that VRRP (protocol 112, multicast or lb.unicast) passes between the LB hosts and that lb.virtual_router_id is unique on the network".into()) });
        }
        ctx.printer.phase("lb", Some(&holders[0]), &format!("warning: {e}"));
    }
    let holder = holders.remove(0);
    ctx.printer.phase("lb", Some(&holder), &format!("holds the VIP {}", report.vip.as_deref().unwrap_or_default()));
    let client = super::api_client(ctx.cluster)?;
    let via = lbs.iter().find(|n| n.host.name == holder).expect("a holder is an LB host");
    let mut status = 0;
    let tls_ok = engine::wait_for(ctx.timeout, &ctx.cancel, || {
        status = vip_tls_check(&client, ctx.cluster, via)?;
        if status == 200 { Ok(()) } else { Err(format!("/healthz through the VIP answered {status}")) }
    });
    match tls_ok {
        Ok(()) => ctx.printer.phase("lb", None, &format!("TLS to {}:{} verified (certificate names the VIP), /healthz ok", report.vip.as_deref().unwrap_or_default(), ctx.cluster.apiserver.port)),
        Err(e) => {
            return Err(Error::Failed {
                what: "the VIP does not answer TLS with a valid apiserver certificate".into(),
                problems: vec![format!("[verify] {holder}: {e}")],
                hint: Some("check that the masters run (`kbin status`) and that their apiserver certificates carry the VIP (`kbin pki check`)".into()),
            });
        }
    }
    report.holder = Some(holder);
    report.healthz = Some(status);
    Ok(report)
}

/// After the masters changed: give every LB host whose nginx runs the current upstreams,
/// checked with `nginx -t` and applied with a reload (open connections stay).
pub fn update_upstreams(ctx: &Ctx<'_>, lbs: &[Node<'_>]) -> Result<Vec<HostOutcome>, Error> {
    let mut plans = super::plans(ctx, lbs, Component::Lb)?;
    plans.iter_mut().for_each(|p| p.retain(|i| i.path == "/etc/nginx/nginx.conf"));
    let (ok, bad) = engine::on_each(ctx, ctx.concurrency, lbs, "lb", |i, n| {
        if !engine::active_units(n.remote.as_ref(), &["nginx"])?["nginx"] {
            ctx.printer.phase("lb", Some(&n.host.name), "nginx is not running here yet; `kbin lb deploy` sets it up");
            return Ok(HostOutcome { host: n.host.name.clone(), part: "lb".into(), ..Default::default() });
        }
        let spec = Spec { items: &plans[i], units: &["nginx"], reload: &["nginx"], precheck: Some(("nginx -t", nginx_test())), ..Default::default() };
        converge(ctx, n, "lb", &spec, &|n| engine::all_running(n.remote.as_ref(), &["nginx"]).map_err(|_| "nginx stopped after the reload".into()))
    });
    if !bad.is_empty() {
        return Err(engine::failed(
            format!("the masters are up, but updating the upstreams of {} LB hosts failed", bad.len()),
            bad,
            "run `kbin lb deploy` once the cause is fixed",
        ));
    }
    Ok(ok)
}

/// `kbin lb deploy`: connect to every LB host of the cluster file, then [`deploy`].
pub fn deploy_all(opts: &super::Opts<'_>, cluster: &Cluster) -> Result<Report, Error> {
    let run = opts.run(cluster);
    let templates = crate::render::Templates::load(cluster)?;
    let lbs = run.connector(opts.accept_new_host_keys).connect_all(&hosts(cluster))?;
    if lbs.is_empty() {
        return Err(Error::Refused { what: format!("no host has the lb role in {}", cluster.file.display()), problems: vec![], hint: Some("add two hosts with roles = [\"lb\"] and set apiserver.vip".into()) });
    }
    deploy(&Ctx { run, templates: &templates, bins: &Bins::default() }, &lbs)
}

pub fn hosts(cluster: &Cluster) -> Vec<&Host> {
    cluster.hosts_with(Role::Lb).collect()
}
