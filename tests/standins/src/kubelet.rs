//! kubelet stand-in: TLS bootstrap, Node registration, status and Lease heartbeats, the
//! kubelet's HTTPS port and its healthz port.

use std::sync::{Arc, RwLock};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::net::{Client, Response};
use crate::util::{self, Flags};
use crate::{log, version};

const VALUED: &[&str] = &["config", "bootstrap-kubeconfig", "kubeconfig", "cert-dir", "hostname-override", "node-ip"];

pub fn main(args: &[String]) {
    let f = Flags::parse(args, VALUED);
    if f.bool("version") {
        println!("Kubernetes {}", version());
        return;
    }
    let config: Value = match f.get("config") {
        Some(p) => {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| util::fatal(&format!("cannot read --config {p}: {e}")));
            let v: Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| util::fatal(&format!("--config {p}: {e}")));
            if v["kind"] != "KubeletConfiguration" {
                util::fatal(&format!("--config {p}: kind is {}, not KubeletConfiguration", v["kind"]));
            }
            v
        }
        None => json!({}),
    };
    let s = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(ca) = config["authentication"]["x509"]["clientCAFile"].as_str()
        && let Err(e) = std::fs::File::open(ca) {
            util::fatal(&format!("authentication.x509.clientCAFile: open {ca}: {e}"));
        }
    // Upstream posts node status at start, then every nodeStatusUpdateFrequency only if
    // something changed, or when nodeStatusReportFrequency (default 5m) has passed; the Lease is
    // renewed every 10s. The stand-in renews the Lease every period and, unless the config sets
    // nodeStatusReportFrequency, also posts status (lastHeartbeatTime) every period.
    let report_every = config["nodeStatusReportFrequency"].as_str().and_then(util::parse_duration);
    let node_name = f.get("hostname-override").map(str::to_string).unwrap_or_else(util::hostname).to_lowercase();
    let node_ip = f.get("node-ip").map(str::to_string).unwrap_or_else(|| "127.0.0.1".into());
    let cert_dir = f.get_or("cert-dir", "/var/lib/kubelet/pki").to_string();
    let kubeconfig = f.get("kubeconfig").map(str::to_string).unwrap_or_else(|| util::fatal("--kubeconfig is required"));
    log!(
        "node {node_name} ({node_ip}), clusterDNS {:?}, clusterDomain {:?}, cgroupDriver {:?}",
        config["clusterDNS"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")).unwrap_or_default(),
        s("clusterDomain").unwrap_or_default(),
        s("cgroupDriver").unwrap_or_default()
    );

    // The container runtime must answer before the kubelet does anything, as upstream.
    if let Some(ep) = s("containerRuntimeEndpoint") {
        let path = ep.trim_start_matches("unix://").to_string();
        let mut warned = false;
        while std::os::unix::net::UnixStream::connect(&path).is_err() {
            if !warned {
                log!("container runtime at {ep} is not answering; waiting");
                warned = true;
            }
            util::sleep(Duration::from_secs(1));
        }
    }

    // The kubelet's own HTTPS port, with tlsCertFile/tlsPrivateKeyFile (self-signed without).
    // Authentication as upstream with anonymous disabled: an x509 client certificate verified
    // against authentication.x509.clientCAFile, else 401. Authorization (mode Webhook): a
    // SubjectAccessReview to the apiserver for `get nodes/<sub>` on this node, where <sub> is
    // stats, metrics, log or (every other path, /healthz included) proxy.
    let client_ca = config["authentication"]["x509"]["clientCAFile"].as_str().map(|p| crate::net::read(p).unwrap_or_else(|e| util::fatal(&e)));
    let anonymous = config["authentication"]["anonymous"]["enabled"].as_bool().unwrap_or(false);
    let webhook = config["authorization"]["mode"].as_str() == Some("Webhook");
    let auth = match client_ca.as_deref() {
        Some(ca) => crate::net::ClientAuth::Request(ca),
        None => crate::net::ClientAuth::None,
    };
    let tls = match (s("tlsCertFile"), s("tlsPrivateKeyFile")) {
        (Some(c), Some(k)) => {
            let cert = crate::net::read(&c).unwrap_or_else(|e| util::fatal(&e));
            let key = crate::net::read(&k).unwrap_or_else(|e| util::fatal(&e));
            crate::net::server_config(&cert, &key, auth).unwrap_or_else(|e| util::fatal(&format!("tlsCertFile/tlsPrivateKeyFile: {e}")))
        }
        _ => crate::net::self_signed_server(&[&node_name, &node_ip]),
    };
    let verifier = client_ca.as_deref().map(|ca| crate::net::client_verifier(ca).unwrap_or_else(|e| util::fatal(&format!("clientCAFile: {e}"))));
    let api_cell: Arc<RwLock<Option<Client>>> = Arc::new(RwLock::new(None));
    let address = s("address").unwrap_or_else(|| "0.0.0.0".into());
    let port = config["port"].as_u64().unwrap_or(10250);
    let (cell, node) = (api_cell.clone(), node_name.clone());
    crate::net::spawn_server(format!("{address}:{port}"), tls, move |req| {
        let user = verifier.as_ref().and_then(|v| crate::net::verified_user(v.as_ref(), &req.peer_certs));
        let Some((name, groups)) = user.or_else(|| anonymous.then(|| ("system:anonymous".to_string(), vec!["system:unauthenticated".to_string()]))) else {
            return Response::text(401, "Unauthorized");
        };
        let sub = match req.path.trim_start_matches('/').split('/').next().unwrap_or("") {
            "stats" => "stats",
            "metrics" => "metrics",
            "logs" => "log",
            _ => "proxy",
        };
        if webhook {
            let Some(api) = cell.read().ok().and_then(|c| c.clone()) else { return Response::text(503, "the kubelet has no apiserver connection yet") };
            let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": name, "groups": groups, "resourceAttributes": {"verb": "get", "resource": "nodes", "subresource": sub, "name": node}}});
            match api.send_json("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", "application/json", &sar) {
                Ok((200 | 201, v)) if v["status"]["allowed"] == json!(true) => {}
                Ok((200 | 201, _)) => return Response::text(403, &format!("Forbidden (user={name}, verb=get, resource=nodes, subresource(s)=[{sub}])")),
                Ok((s, v)) => return Response::text(500, &format!("SubjectAccessReview: HTTP {s} {}", v["message"])),
                Err(e) => return Response::text(500, &format!("SubjectAccessReview: {e}")),
            }
        }
        match req.path.as_str() {
            "/healthz" => Response::text(200, "ok"),
            _ => Response::text(404, "404 page not found (kbin stand-in kubelet serves only /healthz)"),
        }
    });

    let last_ok = Arc::new(AtomicU64::new(0));
    let period = util::period();
    let max_age = (period.as_secs() * 3).max(10);
    let healthz_addr = format!("{}:{}", s("healthzBindAddress").unwrap_or_else(|| "127.0.0.1".into()), config["healthzPort"].as_u64().unwrap_or(10248));
    let l = last_ok.clone();
    crate::net::spawn_plain(healthz_addr.clone(), move |req| crate::controller_manager::healthz(&req.path, &l, max_age));
    log!("serving on {address}:{port} (HTTPS), healthz on http://{healthz_addr}/healthz, heartbeat every {:?}", period);

    // As upstream: a kubeconfig whose client certificate is missing, unreadable or expired is
    // replaced through TLS bootstrap when there is a bootstrap kubeconfig.
    if let Err(why) = usable(&kubeconfig) {
        match f.get("bootstrap-kubeconfig") {
            Some(boot) => {
                log!("{why}");
                bootstrap(boot, &kubeconfig, &cert_dir, &node_name);
            }
            None if !std::path::Path::new(&kubeconfig).exists() => util::fatal(&format!("--kubeconfig {kubeconfig} does not exist and no --bootstrap-kubeconfig was given")),
            None => log!("{why}; no --bootstrap-kubeconfig, trying it anyway"),
        }
    }
    let api = crate::kubeconfig::client_or_retry(&kubeconfig);
    log!("using apiserver {} from {kubeconfig}", api.server);
    *api_cell.write().expect("lock") = Some(api.clone());
    let mut api = api;
    let rotate = config["rotateCertificates"].as_bool().unwrap_or(false);
    let mut rotate_at = if rotate { next_rotation(&kubeconfig) } else { None };

    let started = util::now_rfc3339();
    let mut registered = false;
    let mut last_report = 0u64;
    loop {
        if rotate_at.is_some_and(|t| util::now_secs() >= t) {
            // Certificate rotation: a CSR made with the current certificate (upstream's
            // selfnodeclient case), then the client is rebuilt from the same kubeconfig.
            log!("rotating the client certificate");
            match request_cert(&api, &node_name, Some(Duration::from_secs(60))).and_then(|pem| store_cert(&cert_dir, &pem)) {
                Ok(current) => {
                    log!("rotated the client certificate: {current}");
                    api = crate::kubeconfig::client_or_retry(&kubeconfig);
                    *api_cell.write().expect("lock") = Some(api.clone());
                    rotate_at = next_rotation(&kubeconfig);
                }
                Err(e) => {
                    log!("certificate rotation: {e}; keeping the current certificate, retrying in 30s");
                    rotate_at = Some(util::now_secs() + 30);
                }
            }
        }
        if !registered {
            registered = register(&api, &node_name, &node_ip);
        }
        if registered {
            let report = report_every.is_none_or(|r| util::now_secs().saturating_sub(last_report) >= r.as_secs());
            match heartbeat(&api, &node_name, &node_ip, &started, report) {
                Ok(uid) => {
                    last_ok.store(util::now_secs(), Ordering::Relaxed);
                    if report && !uid.is_empty() {
                        last_report = util::now_secs();
                    }
                }
                Err(e) => log!("heartbeat: {e}"),
            }
        }
        util::sleep(period);
    }
}

/// Whether the kubeconfig loads and its client certificate is valid now.
fn usable(path: &str) -> Result<(), String> {
    if !std::path::Path::new(path).exists() {
        return Err(format!("no {path}"));
    }
    let kc = crate::kubeconfig::load(path)?;
    kc.client()?;
    if let crate::net::Auth::Cert { cert_pem, .. } = &kc.auth {
        let der = crate::net::certs_from_pem(cert_pem)?.remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| format!("{path}: client certificate: {e}"))?;
        let now = util::now_secs() as i64;
        let v = cert.validity();
        if now < v.not_before.timestamp() || now >= v.not_after.timestamp() {
            return Err(format!("{path}: the client certificate is not valid now (expired or not yet valid)"));
        }
    }
    Ok(())
}

/// TLS bootstrapping: a new key, a CSR for system:node:<name>/system:nodes sent with the
/// bootstrap kubeconfig's credentials, the issued certificate and key written to
/// <cert-dir>/kubelet-client-<time>.pem (+ the kubelet-client-current.pem link), and a
/// kubeconfig at --kubeconfig that points at the bootstrap kubeconfig's server.
fn bootstrap(boot_path: &str, kubeconfig: &str, cert_dir: &str, node: &str) {
    let boot = loop {
        match crate::kubeconfig::load(boot_path) {
            Ok(b) => break b,
            Err(e) => log!("{e}; retrying"),
        }
        util::sleep(Duration::from_secs(2));
    };
    let api = boot.client().unwrap_or_else(|e| util::fatal(&format!("bootstrap kubeconfig {boot_path}: {e}")));
    log!("no usable {kubeconfig}: TLS bootstrapping against {} with {boot_path}", boot.server);
    let pem = request_cert(&api, node, None).unwrap_or_else(|e| util::fatal(&e));
    let current = store_cert(cert_dir, &pem).unwrap_or_else(|e| util::fatal(&e));
    let kc = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {}\n  name: default-cluster\ncontexts:\n- context:\n    cluster: default-cluster\n    namespace: default\n    user: default-auth\n  name: default-context\ncurrent-context: default-context\nkind: Config\npreferences: {{}}\nusers:\n- name: default-auth\n  user:\n    client-certificate: {current}\n    client-key: {current}\n",
        base64::engine::general_purpose::STANDARD.encode(&boot.ca_pem),
        boot.server
    );
    write_private(kubeconfig, kc.as_bytes());
    log!("wrote client certificate {current} and {kubeconfig}");
}

/// A new key and a CSR for system:node:<node>, sent with `api`'s credentials; waits (for
/// `wait`, or for ever) until it is signed. Returns the certificate and key, PEM.
fn request_cert(api: &Client, node: &str, wait: Option<Duration>) -> Result<String, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| format!("key generation: {e}"))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    let csr_pem = params.serialize_request(&key).and_then(|r| r.pem()).map_err(|e| format!("CSR: {e}"))?;
    let csr = json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "node-csr-"},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(&csr_pem),
                 "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                 "usages": ["digital signature", "client auth"]}
    });
    let deadline = wait.map(|w| util::now_secs() + w.as_secs());
    let expired = || deadline.is_some_and(|d| util::now_secs() >= d);
    let name = loop {
        match api.send_json("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", "application/json", &csr) {
            Ok((201, v)) => break v["metadata"]["name"].as_str().unwrap_or("").to_string(),
            Ok((s, v)) => log!("create CSR: HTTP {s} {}", v["message"]),
            Err(e) => log!("create CSR: {e}"),
        }
        if expired() {
            return Err("could not create a CSR in time".into());
        }
        util::sleep(Duration::from_secs(3));
    };
    log!("created CSR {name}; waiting for it to be approved and signed");
    let cert_b64 = loop {
        match api.get_json(&format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}")) {
            Ok((200, v)) => {
                let conds = v["status"]["conditions"].as_array().cloned().unwrap_or_default();
                if let Some(c) = conds.iter().find(|c| c["type"] == "Denied" || c["type"] == "Failed") {
                    return Err(format!("CSR {name} was {}: {}", c["type"], c["message"]));
                }
                if let Some(c) = v["status"]["certificate"].as_str().filter(|c| !c.is_empty()) {
                    break c.to_string();
                }
            }
            Ok((s, v)) => log!("get CSR {name}: HTTP {s} {}", v["message"]),
            Err(e) => log!("get CSR {name}: {e}"),
        }
        if expired() {
            return Err(format!("CSR {name} was not signed in time"));
        }
        util::sleep(Duration::from_secs(1));
    };
    let cert = base64::engine::general_purpose::STANDARD.decode(cert_b64).map_err(|e| format!("CSR {name}: certificate is not base64: {e}"))?;
    let mut pem = String::from_utf8_lossy(&cert).into_owned();
    pem.push_str(&key.serialize_pem());
    Ok(pem)
}

/// Writes <cert-dir>/kubelet-client-<time>.pem and points kubelet-client-current.pem at it,
/// as upstream's certificate store does. Returns the path of the link.
fn store_cert(cert_dir: &str, pem: &str) -> Result<String, String> {
    std::fs::create_dir_all(cert_dir).map_err(|e| format!("{cert_dir}: {e}"))?;
    let stamp = util::now_rfc3339().replace([':', 'T'], "-").trim_end_matches('Z').to_string();
    let file = format!("{cert_dir}/kubelet-client-{stamp}.pem");
    write_private(&file, pem.as_bytes());
    let current = format!("{cert_dir}/kubelet-client-current.pem");
    let tmp = format!("{current}.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&file, &tmp).map_err(|e| format!("{tmp}: {e}"))?;
    std::fs::rename(&tmp, &current).map_err(|e| format!("{current}: {e}"))?;
    Ok(current)
}

/// When the client certificate is to be renewed: at 80% of its lifetime (upstream picks a
/// jittered 70-90%), or `KBIN_STANDIN_ROTATE_AFTER` seconds from now, for tests.
fn next_rotation(kubeconfig: &str) -> Option<u64> {
    if let Some(n) = std::env::var("KBIN_STANDIN_ROTATE_AFTER").ok().and_then(|v| v.parse::<u64>().ok()) {
        return Some(util::now_secs() + n);
    }
    let kc = crate::kubeconfig::load(kubeconfig).ok()?;
    let crate::net::Auth::Cert { cert_pem, .. } = &kc.auth else { return None };
    let der = crate::net::certs_from_pem(cert_pem).ok()?.remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let (nb, na) = (cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp());
    Some((nb + (na - nb) * 8 / 10).max(0) as u64)
}

fn write_private(path: &str, data: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = format!("{path}.tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).unwrap_or_else(|e| util::fatal(&format!("{tmp}: {e}")));
    f.write_all(data).and_then(|_| f.sync_all()).unwrap_or_else(|e| util::fatal(&format!("{tmp}: {e}")));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| util::fatal(&format!("{path}: {e}")));
}

fn mem_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())).unwrap_or(0)
}

fn node_object(name: &str, ip: &str) -> Value {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cap = json!({"cpu": cpus.to_string(), "memory": format!("{}Ki", mem_kib()), "pods": "110", "ephemeral-storage": "10Gi"});
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {},
        "status": {
            "capacity": cap, "allocatable": cap,
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"kubeletVersion": version(), "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "containerd://2.1.5", "osImage": "kbin stand-in", "kernelVersion": "", "machineID": "", "systemUUID": "", "bootID": ""}
        }
    })
}

/// POST the Node; an existing Node (409) is fine, as upstream.
fn register(api: &Client, name: &str, ip: &str) -> bool {
    match api.send_json("POST", "/api/v1/nodes", "application/json", &node_object(name, ip)) {
        Ok((201, _)) => {
            log!("registered node {name}");
            true
        }
        Ok((409, _)) => {
            log!("node {name} was already registered");
            true
        }
        Ok((s, v)) => {
            log!("register node {name}: HTTP {s} {}", v["message"]);
            false
        }
        Err(e) => {
            log!("register node {name}: {e}");
            false
        }
    }
}

/// Posts node status when `report`, then renews the Lease. Returns the Node's uid when status
/// was posted (empty otherwise).
fn heartbeat(api: &Client, name: &str, ip: &str, started: &str, report: bool) -> Result<String, String> {
    let now = util::now_rfc3339();
    let cond = |t: &str, status: &str, reason: &str, msg: &str| json!({"type": t, "status": status, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": started});
    let patch = json!({"status": {
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
    }});
    let v = if report {
        let (s, v) = api.send_json("PATCH", &format!("/api/v1/nodes/{name}/status"), "application/strategic-merge-patch+json", &patch)?;
        if s == 404 {
            register(api, name, ip);
            return Err("node object was missing; registered again".into());
        }
        if s != 200 {
            return Err(format!("PATCH node status: HTTP {s} {}", v["message"]));
        }
        v
    } else {
        Value::Null
    };
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}");
    let micro = util::now_micro();
    match api.get_json(&path)? {
        (404, _) => {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": v["metadata"]["uid"]}]},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro}});
            let (s, v) = api.send_json("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", "application/json", &lease)?;
            if s != 201 {
                return Err(format!("create lease: HTTP {s} {}", v["message"]));
            }
        }
        (200, mut lease) => {
            lease["spec"]["renewTime"] = json!(micro);
            lease["spec"]["holderIdentity"] = json!(name);
            let (s, v) = api.send_json("PUT", &path, "application/json", &lease)?;
            if s != 200 {
                return Err(format!("renew lease: HTTP {s} {}", v["message"]));
            }
        }
        (s, v) => return Err(format!("get lease: HTTP {s} {}", v["message"])),
    }
    Ok(v["metadata"]["uid"].as_str().unwrap_or("").to_string())
}
