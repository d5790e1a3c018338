//! kube-scheduler, kube-proxy and flanneld stand-ins: API clients with a health endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::controller_manager::healthz;
use crate::net::Response;
use crate::util::{self, Flags};
use crate::{log, version};

pub fn scheduler(args: &[String]) {
    let f = Flags::parse(args, &["kubeconfig", "bind-address", "secure-port", "config"]);
    if f.bool("version") {
        println!("Kubernetes {}", version());
        return;
    }
    let kubeconfig = f.require("kubeconfig");
    f.require_files(&["kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig"]);
    let bind = f.get_or("bind-address", "0.0.0.0");
    let port = f.get_or("secure-port", "10259");
    let last_ok = Arc::new(AtomicU64::new(0));
    let l = last_ok.clone();
    let period = util::period();
    let max_age = (period.as_secs() * 3).max(10);
    crate::net::spawn_server(format!("{bind}:{port}"), crate::net::self_signed_server(&["localhost", "127.0.0.1"]), move |req| healthz(&req.path, &l, max_age));
    log!("healthz on https://{bind}:{port}/healthz");
    let api = crate::kubeconfig::client_or_retry(&kubeconfig);
    loop {
        match api.get_json("/api/v1/nodes?limit=1") {
            Ok((200, _)) => last_ok.store(util::now_secs(), Ordering::Relaxed),
            Ok((s, v)) => log!("list nodes: HTTP {s} {}", v["message"]),
            Err(e) => log!("apiserver: {e}"),
        }
        util::sleep(period);
    }
}

pub fn proxy(args: &[String]) {
    let f = Flags::parse(args, &["config", "kubeconfig", "hostname-override", "healthz-bind-address"]);
    if f.bool("version") {
        println!("Kubernetes {}", version());
        return;
    }
    let config: Value = match f.get("config") {
        Some(p) => {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| util::fatal(&format!("cannot read --config {p}: {e}")));
            let v: Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| util::fatal(&format!("--config {p}: {e}")));
            if v["kind"] != "KubeProxyConfiguration" {
                util::fatal(&format!("--config {p}: kind is {}, not KubeProxyConfiguration", v["kind"]));
            }
            v
        }
        None => json!({}),
    };
    let s = |k: &str| config.get(k).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_string);
    let kubeconfig = f
        .get("kubeconfig")
        .map(str::to_string)
        .or_else(|| config["clientConnection"]["kubeconfig"].as_str().map(str::to_string))
        .unwrap_or_else(|| util::fatal("no kubeconfig: set clientConnection.kubeconfig in --config or --kubeconfig"));
    let node = f.get("hostname-override").map(str::to_string).or_else(|| s("hostnameOverride")).unwrap_or_else(util::hostname).to_lowercase();
    let healthz_addr = f.get("healthz-bind-address").map(str::to_string).or_else(|| s("healthzBindAddress")).unwrap_or_else(|| "0.0.0.0:10256".into());
    let healthz_addr = if healthz_addr.contains(':') { healthz_addr } else { format!("{healthz_addr}:10256") };
    let last_ok = Arc::new(AtomicU64::new(0));
    let l = last_ok.clone();
    let period = util::period();
    let max_age = (period.as_secs() * 3).max(10);
    crate::net::spawn_plain(healthz_addr.clone(), move |req| match req.path.as_str() {
        "/healthz" | "/livez" => {
            let last = l.load(Ordering::Relaxed);
            let now = util::now_secs();
            let body = json!({"lastUpdated": util::rfc3339(last), "currentTime": util::rfc3339(now), "nodeEligible": true});
            Response::json(if now.saturating_sub(last) <= max_age { 200 } else { 503 }, &body)
        }
        _ => Response::text(404, "404 page not found\n"),
    });
    log!("node {node}, mode {:?}, clusterCIDR {:?}, healthz on http://{healthz_addr}/healthz, kubeconfig {kubeconfig}", s("mode").unwrap_or_default(), s("clusterCIDR").unwrap_or_default());
    let api = crate::kubeconfig::client_or_retry(&kubeconfig);
    log!("using apiserver {}", api.server);
    loop {
        match api.get_json(&format!("/api/v1/nodes/{node}")) {
            Ok((200 | 404, _)) => last_ok.store(util::now_secs(), Ordering::Relaxed),
            Ok((s, v)) => log!("get node {node}: HTTP {s} {}", v["message"]),
            Err(e) => log!("apiserver: {e}"),
        }
        util::sleep(period);
    }
}

pub fn flanneld(args: &[String]) {
    let f = Flags::parse(args, &["kubeconfig-file", "net-config-path", "iface", "subnet-file", "kube-api-url"]);
    if f.bool("version") {
        println!("{}", version());
        return;
    }
    if !f.bool("kube-subnet-mgr") {
        util::fatal("only --kube-subnet-mgr is supported by the stand-in (no etcd backend)");
    }
    let kubeconfig = f.require("kubeconfig-file");
    let net_path = f.get_or("net-config-path", "/etc/kube-flannel/net-conf.json").to_string();
    let subnet_file = f.get_or("subnet-file", "/run/flannel/subnet.env").to_string();
    let ip_masq = f.bool("ip-masq");
    let node = std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| util::fatal("NODE_NAME is not set (flanneld needs it with --kube-subnet-mgr)"));
    let net: Value = serde_json::from_slice(&crate::net::read(&net_path).unwrap_or_else(|e| util::fatal(&e))).unwrap_or_else(|e| util::fatal(&format!("{net_path}: {e}")));
    let network = net["Network"].as_str().unwrap_or_else(|| util::fatal(&format!("{net_path}: no Network"))).to_string();
    let backend = net["Backend"]["Type"].as_str().unwrap_or("vxlan").to_string();
    let mtu = match backend.as_str() {
        "vxlan" => 1450,
        "wireguard" => 1420,
        _ => 1500,
    };
    log!("node {node}, network {network}, backend {backend}, iface {:?}, ip-masq {ip_masq}", f.get("iface"));
    let api = crate::kubeconfig::client_or_retry(&kubeconfig);
    let mut written = String::new();
    loop {
        match api.get_json(&format!("/api/v1/nodes/{node}")) {
            Ok((200, n)) => match n["spec"]["podCIDR"].as_str().filter(|c| !c.is_empty()) {
                Some(cidr) => {
                    let subnet = first_host(cidr);
                    let env = format!("FLANNEL_NETWORK={network}\nFLANNEL_SUBNET={subnet}\nFLANNEL_MTU={mtu}\nFLANNEL_IPMASQ={ip_masq}\n");
                    if env != written {
                        annotate(&api, &node, &backend, f.get("iface").unwrap_or(""));
                        if let Err(e) = write_atomic(&subnet_file, env.as_bytes()) {
                            log!("{e}");
                        } else {
                            log!("wrote {subnet_file}: subnet {subnet}");
                            written = env;
                        }
                    }
                }
                None => log!("waiting for node {node} to get a podCIDR"),
            },
            Ok((s, v)) => log!("get node {node}: HTTP {s} {}", v["message"]),
            Err(e) => log!("apiserver: {e}"),
        }
        util::sleep(util::period().min(std::time::Duration::from_secs(2)));
    }
}

/// What flanneld records on its Node (through nodes/status, as upstream).
fn annotate(api: &crate::net::Client, node: &str, backend: &str, iface: &str) {
    let patch = json!({"metadata": {"annotations": {
        "flannel.alpha.coreos.com/backend-type": backend,
        "flannel.alpha.coreos.com/kube-subnet-manager": "true",
        "flannel.alpha.coreos.com/public-ip": iface,
    }}});
    match api.send_json("PATCH", &format!("/api/v1/nodes/{node}/status"), "application/strategic-merge-patch+json", &patch) {
        Ok((200, _)) => {}
        Ok((s, v)) => log!("annotate node {node}: HTTP {s} {}", v["message"]),
        Err(e) => log!("annotate node {node}: {e}"),
    }
}

/// 10.244.1.0/24 -> 10.244.1.1/24
fn first_host(cidr: &str) -> String {
    match crate::controller_manager::parse_cidr(cidr) {
        Some((ip, len)) => format!("{}/{len}", std::net::Ipv4Addr::from(ip + 1)),
        None => cidr.to_string(),
    }
}

pub fn write_atomic(path: &str, data: &[u8]) -> Result<(), String> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, data).map_err(|e| format!("{tmp}: {e}"))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{path}: {e}"))
}
