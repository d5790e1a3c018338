//! kbin's Kubernetes client against the stand-in kube-apiserver (tests/standins, which does
//! server-side apply, RBAC and Status errors as upstream) backed by a real etcd 3.5.1, with
//! certificates from `kbin pki init`. The masters are fake hosts whose `open_tcp` forwards to the
//! apiserver, so the path through a host's connection (`Endpoint::through`) is the one tested.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kbin::host::fake::{FakeHost, Logged};
use kbin::host::{Node, Remote};
use kbin::kube::manifests::{self, Manifest, Outcome};
use kbin::kube::{ApplyOutcome, Client, Endpoint, KubeError, masters};
use kbin::output::Printer;
use serde_json::json;

const CLUSTER: &str = r#"
[cluster]
name = "kapi"

[[hosts]]
name = "m1"
address = "10.9.0.1"
roles = ["master", "etcd"]

[[hosts]]
name = "m2"
address = "10.9.0.2"
roles = ["master"]
"#;

/// Kills the process when dropped.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Three distinct free ports: the listeners are held until all are known (a port given back by
/// one bind may be handed out again by the next).
fn free_ports() -> (u16, u16, u16) {
    let l: Vec<_> = (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let p = |i: usize| l[i].local_addr().unwrap().port();
    (p(0), p(1), p(2))
}

/// The etcd binary: $KBIN_ETCD_BIN, or taken out of the lab's default etcd release tarball.
fn etcd_bin(dir: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("KBIN_ETCD_BIN") {
        return PathBuf::from(p);
    }
    // the lab's default etcd release, built once from etcd's Go modules (tests/run.sh does this)
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join("tests/lab/lab")).arg("etcd-tarball").output().unwrap();
    assert!(out.status.success(), "`tests/lab/lab etcd-tarball` failed (set KBIN_ETCD_BIN to an etcd binary instead): {}", String::from_utf8_lossy(&out.stderr));
    let tarball = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let st = Command::new("tar").args(["-xzf", &tarball, "--strip-components=1", "-C", dir.to_str().unwrap()]).status().unwrap();
    assert!(st.success());
    dir.join("etcd")
}

/// The stand-in binary: $KBIN_STANDIN, else tests/standins built in release mode (as
/// selftest.sh builds it; a separate package with its own target dir).
fn standin_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KBIN_STANDIN") {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins");
    let st = Command::new(env!("CARGO"))
        .args(["build", "-q", "--release", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .status()
        .expect("cargo runs");
    assert!(st.success(), "building the stand-ins failed");
    dir.join("target/release/kbin-standin")
}

/// etcd (member m1) and the stand-in apiserver serving m2's certificate on loopback.
fn start(dir: &Path) -> (Proc, Proc, u16) {
    let pki = dir.join("pki");
    let p = |f: &str| pki.join(f).to_str().unwrap().to_string();
    let (client, peer, api) = free_ports();
    let etcd = Command::new(etcd_bin(dir))
        .args([
            "--name=m1".to_string(),
            format!("--data-dir={}", dir.join("etcd-data").display()),
            format!("--listen-client-urls=https://127.0.0.1:{client}"),
            format!("--advertise-client-urls=https://127.0.0.1:{client}"),
            format!("--listen-peer-urls=https://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer}"),
            format!("--initial-cluster=m1=https://127.0.0.1:{peer}"),
            format!("--cert-file={}", p("hosts/m1/etcd-server.crt")),
            format!("--key-file={}", p("hosts/m1/etcd-server.key")),
            format!("--trusted-ca-file={}", p("etcd/ca.crt")),
            "--client-cert-auth".to_string(),
            format!("--peer-cert-file={}", p("hosts/m1/etcd-peer.crt")),
            format!("--peer-key-file={}", p("hosts/m1/etcd-peer.key")),
            format!("--peer-trusted-ca-file={}", p("etcd/ca.crt")),
            "--peer-client-cert-auth".to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("etcd.log")).unwrap())
        .spawn()
        .unwrap();
    let etcd = Proc(etcd);
    let log = std::fs::File::create(dir.join("kube-apiserver.log")).unwrap();
    let apiserver = Command::new(standin_bin())
        .args([
            "kube-apiserver".to_string(),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={api}"),
            format!("--tls-cert-file={}", p("hosts/m2/apiserver.crt")),
            format!("--tls-private-key-file={}", p("hosts/m2/apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--etcd-servers=https://127.0.0.1:{client}"),
            format!("--etcd-cafile={}", p("etcd/ca.crt")),
            format!("--etcd-certfile={}", p("apiserver-etcd-client.crt")),
            format!("--etcd-keyfile={}", p("apiserver-etcd-client.key")),
            "--authorization-mode=Node,RBAC".to_string(),
            "--enable-bootstrap-token-auth=true".to_string(),
        ])
        .env("KBIN_STANDIN_VERSION", "v1.34.2")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    (etcd, Proc(apiserver), api)
}

/// Wait until the stand-in apiserver started by [`start`] in `dir` is ready: it must reach etcd.
/// Generous, as the whole test suite shares two cores with them; a timeout shows both logs.
fn wait_ready(dir: &Path, client: &Client, ep: &Endpoint) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !matches!(client.healthz(ep, "/readyz"), Ok((200, _))) {
        if Instant::now() >= deadline {
            let log = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            panic!("the apiserver did not become ready; its log:\n{}\netcd's log:\n{}", log("kube-apiserver.log"), log("etcd.log"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn quiet() -> Printer {
    Printer { quiet: true, color: false }
}

#[test]
fn apply_through_a_masters_connection_against_the_standin_apiserver() {
    let d = tempfile::tempdir().unwrap();
    let cluster = kbin::config::parse(&d.path().join("cluster.toml"), CLUSTER).unwrap();
    kbin::pki::init(&cluster).unwrap();
    let (_etcd, _apiserver, port) = start(d.path());
    let client = Client::from_pki(&cluster.pki_dir(), "super-admin").unwrap();

    // wait for the apiserver to reach etcd (directly over TCP: its cert has 127.0.0.1)
    let direct = Endpoint::tcp("127.0.0.1", port);
    wait_ready(d.path(), &client, &direct);

    // m1's apiserver cannot be reached, m2's can (through the fake host's forward)
    let m1 = Arc::new(FakeHost::new("m1", &d.path().join("m1")));
    let m2 = Arc::new(FakeHost::new("m2", &d.path().join("m2")));
    m2.forward("10.9.0.2", 6443, format!("127.0.0.1:{port}").parse().unwrap());
    let connected = vec![
        (&cluster.hosts[0], Ok(Node { host: &cluster.hosts[0], remote: m1.clone() as Arc<dyn Remote> })),
        (&cluster.hosts[1], Ok(Node { host: &cluster.hosts[1], remote: m2.clone() as Arc<dyn Remote> })),
    ];
    let ep = masters::ready_master(&cluster, &client, connected, &quiet()).unwrap();
    assert_eq!((ep.label.as_str(), ep.server_name.as_str()), ("m2 (10.9.0.2:6443)", "10.9.0.2"));
    assert!(m1.log().iter().any(|l| matches!(l, Logged::Tcp(a, 6443) if a == "10.9.0.1")), "m1 was tried first");
    assert_eq!(client.version(&ep).unwrap(), "v1.34.2");

    // a master that is unreachable and nothing else: refused, naming it
    let only_m1 = vec![(&cluster.hosts[0], Ok(Node { host: &cluster.hosts[0], remote: m1.clone() as Arc<dyn Remote> }))];
    let e: kbin::Error = masters::ready_master(&cluster, &client, only_m1, &quiet()).unwrap_err().into();
    assert_eq!(e.exit(), kbin::Exit::Refused);
    assert!(e.details().iter().any(|p| p.starts_with("[apiserver] m1 (10.9.0.1:6443): cannot reach the apiserver")), "{:?}", e.details());

    // the admin certificate has no rights before kbin's RBAC exists
    let admin = Client::from_pki(&cluster.pki_dir(), "admin").unwrap();
    assert_eq!(admin.nodes(&ep).unwrap_err().status(), Some(403));

    // dry run, apply, apply again
    let objects = manifests::render(&cluster, manifests::Set::Core).unwrap();
    let n = objects.len();
    let dry = manifests::apply_all(&client, &ep, &objects, &quiet(), true).unwrap();
    assert_eq!(dry.count(Outcome::WouldCreate), n);
    let first = manifests::apply_all(&client, &ep, &objects, &quiet(), false).unwrap();
    assert_eq!((first.count(Outcome::Created), first.server.as_str()), (n, "m2 (10.9.0.2:6443)"));
    let second = manifests::apply_all(&client, &ep, &objects, &quiet(), false).unwrap();
    assert_eq!(second.count(Outcome::Unchanged), n, "{:?}", second.objects);
    assert_eq!(manifests::apply_all(&client, &ep, &objects, &quiet(), true).unwrap().count(Outcome::Exists), n);
    // what the deploy commands call with their connected masters: m1 is passed over, m2 used
    let nodes = [Node { host: &cluster.hosts[0], remote: m1.clone() as Arc<dyn Remote> }, Node { host: &cluster.hosts[1], remote: m2.clone() as Arc<dyn Remote> }];
    let r = kbin::deploy::manifests::apply_to_masters(&cluster, &nodes, &quiet(), false).unwrap();
    assert_eq!((r.count(Outcome::Unchanged), r.server.as_str()), (n, "m2 (10.9.0.2:6443)"));
    let e = kbin::deploy::manifests::apply_to_masters(&cluster, &nodes[..1], &quiet(), false).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Refused);

    // the Secret the apiserver stored holds the token; the admin may now list (no) nodes
    let token = std::fs::read_to_string(cluster.pki_dir().join("bootstrap-token")).unwrap();
    let id = token.trim().split_once('.').unwrap().0;
    let secret = client.get(&ep, &format!("/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}")).unwrap();
    assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
    assert_eq!(admin.nodes(&ep).unwrap(), vec![]);

    // a change is "configured"; the same again "unchanged"
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kbin-test", "namespace": "kube-system"}, "data": {"k": "1"}});
    assert_eq!(client.apply(&ep, &cm, "kbin").unwrap(), ApplyOutcome::Created);
    cm["data"]["k"] = json!("2");
    assert_eq!(client.apply(&ep, &cm, "kbin").unwrap(), ApplyOutcome::Configured);
    assert_eq!(client.apply(&ep, &cm, "kbin").unwrap(), ApplyOutcome::Unchanged);
    assert_eq!(client.get(&ep, "/api/v1/namespaces/kube-system/configmaps/kbin-test").unwrap()["data"]["k"], "2");
    let e = client.get(&ep, "/api/v1/namespaces/kube-system/configmaps/nope").unwrap_err();
    assert!(e.to_string().ends_with("answered GET /api/v1/namespaces/kube-system/configmaps/nope with HTTP 404 NotFound: configmaps \"nope\" not found"), "{e}");
    assert_eq!(client.get_opt(&ep, "/api/v1/namespaces/kube-system/configmaps/nope").unwrap(), None);

    // a refused object is reported with the Status message; the others are still applied
    let missing_ns = Manifest::new("test#1", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "nowhere"}})).unwrap();
    let mut with_bad = vec![missing_ns];
    with_bad.extend(objects.iter().cloned());
    let r = manifests::apply_all(&client, &ep, &with_bad, &quiet(), false).unwrap();
    assert_eq!((r.count(Outcome::Failed), r.count(Outcome::Unchanged)), (1, n));
    let err = r.check().unwrap_err().to_string();
    assert!(err.starts_with(&format!("1 of {} objects were refused", n + 1)), "{err}");
    let failed = r.objects.iter().find(|o| o.outcome == Outcome::Failed).unwrap();
    assert!(failed.error.as_deref().unwrap().contains("HTTP 404 NotFound: namespaces \"nowhere\" not found"), "{failed:?}");

    // a Lease's renewTime, as the kubelet keeps it; none for a node without one
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "n1", "namespace": "kube-node-lease"},
                       "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": "2025-11-20T09:00:03.123456Z"}});
    client.apply(&ep, &lease, "kbin-test").unwrap();
    assert_eq!(client.lease_renew_time(&ep, "n1").unwrap().as_deref(), Some("2025-11-20T09:00:03.123456Z"));
    assert_eq!(client.lease_renew_time(&ep, "n2").unwrap(), None);

    // a client of another CA is not trusted by the apiserver (401), and kbin does not trust an
    // apiserver whose certificate another CA signed
    let other_dir = tempfile::tempdir().unwrap();
    let other = kbin::config::parse(&other_dir.path().join("cluster.toml"), CLUSTER).unwrap();
    kbin::pki::init(&other).unwrap();
    let stranger = Client::from_pki(&other.pki_dir(), "super-admin").unwrap();
    let e = stranger.get(&direct, "/api/v1/nodes").unwrap_err();
    assert!(matches!(e, KubeError::Transport { .. }), "kbin must refuse the apiserver's certificate: {e}");
    let mut foreign = kbin::tls::Identity { ca_pem: std::fs::read_to_string(cluster.pki_dir().join("ca.crt")).unwrap(), client: None };
    let r = |f: &str| std::fs::read_to_string(other.pki_dir().join(f)).unwrap();
    foreign.client = Some((r("super-admin.crt"), r("super-admin.key")));
    let e = Client::new(&foreign).unwrap().get(&direct, "/api/v1/nodes").unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
}

#[test]
fn drain_through_the_standin_respects_a_disruption_budget() {
    use kbin::deploy::remove::{Report, drain};
    use kbin::kube::drain::Eviction;
    let d = tempfile::tempdir().unwrap();
    let cluster = kbin::config::parse(&d.path().join("cluster.toml"), CLUSTER).unwrap();
    kbin::pki::init(&cluster).unwrap();
    let (_etcd, _apiserver, port) = start(d.path());
    let client = Client::from_pki(&cluster.pki_dir(), "super-admin").unwrap();
    let ep = Endpoint::tcp("127.0.0.1", port);
    wait_ready(d.path(), &client, &ep);
    // kbin applies only its own kinds: Nodes, Pods and budgets are made with a plain request
    let pki = cluster.pki_dir();
    let r = |f: &str| std::fs::read_to_string(pki.join(f)).unwrap();
    let config = kbin::tls::client_config(&kbin::tls::Identity { ca_pem: r("ca.crt"), client: Some((r("super-admin.crt"), r("super-admin.key"))) }).unwrap();
    let send = |method: &str, path: &str, v: &serde_json::Value| {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let resp = kbin::tls::request(s, config.clone(), "127.0.0.1", method, path, if method == "PATCH" { "application/merge-patch+json" } else { "application/json" }, Some(&serde_json::to_vec(v).unwrap())).unwrap();
        assert!(resp.status < 300, "{method} {path}: {} {}", resp.status, resp.text());
    };
    let apply = |v: serde_json::Value| {
        let (kind, ns) = (v["kind"].as_str().unwrap(), v["metadata"]["namespace"].as_str());
        let path = match (kind, ns) {
            ("Node", _) => "/api/v1/nodes".to_string(),
            ("Pod", Some(ns)) => format!("/api/v1/namespaces/{ns}/pods"),
            ("PodDisruptionBudget", Some(ns)) => format!("/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"),
            _ => unreachable!(),
        };
        send("POST", &path, &v);
    };
    apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}));
    let web = |name: &str, node: &str| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}}, "spec": {"nodeName": node}});
    apply(web("web-1", "n1"));
    apply(web("web-2", "n1"));
    apply(web("web-3", "n2"));
    apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent-n1", "namespace": "kube-system", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "u", "controller": true}]}, "spec": {"nodeName": "n1"}}));
    apply(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "default"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}));

    let pods = client.pods_on(&ep, "n1").unwrap();
    let mut ids: Vec<(String, Option<&str>)> = pods.iter().map(|p| (p.id(), p.skip)).collect();
    ids.sort();
    assert_eq!(ids, [("default/web-1".into(), None), ("default/web-2".into(), None), ("kube-system/agent-n1".into(), Some("daemonset"))]);
    assert!(client.cordon(&ep, "n1", true).unwrap() && !client.cordon(&ep, "n1", true).unwrap(), "cordoned once");
    assert_eq!(client.get(&ep, "/api/v1/nodes/n1").unwrap()["spec"]["unschedulable"], true);
    assert!(client.cordon(&ep, "n1", false).unwrap());

    // the budget lets one of three go, then holds: the drain times out and uncordons
    let run = kbin::engine::Run { cluster: &cluster, printer: quiet(), concurrency: 1, cancel: kbin::host::parallel::Cancel::new(), timeout: Duration::from_secs(2), dry_run: false, known: Default::default() };
    let mut report = Report::default();
    let e = drain("removing", &run, &client, &ep, "n1", true, &mut report).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Failure);
    assert!(kbin::error::render(&e).contains("disruption budget") && e.details().iter().any(|l| l == "[rollback] n1: the Node is schedulable again"), "{}", kbin::error::render(&e));
    assert_eq!(report.evicted.len(), 1);
    assert_eq!(client.get(&ep, "/api/v1/nodes/n1").unwrap()["spec"]["unschedulable"], false);
    let left = client.pods_on(&ep, "n1").unwrap();
    assert!(matches!(client.evict(&ep, left.iter().find(|p| p.skip.is_none()).unwrap()).unwrap(), Eviction::Blocked(m) if m.contains("disruption budget")));

    // a budget that allows it: drained, the DaemonSet pod left, the Node deleted
    send("PATCH", "/apis/policy/v1/namespaces/default/poddisruptionbudgets/web", &json!({"spec": {"minAvailable": 1}}));
    let mut report = Report::default();
    drain("removing", &run, &client, &ep, "n1", true, &mut report).unwrap();
    assert_eq!((report.evicted.len(), report.left.as_slice()), (1, &["kube-system/agent-n1 (daemonset)".to_string()][..]));
    assert_eq!(client.pods_on(&ep, "n1").unwrap().len(), 1);
    assert_eq!(client.pods_on(&ep, "n2").unwrap().len(), 1, "another node's pods stay");
    assert!(client.delete_node(&ep, "n1").unwrap() && !client.delete_node(&ep, "n1").unwrap());
    let gone = kbin::kube::drain::Pod { namespace: "default".into(), name: "nope".into(), skip: None, terminating: false };
    assert_eq!(client.evict(&ep, &gone).unwrap(), Eviction::Gone);
}
