//! `kbin status`: per host and per component, what is really running.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Cluster, Host, Role};
use crate::host::parallel::{self, Cancel, Outcome};
use crate::host::{Cmd, Node};

/// One host as `status` sees it.
#[derive(Debug, Clone, Serialize)]
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
    /// Days left of the host's own certificates in the local pki (apiserver, kubelet, etcd).
    pub cert_days_left: BTreeMap<String, i64>,
    /// For LB hosts: holds the VIP now.
    pub holds_vip: Option<bool>,
    /// For masters: `/readyz` of its apiserver through the SSH connection.
    pub apiserver_ready: Option<bool>,
}

/// The services a host's roles run, in start order.
pub fn units_of(h: &Host) -> Vec<&'static str> {
    let mut u = Vec::new();
    if h.has(Role::Etcd) {
        u.push("etcd");
    }
    if h.has(Role::Master) {
        u.extend(super::master::UNITS);
    }
    if h.has(Role::Node) {
        u.extend(super::node::UNITS);
    }
    if h.has(Role::Lb) {
        u.extend(super::lb::UNITS);
    }
    u
}

/// Prints `unit state` lines, then `version <name> <first line of --version>` per binary.
const PROBE: &str = r#"
n=$1; shift
i=0
for a in "$@"; do
  i=$((i + 1))
  if [ $i -le "$n" ]; then echo "unit $a $(systemctl is-active "$a" 2>/dev/null || true)"; continue; fi
  if [ -x "$a" ]; then echo "version ${a##*/} $("$a" --version 2>/dev/null | head -n 1)"; fi
done
"#;

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
    let results = parallel::for_each(conns, |(h, _)| h.name.clone(), "status", concurrency, cancel, |(h, n)| {
        let mut s = HostStatus {
            name: h.name.clone(),
            address: h.address.to_string(),
            roles: h.roles.iter().map(|r| r.as_str().to_string()).collect(),
            reachable: n.is_ok(),
            error: n.as_ref().err().cloned(),
            units: BTreeMap::new(),
            versions: BTreeMap::new(),
            cert_days_left: cert_days(cluster, h),
            holds_vip: None,
            apiserver_ready: None,
        };
        let Ok(n) = n else { return Ok(s) };
        let units = units_of(h);
        let count = units.len().to_string();
        let mut argv: Vec<String> = vec!["sh".into(), "-c".into(), PROBE.into(), "kbin-status".into(), count];
        argv.extend(units.iter().map(|u| u.to_string()));
        let mut seen = std::collections::BTreeSet::new();
        argv.extend(crate::render::binaries(cluster, h).into_iter().filter(|b| !["ctr", "containerd-shim-runc-v2", "etcdctl"].contains(&b.name.as_str()) && b.component != "cni-plugins" && b.component != "flannel-cni-plugin").map(|b| b.path).filter(|p| seen.insert(p.clone())));
        let out = n.remote.run(&Cmd::new(argv))?;
        for line in out.stdout_str().lines() {
            let mut parts = line.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("unit"), Some(u), Some(state)) => {
                    s.units.insert(u.to_string(), state.trim().to_string());
                }
                (Some("version"), Some(b), Some(v)) if !v.trim().is_empty() => {
                    s.versions.insert(b.to_string(), v.trim().to_string());
                }
                _ => {}
            }
        }
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
