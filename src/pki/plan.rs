//! Expand the certificate table against a cluster: which certificates must exist, where, with
//! which subject and SANs.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::profile::{CaRow, CertRow, Per, Profile, SanSource};
use crate::config::Cluster;

/// `<name>.<namespace>` of the metrics-server add-on's Service: its serving certificate names
/// `<this>.svc`, what the aggregation layer checks (manifests/metrics-server.yaml.hbs).
pub const METRICS_SERVER_SERVICE: &str = "metrics-server.kube-system";

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(untagged)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Dns(d) => f.write_str(d),
            San::Ip(i) => write!(f, "{i}"),
        }
    }
}

impl San {
    pub fn parse(s: &str) -> San {
        match s.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(s.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Kind<'p> {
    Ca(&'p CaRow),
    Leaf(&'p CertRow),
}

/// One certificate that must exist.
#[derive(Debug, Clone)]
pub struct Instance<'p> {
    /// Row id (`apiserver`), shared by every host's instance.
    pub id: &'p str,
    pub host: Option<String>,
    /// `apiserver/master1` for per-host rows, the row id otherwise.
    pub name: String,
    /// Path under pki/ without extension.
    pub file: String,
    pub kind: Kind<'p>,
    pub cn: String,
    pub o: Vec<String>,
    /// Expected SANs, sorted and without duplicates.
    pub sans: Vec<San>,
}

impl Instance<'_> {
    pub fn is_ca(&self) -> bool {
        matches!(self.kind, Kind::Ca(_))
    }
    /// Id of the CA that signs this instance (itself for a CA).
    pub fn ca_id(&self) -> &str {
        match &self.kind {
            Kind::Ca(r) => &r.id,
            Kind::Leaf(r) => &r.ca,
        }
    }
    pub fn cert_path(&self) -> String {
        format!("{}.crt", self.file)
    }
    pub fn key_path(&self) -> String {
        format!("{}.key", self.file)
    }
}

fn expected_sans(cluster: &Cluster, row: &CertRow, host: Option<&crate::config::Host>) -> Vec<San> {
    let mut set = BTreeSet::new();
    for src in &row.sans {
        match src {
            SanSource::Host => {
                if let Some(h) = host {
                    set.insert(San::Dns(h.name.clone()));
                    set.insert(San::Ip(h.address));
                }
            }
            SanSource::Endpoint => {
                if let Some(v) = cluster.apiserver.vip {
                    set.insert(San::Ip(v));
                }
                for n in &cluster.apiserver.lb_names {
                    set.insert(San::Dns(n.clone()));
                }
            }
            SanSource::Loopback => {
                set.insert(San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            }
            SanSource::Localhost => {
                set.insert(San::Dns("localhost".into()));
                set.insert(San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
                set.insert(San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
            }
            SanSource::ServiceIp => {
                set.insert(San::Ip(cluster.service_ip()));
            }
            SanSource::KubernetesService => {
                for n in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
                    set.insert(San::Dns(n.into()));
                }
                set.insert(San::Dns(format!("kubernetes.default.svc.{}", cluster.cluster_domain)));
            }
            SanSource::MetricsServerService => {
                set.insert(San::Dns(format!("{METRICS_SERVER_SERVICE}.svc")));
                set.insert(San::Dns(format!("{METRICS_SERVER_SERVICE}.svc.{}", cluster.cluster_domain)));
            }
            SanSource::Extra => {
                for s in &cluster.apiserver.extra_sans {
                    set.insert(San::parse(s));
                }
            }
        }
    }
    set.into_iter().collect()
}

/// Every certificate the cluster needs: CAs first, then leaves in table order.
pub fn plan<'p>(cluster: &Cluster, profile: &'p Profile) -> Vec<Instance<'p>> {
    let mut out = Vec::new();
    for ca in &profile.cas {
        out.push(Instance {
            id: &ca.id,
            host: None,
            name: ca.id.clone(),
            file: ca.file.clone(),
            kind: Kind::Ca(ca),
            cn: ca.cn.clone(),
            o: Vec::new(),
            sans: Vec::new(),
        });
    }
    for row in &profile.certs {
        match row.per.role() {
            None => out.push(Instance {
                id: &row.id,
                host: None,
                name: row.id.clone(),
                file: row.file.clone(),
                kind: Kind::Leaf(row),
                cn: row.cn.clone(),
                o: row.o.clone(),
                sans: expected_sans(cluster, row, None),
            }),
            Some(role) => {
                for h in cluster.hosts_with(role) {
                    let sub = |s: &str| s.replace("{host}", &h.name);
                    out.push(Instance {
                        id: &row.id,
                        host: Some(h.name.clone()),
                        name: format!("{}/{}", row.id, h.name),
                        file: sub(&row.file),
                        kind: Kind::Leaf(row),
                        cn: sub(&row.cn),
                        o: row.o.iter().map(|o| sub(o)).collect(),
                        sans: expected_sans(cluster, row, Some(h)),
                    });
                }
            }
        }
    }
    debug_assert!(out.iter().all(|i| i.per_ok()));
    out
}

impl Instance<'_> {
    fn per_ok(&self) -> bool {
        match &self.kind {
            Kind::Ca(_) => self.host.is_none(),
            Kind::Leaf(r) => (r.per == Per::Cluster) == self.host.is_none(),
        }
    }
}
