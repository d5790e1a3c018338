//! The masters' apiservers, reached through the SSH connection to each master, and the choice of
//! one that is ready to take requests.

use crate::config::{Cluster, Host};
use crate::host::{HostError, Node};
use crate::output::Printer;

use super::{Client, Endpoint};
use crate::exit::{Exit, Reportable};

/// No apiserver is ready to take requests: a refusal (exit 2), nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct NotReady {
    pub what: String,
    /// One line per apiserver passed over and why.
    pub problems: Vec<String>,
    pub hint: String,
}

impl Reportable for NotReady {
    fn hint(&self) -> Option<String> {
        Some(self.hint.clone())
    }
    fn exit(&self) -> Exit {
        Exit::Refused
    }
}

/// The apiserver of `node`: its own address on `apiserver.port`, through its SSH connection.
/// Never the VIP or an LB name: those may not exist yet, and a master's address is always in its
/// serving certificate.
pub fn endpoint(cluster: &Cluster, node: &Node<'_>) -> Endpoint {
    Endpoint::through(node.remote.clone(), &node.host.address.to_string(), cluster.apiserver.port)
}

/// What a `/readyz` answer that is not 200 says: its failed checks (`[-]...` lines), else the
/// whole body on one line.
fn not_ready_reason(status: u16, body: &str) -> String {
    let status_message = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string));
    if let Some(m) = status_message {
        return format!("/readyz answered HTTP {status}: {m}");
    }
    let failed: Vec<&str> = body.lines().map(str::trim).filter(|l| l.starts_with("[-]")).collect();
    let detail = if failed.is_empty() { body.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ") } else { failed.join("; ") };
    if detail.is_empty() { format!("/readyz answered HTTP {status}") } else { format!("/readyz answered HTTP {status}: {detail}") }
}

/// The first of `candidates` whose `/readyz` answers 200, in order; for the others, why not
/// (`(label, reason)`), also printed as `[apiserver] label: reason` lines.
pub fn first_ready(client: &Client, candidates: Vec<Endpoint>, printer: &Printer) -> Result<Endpoint, Vec<(String, String)>> {
    let mut passed = Vec::new();
    for ep in candidates {
        let reason = match client.healthz(&ep, "/readyz?verbose") {
            Ok((200, _)) => {
                printer.phase("apiserver", Some(&ep.label), "ready");
                return Ok(ep);
            }
            Ok((status, body)) => not_ready_reason(status, &body),
            Err(e) => super::chain(&e),
        };
        printer.phase("apiserver", Some(&ep.label), &format!("not ready: {reason}"));
        passed.push((ep.label.clone(), reason));
    }
    Err(passed)
}

/// The apiserver of the first master (in cluster file order) that is connected and ready, or a
/// refusal (exit 2: nothing was changed) naming every master and why it was passed over.
pub fn ready_master(cluster: &Cluster, client: &Client, connected: Vec<(&Host, Result<Node<'_>, HostError>)>, printer: &Printer) -> Result<Endpoint, NotReady> {
    let total = connected.len();
    let mut problems = Vec::new();
    let mut candidates = Vec::new();
    for (_, r) in connected {
        match r {
            // a HostError names its host
            Ok(node) => candidates.push(endpoint(cluster, &node)),
            Err(e) => problems.push(format!("[connect] {}", e.chain())),
        }
    }
    first_ready(client, candidates, printer).map_err(|passed| {
        let hint = "start the control plane first (`systemctl status kube-apiserver` on a master; /readyz also needs etcd: `kbin etcd status`); \
                    `kbin manifests apply --server https://ADDRESS:PORT` reaches an apiserver from this machine instead";
        refuse(format!("no apiserver is ready on any of the {total} masters; nothing was changed"), problems, passed, hint)
    })
}

/// `ep` if its `/readyz` answers 200, else a refusal (exit 2: nothing was changed) saying why.
pub fn ready_server(client: &Client, ep: Endpoint, printer: &Printer) -> Result<Endpoint, NotReady> {
    let label = ep.label.clone();
    first_ready(client, vec![ep], printer).map_err(|passed| {
        let hint = "check the URL, that kube-apiserver listens there (`systemctl status kube-apiserver`) and that its etcd is healthy (`kbin etcd status`)";
        refuse(format!("the apiserver at {label} is not ready; nothing was changed"), Vec::new(), passed, hint)
    })
}

fn refuse(what: String, mut problems: Vec<String>, passed: Vec<(String, String)>, hint: &str) -> NotReady {
    problems.extend(passed.into_iter().map(|(label, reason)| format!("[apiserver] {label}: {reason}")));
    NotReady { what, problems, hint: hint.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_reasons_keep_the_failed_checks() {
        let body = "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]poststarthook/start-apiextensions-informers ok\n[-]etcd-readiness failed: reason withheld\nreadyz check failed";
        assert_eq!(not_ready_reason(500, body), "/readyz answered HTTP 500: [-]etcd failed: reason withheld; [-]etcd-readiness failed: reason withheld");
        assert_eq!(not_ready_reason(401, r#"{"kind":"Status","reason":"Unauthorized","message":"Unauthorized"}"#), "/readyz answered HTTP 401: Unauthorized");
        assert_eq!(not_ready_reason(503, ""), "/readyz answered HTTP 503");
    }
}
