//! `kbin status`: per host and per component, what is really running.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Cluster, Host, Role};
use crate::host::parallel::{self, Cancel, Outcome};
use crate::engine::Probe;
use crate::host::{Cmd, Node};

/// One host as `status` sees it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostStatus {
    pub name: String,
    pub address: String,
    pub roles: Vec<String>,
    pub reachable: bool,
    pub error: Option<String>,
    /// `systemctl is-active` of each service the host's roles run.
    pub units: BTreeMap<String, String>,
    /// First line of `<binary> --version` of each installed release binary.
    pub versions: BTreeMap<String, String>,
    /// Days left of each certificate as found on the host (`pki check --hosts`), by name
    /// (`apiserver`, `kubelet-client-current`, ...); when the host cannot be read, of its own
    /// certificates in the local pki (apiserver, kubelet, etcd-server).
    pub cert_days_left: BTreeMap<String, i64>,
    /// What `pki check --hosts` flags on this host.
    pub cert_problems: Vec<String>,
    /// The cgroup hierarchy the host runs (`v1`, `v2`), as the kubelet will see it.
    pub cgroup: Option<crate::host::check::Cgroup>,
    /// Why the kubelet of the cluster's release will not start here (cgroup v1 from 1.35 on).
    pub cgroup_problem: Option<String>,
    /// For LB hosts: holds the VIP now.
    pub holds_vip: Option<bool>,
    /// For masters: `/readyz` of its apiserver through the SSH connection.
    pub apiserver_ready: Option<bool>,
}

/// The services a host's roles run, in start order.
pub fn units_of(cluster: &Cluster, h: &Host) -> Vec<&'static str> {
    let mut u = Vec::new();
    if h.has(Role::Etcd) {
        u.push("etcd");
    }
    if h.has(Role::Master) {
        u.extend(super::master::UNITS);
    }
    if h.has(Role::Node) {
        u.extend(crate::config::node_units(cluster));
    }
    if h.has(Role::Lb) {
        u.extend(super::lb::UNITS);
    }
    u
}

fn cert_days(cluster: &Cluster, h: &Host) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (id, role) in [("apiserver", Role::Master), ("kubelet", Role::Node), ("etcd-server", Role::Etcd)] {
        if h.has(role) {
            let path = cluster.pki_dir().join(format!("hosts/{}/{id}.crt", h.name));
            if let Ok(i) = crate::pki::read_cert_info(id, "", &path) {
                out.insert(id.to_string(), i.days_left);
            }
        }
    }
    out
}

/// Probe every host (in parallel): units, binary versions, VIP, apiserver readiness.
pub fn hosts<'c>(cluster: &'c Cluster, conns: &[(&'c Host, Result<Node<'c>, String>)], client: &crate::kube::Client, concurrency: usize, cancel: &Cancel) -> Vec<HostStatus> {
    let vip_needle = cluster.apiserver.vip.map(|v| format!(" {v}/"));
    let certs = super::certs::Prepared::new(cluster).ok();
    let results = parallel::for_each(conns, |(h, _)| h.name.clone(), "status", concurrency, cancel, |(h, n)| {
        let mut s = HostStatus {
            name: h.name.clone(),
            address: h.address.to_string(),
            roles: h.roles.iter().map(|r| r.as_str().to_string()).collect(),
            reachable: n.is_ok(),
            error: n.as_ref().err().cloned(),
            cert_days_left: cert_days(cluster, h),
            ..Default::default()
        };
        let Ok(n) = n else { return Ok(s) };
        if let Some(c) = certs.as_ref().map(|p| p.host(h, Ok(n), super::certs::WARN_DAYS)) {
            if c.error.is_none() {
                s.cert_days_left = c.days_left();
            }
            s.cert_problems = super::certs::problems_of(&c).iter().map(|p| format!("{}{}", p.path.as_ref().map(|x| format!("{x}: ")).unwrap_or_default(), p.message)).collect();
        }
        let mut seen = std::collections::BTreeSet::new();
        let bins: Vec<String> = crate::render::binaries(cluster, h).into_iter().filter(|b| !["ctr", "containerd-shim-runc-v2", "etcdctl"].contains(&b.name.as_str()) && b.component != "cni-plugins" && b.component != "flannel-cni-plugin").map(|b| b.path).filter(|p| seen.insert(p.clone())).collect();
        let f = crate::engine::facts::gather(n, &Probe::default().ask("unit", &units_of(cluster, h)).ask("bin", &bins))?;
        s.cgroup = f.cgroup;
        if h.has(Role::Node) {
            s.cgroup_problem = f.cgroup_refusal(cluster, &cluster.kubernetes_version);
        }
        (s.units, s.versions) = (f.units, f.versions);
        if h.has(Role::Lb) {
            if let Some(needle) = &vip_needle {
                let o = n.remote.run(&Cmd::new(["ip", "-o", "addr", "show"]))?;
                s.holds_vip = Some(o.stdout_str().lines().any(|l| l.contains(needle.as_str())));
            }
        }
        if h.has(Role::Master) {
            s.apiserver_ready = Some(super::master::apiserver_ready(client, cluster, n).is_ok());
        }
        Ok(s)
    });
    results
        .into_iter()
        .filter_map(|r| match r.outcome {
            Outcome::Done(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// What `kbin status` reports.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub cluster: String,
    pub endpoint: String,
    pub hosts: Vec<HostStatus>,
    pub etcd: Vec<super::etcd::MemberReport>,
    pub nodes: Vec<crate::kube::nodes::NodeStatus>,
    /// The apiserver that answered the node list.
    pub apiserver: Option<String>,
    /// The add-ons the cluster file turns on, as the apiserver reports them.
    pub addons: Vec<crate::kube::addons::AddonStatus>,
    pub vip: VipStatus,
    pub problems: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct VipStatus {
    pub address: Option<String>,
    pub holders: Vec<String>,
    /// `/healthz` through the VIP, the certificate verified for the VIP's name.
    pub healthz: Option<u16>,
    pub error: Option<String>,
}

/// Everything `kbin status` shows, with the list of what is not as it should be. Unreachable
/// hosts are reported, not fatal.
pub fn report(run: &crate::engine::Run<'_>, accept_new_host_keys: bool) -> Result<StatusReport, crate::error::Error> {
    let cluster = run.cluster;
    let all: Vec<&Host> = cluster.hosts.iter().collect();
    let conns: Vec<(&Host, Result<Node<'_>, String>)> = run.connector(accept_new_host_keys).connect(&all).into_iter().map(|(h, r)| (h, r.map_err(|e| e.chain()))).collect();
    let conns = &conns;
    let client = super::api_client(cluster)?;
    let hosts = hosts(cluster, conns, &client, run.concurrency, &run.cancel);
    let etcd_ctx = super::etcd::Ctx::new(run.clone())?;
    let etcd_conns = conns.iter().filter(|(h, _)| h.has(Role::Etcd)).map(|(h, r)| (*h, r.clone())).collect();
    let etcd = super::etcd::status(&etcd_ctx, etcd_conns);
    // nodes, through the first master whose apiserver is ready
    let mut nodes = Vec::new();
    let mut addons = Vec::new();
    let mut apiserver = None;
    let mut problems = Vec::new();
    let ready_master = conns.iter().filter(|(h, _)| h.has(Role::Master)).find_map(|(h, r)| r.as_ref().ok().filter(|_| hosts.iter().any(|s| s.name == h.name && s.apiserver_ready == Some(true))));
    match ready_master {
        Some(m) => {
            let ep = crate::kube::masters::endpoint(cluster, m);
            match client.nodes(&ep) {
                Ok(n) => {
                    nodes = n;
                    apiserver = Some(m.host.name.clone());
                }
                Err(e) => problems.push(format!("nodes: {}", crate::kube::chain(&e))),
            }
            if cluster.hosts_with(Role::Node).next().is_some() {
                match crate::kube::addons::status(&client, &ep, &crate::kube::addons::Addons::of(cluster)) {
                    Ok(a) => addons = a,
                    Err(e) => problems.push(format!("add-ons: {e}")),
                }
            }
        }
        None => problems.push("no master's apiserver is ready".into()),
    }
    for a in &addons {
        if let Some(p) = &a.problem {
            problems.push(format!("add-on {}: {p}", a.name));
        }
    }
    let mut vip = VipStatus { address: cluster.apiserver.vip.map(|v| v.to_string()), ..Default::default() };
    vip.holders = hosts.iter().filter(|h| h.holds_vip == Some(true)).map(|h| h.name.clone()).collect();
    if let Some(holder) = vip.holders.first().and_then(|name| conns.iter().find(|(h, _)| &h.name == name)).and_then(|(_, r)| r.as_ref().ok()) {
        match super::lb::vip_tls_check(&client, cluster, holder) {
            Ok(st) => vip.healthz = Some(st),
            Err(e) => vip.error = Some(e),
        }
    }
    // what is not as it should be
    for h in &hosts {
        if let Some(e) = &h.error {
            problems.push(format!("{}: unreachable: {e}", h.name));
        }
        for (u, s) in &h.units {
            if s != "active" {
                problems.push(format!("{}: {u} is {s}", h.name));
            }
        }
        problems.extend(h.cert_problems.iter().map(|p| format!("{}: {p}", h.name)));
        problems.extend(h.cgroup_problem.iter().map(|p| format!("{}: {p}", h.name)));
        if h.apiserver_ready == Some(false) {
            problems.push(format!("{}: kube-apiserver is not ready", h.name));
        }
    }
    for m in etcd.iter().filter(|m| !m.healthy) {
        problems.push(format!("{}: etcd member not healthy{}", m.name, m.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()));
    }
    for h in cluster.hosts_with(Role::Node) {
        match nodes.iter().find(|n| n.name == h.name) {
            Some(n) if n.ready == Some(true) => {}
            Some(n) => problems.push(format!("{}: node not Ready ({})", h.name, n.ready_reason.clone().unwrap_or_default())),
            None if apiserver.is_some() => problems.push(format!("{}: not registered as a node", h.name)),
            None => {}
        }
    }
    if cluster.hosts_with(Role::Lb).next().is_some() {
        if vip.holders.len() != 1 {
            problems.push(format!("{} LB hosts hold the VIP ({})", vip.holders.len(), vip.holders.join(", ")));
        } else if vip.healthz != Some(200) {
            problems.push(format!("the VIP does not answer /healthz with a valid certificate: {}", vip.error.clone().unwrap_or_else(|| format!("HTTP {}", vip.healthz.unwrap_or(0)))));
        }
    }
    Ok(StatusReport { cluster: cluster.name.clone(), endpoint: cluster.endpoint_url(), hosts, etcd, nodes, apiserver, addons, vip, problems })
}
