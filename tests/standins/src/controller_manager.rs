//! kube-controller-manager stand-in: leader election, CSR approving and signing, node IPAM
//! (pod CIDRs) and node lifecycle (Ready -> Unknown when a node stops renewing its Lease).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::net::{Client, Response};
use crate::util::{self, Flags};
use crate::{log, version};

const VALUED: &[&str] = &[
    "kubeconfig",
    "cluster-signing-cert-file",
    "cluster-signing-key-file",
    "cluster-signing-duration",
    "cluster-cidr",
    "node-cidr-mask-size",
    "bind-address",
    "secure-port",
    "node-monitor-grace-period",
    "leader-elect-lease-duration",
];

const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

struct Signer {
    ca_pem: String,
    key_pem: String,
    days: u64,
}

pub fn main(args: &[String]) {
    let f = Flags::parse(args, VALUED);
    if f.bool("version") {
        println!("Kubernetes {}", version());
        return;
    }
    let kubeconfig = f.require("kubeconfig");
    f.require_files(&["kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig", "root-ca-file", "service-account-private-key-file", "requestheader-client-ca-file"]);
    let signer = match (f.get("cluster-signing-cert-file"), f.get("cluster-signing-key-file")) {
        (Some(c), Some(k)) => {
            let ca_pem = String::from_utf8_lossy(&crate::net::read(c).unwrap_or_else(|e| util::fatal(&e))).into_owned();
            let key_pem = String::from_utf8_lossy(&crate::net::read(k).unwrap_or_else(|e| util::fatal(&e))).into_owned();
            // Fail at start, as upstream does, if the pair cannot sign.
            let kp = rcgen::KeyPair::from_pem(&key_pem).unwrap_or_else(|e| util::fatal(&format!("--cluster-signing-key-file: {e}")));
            rcgen::Issuer::from_ca_cert_pem(&ca_pem, kp).unwrap_or_else(|e| util::fatal(&format!("--cluster-signing-cert-file: {e}")));
            let days = util::parse_duration(f.get_or("cluster-signing-duration", "8760h")).map(|d| (d.as_secs() / 86_400).max(1)).unwrap_or(365);
            Some(Signer { ca_pem, key_pem, days })
        }
        _ => {
            log!("no --cluster-signing-cert-file/--cluster-signing-key-file: CSRs are approved but not signed");
            None
        }
    };
    let allocate = f.bool("allocate-node-cidrs");
    let cidr = f.get("cluster-cidr").map(|c| parse_cidr(c).unwrap_or_else(|| util::fatal(&format!("--cluster-cidr {c:?} is not an IPv4 CIDR"))));
    if allocate && cidr.is_none() {
        util::fatal("--allocate-node-cidrs=true needs --cluster-cidr");
    }
    let mask: u8 = f.get_or("node-cidr-mask-size", "24").parse().unwrap_or_else(|_| util::fatal("--node-cidr-mask-size is not a number"));
    let grace = util::parse_duration(f.get_or("node-monitor-grace-period", "40s")).unwrap_or(Duration::from_secs(40));
    let lease_secs = util::parse_duration(f.get_or("leader-elect-lease-duration", "15s")).map(|d| d.as_secs()).unwrap_or(15);
    let leader_elect = f.get("leader-elect") != Some("false");

    let last_ok = Arc::new(AtomicU64::new(0));
    let bind = f.get_or("bind-address", "0.0.0.0");
    let port = f.get_or("secure-port", "10257");
    let l = last_ok.clone();
    crate::net::spawn_server(format!("{bind}:{port}"), crate::net::self_signed_server(&["localhost", "127.0.0.1"]), move |req| healthz(&req.path, &l, 30));
    log!("healthz on https://{bind}:{port}/healthz; allocate-node-cidrs={allocate} cluster-cidr={:?}/{mask} node-monitor-grace-period={}s", f.get("cluster-cidr"), grace.as_secs());

    let api = crate::kubeconfig::client_or_retry(&kubeconfig);
    let identity = format!("{}_{}", util::hostname(), util::uuid4());
    let mut leading = false;
    loop {
        let is_leader = !leader_elect || elect(&api, "kube-controller-manager", &identity, lease_secs);
        if is_leader != leading {
            log!("{}", if is_leader { format!("became leader as {identity}") } else { "lost leadership".into() });
            leading = is_leader;
        }
        let mut ok = api.get_json("/api/v1/nodes?limit=1").map(|(s, _)| s == 200).unwrap_or(false);
        if is_leader {
            if let Err(e) = csrs(&api, signer.as_ref()) {
                log!("csr controller: {e}");
                ok = false;
            }
            if allocate
                && let Err(e) = ipam(&api, cidr.expect("checked"), mask) {
                    log!("node ipam controller: {e}");
                }
            if let Err(e) = lifecycle(&api, grace) {
                log!("node lifecycle controller: {e}");
            }
        }
        if ok {
            last_ok.store(util::now_secs(), Ordering::Relaxed);
        }
        util::sleep(Duration::from_secs(1));
    }
}

/// 200 "ok" while the last successful contact with the apiserver is recent.
pub fn healthz(path: &str, last_ok: &AtomicU64, max_age: u64) -> Response {
    match path {
        "/healthz" | "/livez" | "/readyz" => {
            let age = util::now_secs().saturating_sub(last_ok.load(Ordering::Relaxed));
            if age <= max_age { Response::text(200, "ok") } else { Response::text(500, "[-]apiserver failed: no contact with the apiserver\nhealthz check failed\n") }
        }
        _ => Response::text(404, "404 page not found\n"),
    }
}

/// Leader election on a Lease in kube-system, as client-go's leaderelection does.
pub fn elect(api: &Client, name: &str, identity: &str, lease_secs: u64) -> bool {
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}");
    let now = util::now_micro();
    match api.get_json(&path) {
        Ok((404, _)) => {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "namespace": "kube-system"},
                "spec": {"holderIdentity": identity, "leaseDurationSeconds": lease_secs, "acquireTime": now, "renewTime": now, "leaseTransitions": 0}});
            matches!(api.send_json("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", "application/json", &lease), Ok((201, _)))
        }
        Ok((200, mut lease)) => {
            let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or("").to_string();
            let renew = lease["spec"]["renewTime"].as_str().and_then(util::parse_rfc3339).unwrap_or(0);
            let dur = lease["spec"]["leaseDurationSeconds"].as_u64().unwrap_or(lease_secs);
            if holder != identity && !holder.is_empty() && renew + dur > util::now_secs() {
                return false;
            }
            if holder != identity {
                lease["spec"]["acquireTime"] = json!(now);
                lease["spec"]["leaseTransitions"] = json!(lease["spec"]["leaseTransitions"].as_u64().unwrap_or(0) + 1);
            }
            lease["spec"]["holderIdentity"] = json!(identity);
            lease["spec"]["renewTime"] = json!(now);
            lease["spec"]["leaseDurationSeconds"] = json!(lease_secs);
            matches!(api.send_json("PUT", &path, "application/json", &lease), Ok((200, _)))
        }
        Ok((s, v)) => {
            log!("leader election: GET lease: HTTP {s} {}", v["message"]);
            false
        }
        Err(e) => {
            log!("leader election: {e}");
            false
        }
    }
}

fn condition(csr: &Value, t: &str) -> bool {
    csr["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|x| x["type"] == t))
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default()
}

/// The csrapproving controller (kubelet client certificates only, upstream's rules) and the
/// csrsigning controller.
fn csrs(api: &Client, signer: Option<&Signer>) -> Result<(), String> {
    let (s, list) = api.get_json("/apis/certificates.k8s.io/v1/certificatesigningrequests")?;
    if s != 200 {
        return Err(format!("list CSRs: HTTP {s} {}", list["message"]));
    }
    for csr in list["items"].as_array().cloned().unwrap_or_default() {
        let name = csr["metadata"]["name"].as_str().unwrap_or("").to_string();
        if condition(&csr, "Denied") || condition(&csr, "Failed") {
            continue;
        }
        let signer_name = csr["spec"]["signerName"].as_str().unwrap_or("");
        let mut csr = csr.clone();
        if !condition(&csr, "Approved") {
            if signer_name != KUBELET_CLIENT {
                continue;
            }
            match approvable(api, &csr) {
                Ok(Some(reason)) => {
                    let cond = json!({"type": "Approved", "status": "True", "reason": reason, "message": "Auto approving kubelet client certificate after SubjectAccessReview.", "lastUpdateTime": util::now_rfc3339(), "lastTransitionTime": util::now_rfc3339()});
                    let mut conds = csr["status"]["conditions"].as_array().cloned().unwrap_or_default();
                    conds.push(cond);
                    csr["status"]["conditions"] = json!(conds);
                    let (s, v) = api.send_json("PUT", &format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}/approval"), "application/json", &csr)?;
                    if s != 200 {
                        log!("approve {name}: HTTP {s} {}", v["message"]);
                        continue;
                    }
                    log!("approved CSR {name} for {} ({reason})", csr["spec"]["username"].as_str().unwrap_or("?"));
                    csr = v;
                }
                Ok(None) => continue,
                Err(e) => {
                    log!("CSR {name}: not approved: {e}");
                    continue;
                }
            }
        }
        if csr["status"]["certificate"].as_str().is_some_and(|c| !c.is_empty()) {
            continue;
        }
        let Some(signer) = signer else { continue };
        if ![KUBELET_CLIENT, APISERVER_CLIENT, KUBELET_SERVING].contains(&signer_name) {
            continue;
        }
        match sign(signer, &csr) {
            Ok(pem) => {
                csr["status"]["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(pem));
                let (s, v) = api.send_json("PUT", &format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}/status"), "application/json", &csr)?;
                if s == 200 {
                    log!("signed CSR {name} ({signer_name})");
                } else {
                    log!("store certificate of {name}: HTTP {s} {}", v["message"]);
                }
            }
            Err(e) => log!("CSR {name}: cannot sign: {e}"),
        }
    }
    Ok(())
}

/// Upstream's kubelet client CSR checks: subject CN system:node:<name> and O [system:nodes], no
/// SANs, usages within {digital signature, key encipherment, client auth}; then a
/// SubjectAccessReview for certificatesigningrequests/selfnodeclient (a node renewing its own
/// certificate) or certificatesigningrequests/nodeclient (anyone else, e.g. a bootstrap token).
fn approvable(api: &Client, csr: &Value) -> Result<Option<&'static str>, String> {
    let pem = String::from_utf8_lossy(&b64(csr["spec"]["request"].as_str().unwrap_or(""))).into_owned();
    let der = pem::parse(&pem).map_err(|e| format!("request is not PEM: {e}"))?;
    use x509_parser::prelude::FromDer;
    let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(der.contents()).map_err(|e| format!("bad CSR: {e}"))?;
    let subj = &req.certification_request_info.subject;
    let cn = subj.iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or("").to_string();
    let orgs: Vec<String> = subj.iter_organization().filter_map(|a| a.as_str().ok()).map(str::to_string).collect();
    if !cn.starts_with("system:node:") || orgs != ["system:nodes"] {
        return Err(format!("subject CN={cn:?} O={orgs:?} is not a kubelet client certificate"));
    }
    let usages: Vec<&str> = csr["spec"]["usages"].as_array().map(|u| u.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if !usages.contains(&"client auth") || usages.iter().any(|u| !["digital signature", "key encipherment", "client auth"].contains(u)) {
        return Err(format!("usages {usages:?} are not those of a kubelet client certificate"));
    }
    let username = csr["spec"]["username"].as_str().unwrap_or("");
    let (sub, reason) = if username == cn { ("selfnodeclient", "AutoApproved") } else { ("nodeclient", "AutoApproved") };
    let sar = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": username, "groups": csr["spec"]["groups"], "uid": csr["spec"]["uid"],
                 "resourceAttributes": {"group": "certificates.k8s.io", "resource": "certificatesigningrequests", "verb": "create", "subresource": sub}}
    });
    let (s, v) = api.send_json("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", "application/json", &sar)?;
    if s != 201 && s != 200 {
        return Err(format!("SubjectAccessReview: HTTP {s} {}", v["message"]));
    }
    if v["status"]["allowed"] == json!(true) {
        Ok(Some(reason))
    } else {
        Err(format!("{username} may not create certificatesigningrequests/{sub} (RBAC); left pending"))
    }
}

fn sign(signer: &Signer, csr: &Value) -> Result<String, String> {
    let pem = String::from_utf8_lossy(&b64(csr["spec"]["request"].as_str().unwrap_or(""))).into_owned();
    let mut req = rcgen::CertificateSigningRequestParams::from_pem(&pem).map_err(|e| format!("bad CSR: {e}"))?;
    let kp = rcgen::KeyPair::from_pem(&signer.key_pem).map_err(|e| e.to_string())?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&signer.ca_pem, kp).map_err(|e| e.to_string())?;
    let usages: Vec<String> = csr["spec"]["usages"].as_array().map(|u| u.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
    let p = &mut req.params;
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages.clear();
    p.extended_key_usages.clear();
    for u in &usages {
        match u.as_str() {
            "digital signature" => p.key_usages.push(rcgen::KeyUsagePurpose::DigitalSignature),
            "key encipherment" => p.key_usages.push(rcgen::KeyUsagePurpose::KeyEncipherment),
            "client auth" => p.extended_key_usages.push(rcgen::ExtendedKeyUsagePurpose::ClientAuth),
            "server auth" => p.extended_key_usages.push(rcgen::ExtendedKeyUsagePurpose::ServerAuth),
            other => return Err(format!("usage {other:?} is not supported by the stand-in signer")),
        }
    }
    let today = (util::now_secs() / 86_400) as i64;
    let (y, m, d) = util::civil(today);
    p.not_before = rcgen::date_time_ymd(y as i32, m as u8, d as u8);
    let (y, m, d) = util::civil(today + signer.days as i64);
    p.not_after = rcgen::date_time_ymd(y as i32, m as u8, d as u8);
    let mut serial = util::random_bytes(16);
    serial[0] &= 0x7f;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    p.use_authority_key_identifier_extension = true;
    let cert = req.signed_by(&issuer).map_err(|e| e.to_string())?;
    Ok(cert.pem())
}

pub fn parse_cidr(s: &str) -> Option<(u32, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((u32::from(ip) & if len == 0 { 0 } else { u32::MAX << (32 - len) }, len))
}

fn ipam(api: &Client, (base, len): (u32, u8), mask: u8) -> Result<(), String> {
    if mask < len {
        return Err(format!("--node-cidr-mask-size {mask} is larger than the cluster CIDR"));
    }
    let (s, list) = api.get_json("/api/v1/nodes")?;
    if s != 200 {
        return Err(format!("list nodes: HTTP {s} {}", list["message"]));
    }
    let nodes = list["items"].as_array().cloned().unwrap_or_default();
    let mut used: BTreeSet<u32> = nodes.iter().filter_map(|n| n["spec"]["podCIDR"].as_str()).filter_map(parse_cidr).map(|(ip, _)| ip).collect();
    let count = 1u64 << (mask - len);
    for n in nodes.iter().filter(|n| n["spec"]["podCIDR"].as_str().is_none_or(str::is_empty)) {
        let name = n["metadata"]["name"].as_str().unwrap_or("");
        let Some(free) = (0..count).map(|i| base + (i as u32) * (1u32 << (32 - mask))).find(|c| !used.contains(c)) else {
            return Err(format!("no free /{mask} left in the cluster CIDR for node {name}"));
        };
        let cidr = format!("{}/{mask}", Ipv4Addr::from(free));
        let patch = json!({"metadata": {"resourceVersion": n["metadata"]["resourceVersion"]}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        let (s, v) = api.send_json("PATCH", &format!("/api/v1/nodes/{name}"), "application/merge-patch+json", &patch)?;
        if s == 200 {
            log!("allocated pod CIDR {cidr} to node {name}");
            used.insert(free);
        } else {
            log!("allocate pod CIDR to {name}: HTTP {s} {}", v["message"]);
        }
    }
    Ok(())
}

/// Marks Ready=Unknown on nodes whose Lease (or, without one, Ready heartbeat) is older than
/// the grace period, as upstream's node lifecycle controller does.
fn lifecycle(api: &Client, grace: Duration) -> Result<(), String> {
    let (s, list) = api.get_json("/api/v1/nodes")?;
    if s != 200 {
        return Err(format!("list nodes: HTTP {s}"));
    }
    let (_, leases) = api.get_json("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")?;
    let leases = leases["items"].as_array().cloned().unwrap_or_default();
    let now = util::now_secs();
    for n in list["items"].as_array().cloned().unwrap_or_default() {
        let name = n["metadata"]["name"].as_str().unwrap_or("");
        let conds = n["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let Some(ready) = conds.iter().find(|c| c["type"] == "Ready") else { continue };
        if ready["status"] == "Unknown" {
            continue;
        }
        let heartbeat = ready["lastHeartbeatTime"].as_str().and_then(util::parse_rfc3339).unwrap_or(0);
        let renew = leases.iter().find(|l| l["metadata"]["name"] == name).and_then(|l| l["spec"]["renewTime"].as_str()).and_then(util::parse_rfc3339).unwrap_or(0);
        let last = heartbeat.max(renew);
        if now.saturating_sub(last) <= grace.as_secs() {
            continue;
        }
        let msg = "Kubelet stopped posting node status.";
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": msg, "lastHeartbeatTime": ready["lastHeartbeatTime"], "lastTransitionTime": util::now_rfc3339()}]}});
        let (s, v) = api.send_json("PATCH", &format!("/api/v1/nodes/{name}/status"), "application/strategic-merge-patch+json", &patch)?;
        if s == 200 {
            log!("node {name}: Ready=Unknown (no heartbeat for {}s)", now.saturating_sub(last));
        } else {
            log!("node {name}: mark Unknown: HTTP {s} {}", v["message"]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.244.0.0/16"), Some((u32::from(Ipv4Addr::new(10, 244, 0, 0)), 16)));
        assert_eq!(parse_cidr("10.244.3.7/16"), Some((u32::from(Ipv4Addr::new(10, 244, 0, 0)), 16)));
        assert_eq!(parse_cidr("nope"), None);
    }
}
