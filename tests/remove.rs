//! `node remove` and `master remove` on fake hosts and a fake apiserver (TLS with the master's
//! serving certificate from `kbin pki init`, reached through the master's fake connection): the
//! order of the steps across hosts and the API, the refusals, the dry run, the cluster file.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kbin::config::{Cluster, Role};
use kbin::deploy::remove::{self, MasterHosts, Options, Report};
use kbin::engine::Run;
use kbin::host::fake::{FakeHost, ok};
use kbin::host::parallel::Cancel;
use kbin::host::{HostError, Node, Output, Remote};
use kbin::output::Printer;
use serde_json::{Value, json};

/// Everything that changed something, in order, on every host and the API: `host: argv` and
/// `api: what`.
type Events = Arc<Mutex<Vec<String>>>;

const CLUSTER: &str = r#"# test cluster
[cluster]
name = "t"

[apiserver]
vip = "10.9.0.100"

# the first master
[[hosts]]
name = "m1"
address = "10.9.0.1"
roles = ["etcd", "master"]

# second master, a node too
[[hosts]]
name = "m2"
address = "10.9.0.2"
roles = ["master", "node"]

# the worker
[[hosts]]
name = "n1"
address = "10.9.0.3"
roles = ["node"] # only a node

[[hosts]]
name = "lb1"
address = "10.9.0.4"
roles = ["lb"]
"#;

/// The facts of a node that runs its services and has flannel's state.
const NODE_FACTS: &str = "arch=x86_64\nsystemd=1\nunit kubelet=active\nunit kube-proxy=active\nunit flanneld=active\nunit containerd=active\n\
unit kube-apiserver=active\nunit kube-controller-manager=active\nunit kube-scheduler=active\n\
found=iface:flannel.1\nfound=iface:cni0\nfound=path:/run/flannel\nfound=path:/var/lib/cni\nfound=path:/etc/cni/net.d/10-flannel.conflist\n";

// ---------------------------------------------------------------------------------------------
// A fake apiserver: readyz, Nodes (get, merge patch, delete), pods by node, evictions
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Api {
    /// Node name -> unschedulable.
    nodes: BTreeMap<String, bool>,
    /// Pod objects (with `spec.nodeName`).
    pods: Vec<Value>,
    /// Evictions of `namespace/name` answered 429 before one is accepted (`usize::MAX`: always).
    pdb: BTreeMap<String, usize>,
    /// Eviction requests per pod.
    asked: BTreeMap<String, usize>,
    /// Evicted pods stay, being deleted (no kubelet confirms their end).
    stuck: bool,
}

fn pod(ns: &str, name: &str, node: &str, owner: Option<&str>, mirror: bool) -> Value {
    let mut p = json!({"metadata": {"name": name, "namespace": ns}, "spec": {"nodeName": node}});
    if let Some(kind) = owner {
        p["metadata"]["ownerReferences"] = json!([{"kind": kind, "name": "x", "controller": true}]);
    }
    if mirror {
        p["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "h"});
    }
    p
}

fn respond(api: &Mutex<Api>, events: &Events, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let mut a = api.lock().unwrap();
    let ev = |s: String| events.lock().unwrap().push(format!("api: {s}"));
    let segs: Vec<&str> = path.split('?').next().unwrap().trim_start_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        ("GET", ["readyz"]) => (200, json!("ok")),
        ("GET", ["api", "v1", "nodes", n]) => match a.nodes.get(*n) {
            Some(u) => (200, json!({"kind": "Node", "metadata": {"name": n}, "spec": {"unschedulable": u}})),
            None => (404, json!({"kind": "Status", "code": 404, "message": "not found"})),
        },
        ("PATCH", ["api", "v1", "nodes", n]) => {
            let p: Value = serde_json::from_slice(body).unwrap();
            let u = p["spec"]["unschedulable"].as_bool().unwrap();
            a.nodes.insert(n.to_string(), u);
            ev(format!("{} {n}", if u { "cordon" } else { "uncordon" }));
            (200, json!({"kind": "Node", "metadata": {"name": n}, "spec": {"unschedulable": u}}))
        }
        ("DELETE", ["api", "v1", "nodes", n]) => match a.nodes.remove(*n) {
            Some(_) => {
                ev(format!("delete node {n}"));
                (200, json!({"kind": "Status", "status": "Success"}))
            }
            None => (404, json!({"kind": "Status", "code": 404})),
        },
        ("GET", ["api", "v1", "pods"]) => {
            let node = path.split("spec.nodeName%3D").nth(1).unwrap().to_string();
            let items: Vec<Value> = a.pods.iter().filter(|p| p["spec"]["nodeName"] == node.as_str()).cloned().collect();
            (200, json!({"kind": "PodList", "items": items}))
        }
        ("POST", ["api", "v1", "namespaces", ns, "pods", name, "eviction"]) => {
            let e: Value = serde_json::from_slice(body).unwrap();
            assert_eq!((e["apiVersion"].as_str(), e["kind"].as_str()), (Some("policy/v1"), Some("Eviction")));
            let id = format!("{ns}/{name}");
            *a.asked.entry(id.clone()).or_default() += 1;
            if let Some(n) = a.pdb.get_mut(&id).filter(|n| **n > 0) {
                *n = n.saturating_sub(if *n == usize::MAX { 0 } else { 1 });
                return (429, json!({"kind": "Status", "code": 429, "reason": "TooManyRequests", "message": "Cannot evict pod as it would violate the pod's disruption budget."}));
            }
            if a.stuck {
                let p = a.pods.iter_mut().find(|p| p["metadata"]["namespace"] == *ns && p["metadata"]["name"] == *name).unwrap();
                p["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
            } else {
                a.pods.retain(|p| !(p["metadata"]["namespace"] == *ns && p["metadata"]["name"] == *name));
            }
            ev(format!("evict {id}"));
            (201, json!({"kind": "Status", "status": "Success"}))
        }
        _ => (404, json!({"kind": "Status", "code": 404, "message": format!("no route {method} {path}")})),
    }
}

/// Serve `api` over TLS with `pki/hosts/<master>/apiserver.crt` on loopback.
fn serve(pki: &Path, master: &str, api: Arc<Mutex<Api>>, events: Events) -> SocketAddr {
    let read = |f: &str| std::fs::read_to_string(pki.join(format!("hosts/{master}/{f}"))).unwrap();
    let certs = pem::parse_many(read("apiserver.crt")).unwrap().into_iter().filter(|b| b.tag() == "CERTIFICATE").map(|b| rustls::pki_types::CertificateDer::from(b.into_contents())).collect();
    let key = rustls::pki_types::PrivateKeyDer::try_from(pem::parse(read("apiserver.key")).unwrap().into_contents()).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let (config, api, events) = (config.clone(), api.clone(), events.clone());
            std::thread::spawn(move || {
                let Ok(s) = s else { return };
                let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config).unwrap(), s);
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                let (head, len) = loop {
                    let Ok(n) = tls.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    raw.extend_from_slice(&buf[..n]);
                    if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&raw[..end]).to_string();
                        let len = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())).unwrap_or(0);
                        raw.drain(..end + 4);
                        break (head, len);
                    }
                };
                while raw.len() < len {
                    let Ok(n) = tls.read(&mut buf) else { return };
                    raw.extend_from_slice(&buf[..n]);
                }
                let mut first = head.lines().next().unwrap().split(' ');
                let (method, path) = (first.next().unwrap().to_string(), first.next().unwrap().to_string());
                let (status, body) = respond(&api, &events, &method, &path, &raw);
                let body = if let Value::String(s) = body { s.into_bytes() } else { serde_json::to_vec(&body).unwrap() };
                let _ = tls.write_all(format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
                let _ = tls.write_all(&body);
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// Fake hosts that log what changes into the shared events
// ---------------------------------------------------------------------------------------------

fn host(name: &str, root: &Path, facts: &str, events: &Events) -> Arc<FakeHost> {
    let (r, facts, events, me) = (root.to_path_buf(), facts.to_string(), events.clone(), name.to_string());
    let units: Mutex<BTreeMap<String, bool>> = Mutex::new(["nginx", "keepalived"].iter().map(|u| (u.to_string(), true)).collect());
    Arc::new(FakeHost::new(name, root).respond(move |c| {
        let a: Vec<&str> = c.argv.iter().map(String::as_str).collect();
        let mut units = units.lock().unwrap();
        match a.as_slice() {
            ["sh", "-c", _, "kbin-facts", ..] => return Some(ok(&facts)),
            ["systemctl", "is-active", "--", list @ ..] => return Some(ok(&list.iter().map(|u| if units.get(*u) == Some(&true) { "active\n" } else { "inactive\n" }).collect::<String>())),
            ["systemctl", "disable", "--now", "--quiet", u] => drop(units.insert(u.to_string(), false)),
            ["mv", "-f", from, to] => std::fs::rename(r.join(from.trim_start_matches('/')), r.join(to.trim_start_matches('/'))).unwrap(),
            ["rm", _, "--", paths @ ..] => paths.iter().for_each(|p| {
                let l = r.join(p.trim_start_matches('/'));
                let _ = std::fs::remove_dir_all(&l).or_else(|_| std::fs::remove_file(&l));
            }),
            // a test makes nginx refuse its config with a marker file
            ["nginx", "-t", ..] if r.join("nginx-refuses").exists() => return Some(Output { status: 1, signal: None, stdout: vec![], stderr: b"nginx: [emerg] refused on purpose".to_vec() }),
            ["nginx", "-t", ..] | ["systemctl", "reload", _] | ["ip", "link", "delete", ..] => {}
            _ => return None,
        }
        events.lock().unwrap().push(format!("{me}: {}", a.join(" ")));
        Some(ok(""))
    }))
}

struct Setup {
    dir: tempfile::TempDir,
    cluster: Cluster,
    api: Arc<Mutex<Api>>,
    events: Events,
    hosts: BTreeMap<String, Arc<FakeHost>>,
}

fn setup(text: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.toml"), text).unwrap();
    let cluster = kbin::config::load(&dir.path().join("cluster.toml")).unwrap();
    kbin::pki::init(&cluster).unwrap();
    let events: Events = Arc::default();
    let mut api = Api::default();
    for n in ["m2", "n1"] {
        api.nodes.insert(n.into(), false);
    }
    api.pods = vec![
        pod("app", "web-1", "n1", Some("ReplicaSet"), false),
        pod("kube-system", "agent-n1", "n1", Some("DaemonSet"), false),
        pod("kube-system", "static-n1", "n1", None, true),
        pod("app", "web-2", "m2", Some("ReplicaSet"), false),
        pod("app", "web-3", "m1", Some("ReplicaSet"), false),
    ];
    let api = Arc::new(Mutex::new(api));
    // each master's apiserver answers with its own certificate, both the same API
    let addrs: BTreeMap<String, SocketAddr> = cluster.hosts_with(Role::Master).map(|m| (m.name.clone(), serve(&cluster.pki_dir(), &m.name, api.clone(), events.clone()))).collect();
    let mut hosts = BTreeMap::new();
    for h in &cluster.hosts {
        let root = dir.path().join(&h.name);
        let facts = if h.has(Role::Lb) { "arch=x86_64\nsystemd=1\n" } else { NODE_FACTS };
        let fake = host(&h.name, &root, facts, &events);
        for p in ["run/flannel/subnet.env", "var/lib/cni/networks/cbr0/10.244.1.2", "etc/cni/net.d/10-flannel.conflist", "etc/cni/net.d/99-other.conf"] {
            std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
            std::fs::write(root.join(p), "x").unwrap();
        }
        if h.has(Role::Lb) {
            std::fs::create_dir_all(root.join("etc/nginx")).unwrap();
            std::fs::write(root.join("etc/nginx/nginx.conf"), "server 10.9.0.1:6443;\nserver 10.9.0.2:6443;\n").unwrap();
        }
        hosts.insert(h.name.clone(), fake);
    }
    for (m, addr) in addrs {
        hosts[&m].forward(&cluster.host(&m).unwrap().address.to_string(), 6443, addr);
    }
    Setup { dir, cluster, api, events, hosts }
}

impl Setup {
    fn run(&self, dry_run: bool, timeout: Duration) -> Run<'_> {
        Run { cluster: &self.cluster, printer: Printer { quiet: true, color: false }, concurrency: 4, cancel: Cancel::new(), timeout, dry_run, known: Default::default() }
    }
    fn node(&self, name: &str) -> Node<'_> {
        Node { host: self.cluster.host(name).unwrap(), remote: self.hosts[name].clone() as Arc<dyn Remote> }
    }
    fn masters(&self) -> Vec<(&kbin::config::Host, Result<Node<'_>, HostError>)> {
        self.cluster.hosts_with(Role::Master).map(|h| (h, Ok(self.node(&h.name)))).collect()
    }
    fn node_remove(&self, name: &str, dry_run: bool, timeout: Duration) -> Result<Report, kbin::Error> {
        let h = self.cluster.host(name).unwrap();
        remove::node_on(&self.run(dry_run, timeout), h, Ok(self.node(name)), self.masters(), Options::default())
    }
    fn master_remove(&self, name: &str, dry_run: bool) -> Result<Report, kbin::Error> {
        let h = self.cluster.host(name).unwrap();
        let hosts = MasterHosts {
            target: Ok(self.node(name)),
            others: self.masters().into_iter().filter(|(m, _)| m.name != name).collect(),
            lbs: self.cluster.hosts_with(Role::Lb).map(|l| self.node(&l.name)).collect(),
            etcd: self.cluster.hosts_with(Role::Etcd).filter(|e| e.name != name).map(|e| self.node(&e.name)).collect(),
        };
        remove::master_on(&self.run(dry_run, Duration::from_secs(5)), h, hosts, Options::default())
    }
    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
    fn at(&self, event: &str) -> usize {
        let ev = self.events();
        ev.iter().position(|e| e == event).unwrap_or_else(|| panic!("no event {event:?} in {ev:#?}"))
    }
    fn file(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cluster.toml")).unwrap()
    }
    fn exists(&self, host: &str, p: &str) -> bool {
        self.hosts[host].path(p).exists()
    }
}

/// A `[[hosts]]` block of [`CLUSTER`], with the comment line above it.
fn block(comment: &str, name: &str) -> String {
    let start = CLUSTER.find(comment).unwrap();
    let end = CLUSTER[start..].find(&format!("name = \"{name}\"")).unwrap() + start;
    let end = CLUSTER[end..].find("\n\n").map(|i| end + i + 2).unwrap_or(CLUSTER.len());
    CLUSTER[start..end].to_string()
}

// ---------------------------------------------------------------------------------------------
// node remove
// ---------------------------------------------------------------------------------------------

#[test]
fn node_remove_drains_before_the_kubelet_stops_and_the_file_loses_exactly_that_host() {
    let s = setup(CLUSTER);
    // the budget refuses the first eviction: retried, not given up
    s.api.lock().unwrap().pdb.insert("app/web-1".into(), 1);
    let r = s.node_remove("n1", false, Duration::from_secs(10)).unwrap();
    assert_eq!(r.evicted, ["app/web-1"]);
    assert_eq!(r.left, ["kube-system/agent-n1 (daemonset)", "kube-system/static-n1 (mirror)"]);
    assert_eq!(s.api.lock().unwrap().asked.get("app/web-1"), Some(&2), "a 429 is asked again");
    assert!(!s.api.lock().unwrap().asked.contains_key("kube-system/agent-n1"));
    // the order across the API and the host
    let order = [
        "api: cordon n1",
        "api: evict app/web-1",
        "n1: systemctl disable --now --quiet kubelet",
        "n1: systemctl disable --now --quiet kube-proxy",
        "n1: systemctl disable --now --quiet flanneld",
        "n1: systemctl disable --now --quiet containerd",
        "n1: ip link delete dev flannel.1",
        "n1: ip link delete dev cni0",
        "n1: rm -rf -- /run/flannel /var/lib/cni",
        "n1: rm -f -- /etc/cni/net.d/10-flannel.conflist",
        "api: delete node n1",
    ];
    let at: Vec<usize> = order.iter().map(|e| s.at(e)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{:#?}", s.events());
    assert_eq!(r.stopped, ["kubelet", "kube-proxy", "flanneld", "containerd"]);
    assert!(r.node_deleted && r.cordoned && r.reachable);
    // exactly what was named went
    assert!(!s.exists("n1", "/run/flannel") && !s.exists("n1", "/var/lib/cni") && !s.exists("n1", "/etc/cni/net.d/10-flannel.conflist"));
    assert!(s.exists("n1", "/etc/cni/net.d/99-other.conf"), "another CNI file stays");
    // no other host was touched, no other pod evicted
    assert!(s.events().iter().all(|e| e.starts_with("api: ") || e.starts_with("n1: ")), "{:#?}", s.events());
    assert_eq!(s.api.lock().unwrap().pods.len(), 4);
    // the cluster file: that host (with its comment) gone, every other line as it was
    assert_eq!(s.file(), CLUSTER.replace(&block("# the worker", "n1"), ""));
    assert!(r.host_entry_removed && r.roles_removed == ["node"]);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["evicted"], json!(["app/web-1"]));
}

#[test]
fn node_remove_dry_run_shows_the_plan_and_changes_nothing() {
    let s = setup(CLUSTER);
    let r = s.node_remove("n1", true, Duration::from_secs(5)).unwrap();
    assert!(r.dry_run);
    assert_eq!(r.evicted, ["app/web-1"]);
    assert_eq!(r.stopped, ["kubelet", "kube-proxy", "flanneld", "containerd"]);
    assert_eq!(r.removed, ["flannel.1", "cni0", "/run/flannel", "/var/lib/cni", "/etc/cni/net.d/10-flannel.conflist"]);
    assert!(r.node_deleted && r.host_entry_removed, "planned");
    assert_eq!(s.events(), Vec::<String>::new(), "nothing changed on any host or in the API");
    assert_eq!(s.file(), CLUSTER);
    assert!(s.exists("n1", "/run/flannel/subnet.env"));
}

#[test]
fn a_drain_a_budget_holds_past_the_timeout_uncordons_and_leaves_the_host_alone() {
    let s = setup(CLUSTER);
    s.api.lock().unwrap().pdb.insert("app/web-1".into(), usize::MAX);
    let e = s.node_remove("n1", false, Duration::from_millis(800)).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Failure);
    let text = kbin::error::render(&e);
    assert!(text.contains("[drain] n1: 1 pods still on n1 (app/web-1); refused: app/web-1: Cannot evict pod"), "{text}");
    assert!(text.contains("[rollback] n1: the Node is schedulable again") && text.contains("hint: a PodDisruptionBudget"), "{text}");
    assert_eq!(s.events(), ["api: cordon n1", "api: uncordon n1"]);
    assert_eq!(s.file(), CLUSTER);
}

#[test]
fn node_remove_refuses_unknown_hosts_and_hosts_without_the_node_role() {
    let s = setup(CLUSTER);
    for (name, want) in [("x9", "no host \"x9\""), ("10.9.9.9", "no host \"10.9.9.9\""), ("m1", "m1 does not have the node role")] {
        let e = remove::host_with(&s.cluster, name, Role::Node).unwrap_err();
        assert_eq!(e.exit(), kbin::Exit::Refused);
        assert!(e.to_string().contains(want) && e.hint().is_some(), "{e}");
    }
    // by address
    assert_eq!(remove::host_with(&s.cluster, "10.9.0.3", Role::Node).unwrap().name, "n1");
    let h = s.cluster.host("m1").unwrap();
    let e = remove::node_on(&s.run(false, Duration::from_secs(1)), h, Ok(s.node("m1")), s.masters(), Options::default()).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Refused);
    assert!(s.events().is_empty() && s.file() == CLUSTER);
}

#[test]
fn an_unreachable_node_is_refused_unless_forced_then_only_the_api_side_changes() {
    let s = setup(CLUSTER);
    let h = s.cluster.host("n1").unwrap();
    let down = || Err(HostError::Connect { host: "n1".into(), addr: "10.9.0.3:22".into(), source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused") });
    let e = remove::node_on(&s.run(false, Duration::from_secs(5)), h, down(), s.masters(), Options::default()).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Refused);
    assert!(e.hint().unwrap().contains("--force"));
    assert!(s.events().is_empty() && s.file() == CLUSTER);
    // no kubelet confirms the evicted pod's end: being deleted is enough, the Node's deletion does the rest
    s.api.lock().unwrap().stuck = true;
    let r = remove::node_on(&s.run(false, Duration::from_secs(5)), h, down(), s.masters(), Options { force: true }).unwrap();
    assert!(!r.reachable && r.stopped.is_empty() && r.node_deleted);
    assert_eq!(s.events(), ["api: cordon n1", "api: evict app/web-1", "api: delete node n1"]);
    assert_eq!(s.file(), CLUSTER.replace(&block("# the worker", "n1"), ""));
}

#[test]
fn node_remove_of_a_master_keeps_the_host_and_its_other_roles() {
    let s = setup(CLUSTER);
    let r = s.node_remove("m2", false, Duration::from_secs(5)).unwrap();
    assert_eq!(r.evicted, ["app/web-2"]);
    assert!(!r.host_entry_removed && r.roles_removed == ["node"]);
    assert_eq!(s.file(), CLUSTER.replace("roles = [\"master\", \"node\"]", "roles = [\"master\"]"));
    assert!(!s.events().iter().any(|e| e.contains("kube-apiserver")), "the control plane keeps running");
}

// ---------------------------------------------------------------------------------------------
// master remove
// ---------------------------------------------------------------------------------------------

#[test]
fn master_remove_takes_it_out_of_the_lb_before_its_apiserver_stops() {
    let s = setup(CLUSTER);
    let r = s.master_remove("m2", false).unwrap();
    let order = [
        "api: cordon m2",
        "api: evict app/web-2",
        "lb1: nginx -t -q -c /etc/nginx/nginx.conf",
        "lb1: systemctl reload nginx",
        "m2: systemctl disable --now --quiet kube-scheduler",
        "m2: systemctl disable --now --quiet kube-controller-manager",
        "m2: systemctl disable --now --quiet kube-apiserver",
        "m2: systemctl disable --now --quiet kubelet",
        "m2: systemctl disable --now --quiet containerd",
        "api: delete node m2",
    ];
    let at: Vec<usize> = order.iter().map(|e| s.at(e)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{:#?}", s.events());
    let conf = std::fs::read_to_string(s.hosts["lb1"].path("/etc/nginx/nginx.conf")).unwrap();
    assert!(conf.contains("10.9.0.1:6443") && !conf.contains("10.9.0.2:6443"), "{conf}");
    assert_eq!(r.lb[0].restarted, ["nginx"]);
    assert!(!r.etcd_member_removed, "m2 has no etcd member");
    assert!(s.events().iter().all(|e| !e.starts_with("m1: ") && !e.starts_with("n1: ")), "{:#?}", s.events());
    assert_eq!(s.file(), CLUSTER.replace(&block("# second master", "m2"), ""));
    assert!(r.host_entry_removed && r.roles_removed == ["master", "node"]);
}

#[test]
fn an_lb_that_refuses_the_new_upstreams_stops_master_remove_before_the_apiserver_stops() {
    let s = setup(CLUSTER);
    std::fs::write(s.hosts["lb1"].path("/nginx-refuses"), "").unwrap();
    let e = s.master_remove("m2", false).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Failure);
    let text = kbin::error::render(&e);
    assert!(text.contains("taking m2 out of the LB upstreams failed; its services run on (its Node stays cordoned)") && text.contains("[verify] lb1: nginx -t failed"), "{text}");
    assert!(text.contains("[rollback] lb1: previous files restored"), "{text}");
    assert!(std::fs::read_to_string(s.hosts["lb1"].path("/etc/nginx/nginx.conf")).unwrap().contains("10.9.0.2:6443"), "the previous upstreams are back");
    assert!(!s.events().iter().any(|e| e.starts_with("m2: ") || e.contains("reload")), "{:#?}", s.events());
    assert_eq!(s.file(), CLUSTER);
}

#[test]
fn master_remove_dry_run_changes_nothing() {
    let s = setup(CLUSTER);
    let r = s.master_remove("m2", true).unwrap();
    assert_eq!(r.stopped, ["kube-scheduler", "kube-controller-manager", "kube-apiserver", "kubelet", "kube-proxy", "flanneld", "containerd"]);
    assert_eq!(r.lb[0].changed, ["/etc/nginx/nginx.conf"]);
    assert_eq!(s.events(), Vec::<String>::new());
    assert_eq!(s.file(), CLUSTER);
    assert!(std::fs::read_to_string(s.hosts["lb1"].path("/etc/nginx/nginx.conf")).unwrap().contains("10.9.0.2:6443"));
}

#[test]
fn master_remove_refuses_the_last_master_and_the_master_the_nodes_use() {
    // the last master
    let one = CLUSTER.replace("roles = [\"master\", \"node\"]", "roles = [\"node\"]");
    let s = setup(&one);
    let e = s.master_remove("m1", false).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Refused);
    assert!(e.to_string().contains("m1 is the last master"), "{e}");
    assert!(s.events().is_empty() && s.file() == one);
    // no VIP: the nodes use the first master
    let novip = CLUSTER.replace("roles = [\"master\", \"node\"]", "roles = [\"etcd\", \"master\", \"node\"]").replace("vip = \"10.9.0.100\"", "").replace("[[hosts]]\nname = \"lb1\"\naddress = \"10.9.0.4\"\nroles = [\"lb\"]\n", "");
    let s = setup(&novip);
    let e = s.master_remove("m1", false).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Refused);
    assert!(e.to_string().contains("the nodes reach the apiserver through m1") && e.hint().unwrap().contains("kbin repoint-nodes"), "{e}");
    assert!(s.events().is_empty() && s.file() == novip);
    // an endpoint naming the master
    let ep = CLUSTER.replace("vip = \"10.9.0.100\"", "vip = \"10.9.0.100\"\nendpoint = \"10.9.0.2\"");
    let s = setup(&ep);
    let e = s.master_remove("m2", false).unwrap_err();
    assert!(e.to_string().contains("apiserver.endpoint names it"), "{e}");
    assert!(s.events().is_empty() && s.file() == ep);
    // a host that is not a master
    let s = setup(CLUSTER);
    assert_eq!(s.master_remove("n1", false).unwrap_err().exit(), kbin::Exit::Refused);
    // the last etcd member
    let e = s.master_remove("m1", false).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Refused);
    assert!(e.to_string().contains("m1 holds the last etcd member"), "{e}");
    assert!(s.events().is_empty() && s.file() == CLUSTER);
    // an etcd member whose fellow member does not answer: refused before the LB or anything changes
    let two = CLUSTER.replace("roles = [\"master\", \"node\"]", "roles = [\"etcd\", \"master\", \"node\"]");
    let s = setup(&two);
    let e = s.master_remove("m2", false).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Refused);
    assert!(e.to_string().contains("no other healthy etcd member to remove m2's member through"), "{e}");
    assert!(s.events().is_empty() && s.file() == two);
}
