//! The add-ons kbin applies once nodes are Ready (CoreDNS, metrics-server): what their manifests
//! need from the cluster file, and whether they run (for `up`'s wait and `status`).

use serde::Serialize;
use serde_json::Value;

use super::{Client, Endpoint};
use crate::config::Cluster;

/// The add-ons the cluster file turns on, with what their manifests need.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Addons {
    pub coredns: Option<CoreDns>,
    pub metrics_server: Option<MetricsServer>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CoreDns {
    /// The Service's cluster IP: the kubelets' `clusterDNS`.
    pub ip: String,
    pub domain: String,
    pub image: String,
    pub replicas: u32,
    /// How many nodes its spread waits for (`minDomains`): the replicas, or fewer when the
    /// cluster file names fewer nodes. The add-ons are applied before the nodes come up, so
    /// without it the scheduler would put both replicas on the first node Ready.
    pub min_domains: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricsServer {
    pub image: String,
    /// Its port on the node's network (not the kubelet's 10250).
    pub port: u16,
}

impl Addons {
    pub fn of(cluster: &Cluster) -> Addons {
        let w = &cluster.workloads;
        let replicas = 2;
        let nodes = cluster.hosts.iter().filter(|h| h.has(crate::config::Role::Node)).count() as u32;
        Addons {
            coredns: w.addons.coredns.then(|| CoreDns { ip: cluster.cluster_dns.to_string(), domain: cluster.cluster_domain.clone(), image: w.coredns_image(), replicas, min_domains: replicas.min(nodes).max(1) }),
            metrics_server: w.addons.metrics_server.then(|| MetricsServer { image: w.metrics_server_image(), port: METRICS_SERVER_PORT }),
        }
    }
}

/// metrics-server's port on the host network.
pub const METRICS_SERVER_PORT: u16 = 4443;

/// One add-on as the apiserver reports it.
#[derive(Debug, Clone, Serialize)]
pub struct AddonStatus {
    pub name: String,
    /// `namespace/name` of its Deployment.
    pub deployment: String,
    pub replicas: u64,
    pub ready: u64,
    /// Nodes its ready pods run on.
    pub nodes: Vec<String>,
    /// For an aggregated API: its APIService's Available condition.
    pub api_available: Option<bool>,
    /// What is not right yet (empty when it runs as asked).
    pub problem: Option<String>,
}

/// (name, namespace, deployment, APIService) of each add-on.
const KNOWN: [(&str, &str, &str, Option<&str>); 2] = [("coredns", "kube-system", "coredns", None), ("metrics-server", "kube-system", "metrics-server", Some("v1beta1.metrics.k8s.io"))];

impl Addons {
    /// The names of the add-ons turned on.
    pub fn enabled(&self) -> Vec<&'static str> {
        KNOWN.iter().map(|k| k.0).filter(|n| (*n == "coredns" && self.coredns.is_some()) || (*n == "metrics-server" && self.metrics_server.is_some())).collect()
    }
}

/// Ready replicas of a Deployment object, against what it asks for: the rollout of its current
/// generation done and every replica ready.
pub fn deployment_progress(d: &Value) -> (u64, u64, Option<String>) {
    let want = d["spec"]["replicas"].as_u64().unwrap_or(1);
    let st = &d["status"];
    let ready = st["readyReplicas"].as_u64().unwrap_or(0);
    let updated = st["updatedReplicas"].as_u64().unwrap_or(0);
    let current = st["observedGeneration"].as_u64() >= d["metadata"]["generation"].as_u64();
    let problem = if !current {
        Some("its controller has not seen the latest spec yet".to_string())
    } else if updated < want {
        Some(format!("{updated}/{want} replicas updated"))
    } else if ready < want {
        Some(format!("{ready}/{want} replicas ready"))
    } else {
        None
    };
    (want, ready, problem)
}

/// Whether an object's `status.conditions` has `kind` True, with the reason when it does not.
pub fn condition(o: &Value, kind: &str) -> Result<(), String> {
    let c = o["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == kind));
    match c {
        Some(c) if c["status"] == "True" => Ok(()),
        Some(c) => Err(format!("{kind} is {} ({}: {})", c["status"].as_str().unwrap_or("?"), c["reason"].as_str().unwrap_or("?"), c["message"].as_str().unwrap_or(""))),
        None => Err(format!("no {kind} condition yet")),
    }
}

/// The status of each add-on the cluster file turns on, read through `ep`.
pub fn status(client: &Client, ep: &Endpoint, addons: &Addons) -> Result<Vec<AddonStatus>, String> {
    let mut out = Vec::new();
    for (name, ns, deploy, api) in KNOWN.iter().filter(|k| addons.enabled().contains(&k.0)) {
        let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/{deploy}");
        let d = client.get_opt(ep, &path).map_err(|e| super::chain(&e))?;
        let (replicas, ready, mut problem) = match &d {
            Some(d) => deployment_progress(d),
            None => (0, 0, Some("its Deployment does not exist (not applied yet?)".into())),
        };
        let selector = d.as_ref().and_then(|d| d["spec"]["selector"]["matchLabels"].as_object()).map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")).unwrap_or_default();
        let mut nodes = Vec::new();
        if !selector.is_empty() {
            let pods = client.get(ep, &format!("/api/v1/namespaces/{ns}/pods?labelSelector={selector}")).map_err(|e| super::chain(&e))?;
            for p in pods["items"].as_array().into_iter().flatten() {
                if condition(p, "Ready").is_ok() {
                    nodes.extend(p["spec"]["nodeName"].as_str().map(str::to_string));
                } else if problem.is_some() {
                    let waiting = p["status"]["containerStatuses"].as_array().into_iter().flatten().find_map(|c| c["state"]["waiting"]["reason"].as_str());
                    if let Some(w) = waiting {
                        problem = Some(format!("{}; pod {} is waiting: {w}", problem.unwrap_or_default(), p["metadata"]["name"].as_str().unwrap_or("?")));
                    }
                }
            }
        }
        nodes.sort();
        let api_available = match api {
            Some(a) => {
                let o = client.get_opt(ep, &format!("/apis/apiregistration.k8s.io/v1/apiservices/{a}")).map_err(|e| super::chain(&e))?;
                let r = o.as_ref().map(|o| condition(o, "Available")).unwrap_or_else(|| Err(format!("APIService {a} does not exist")));
                if let (Err(e), None) = (&r, &problem) {
                    problem = Some(format!("APIService {a}: {e}"));
                }
                Some(r.is_ok())
            }
            None => None,
        };
        out.push(AddonStatus { name: name.to_string(), deployment: format!("{ns}/{deploy}"), replicas, ready, nodes, api_available, problem });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coredns_spread_waits_for_as_many_nodes_as_it_has_replicas_or_the_cluster_has() {
        let one = "[cluster]\nname = \"a\"\n\n[[hosts]]\nname = \"m1\"\naddress = \"10.0.0.1\"\nroles = [\"master\", \"etcd\", \"node\"]\n";
        let three = format!("{one}\n[[hosts]]\nname = \"n1\"\naddress = \"10.0.0.2\"\nroles = [\"node\"]\n\n[[hosts]]\nname = \"n2\"\naddress = \"10.0.0.3\"\nroles = [\"node\"]\n");
        let dns = |text: &str| Addons::of(&crate::config::parse(std::path::Path::new("/tmp/cluster.toml"), text).unwrap()).coredns.unwrap();
        assert_eq!((dns(one).replicas, dns(one).min_domains), (2, 1), "one node: both replicas on it");
        assert_eq!((dns(&three).replicas, dns(&three).min_domains), (2, 2));
    }
}
