//! `kbin pki check --hosts` on fake hosts: the real read-only script runs locally against each
//! fake host's files, and what it prints is judged against `pki/`. Certificates are made here
//! with rcgen (a kubelet client certificate signed by the cluster's CA, one by another CA).

use std::path::Path;
use std::sync::{Arc, Mutex};

use kbin::config::Cluster;
use kbin::deploy::certs::{self, Prepared, Report};
use kbin::host::fake::{FakeHost, Logged};
use kbin::host::parallel::Cancel;
use kbin::host::{Node, Output, Remote};
use kbin::pki::onhost::{Local, Status};
use kbin::render::{self, Templates};
use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
use time::{Duration, OffsetDateTime};

const CLUSTER: &str = r#"
[cluster]
name = "certs"
service_cidr = "10.96.0.0/16"
pod_cidr = "10.244.0.0/16"

[[hosts]]
name = "m1"
address = "10.213.0.11"
roles = ["master", "etcd"]

[[hosts]]
name = "n1"
address = "10.213.0.21"
roles = ["node"]

[[hosts]]
name = "n2"
address = "10.213.0.22"
roles = ["node"]

[[hosts]]
name = "n3"
address = "10.213.0.23"
roles = ["node"]
"#;

fn cluster(dir: &Path) -> Cluster {
    std::fs::write(dir.join("cluster.toml"), CLUSTER).unwrap();
    let c = kbin::config::load(&dir.join("cluster.toml")).unwrap();
    kbin::pki::init(&c).unwrap();
    c
}

/// A fake host holding every file kbin would push to it, which runs kbin's scripts locally
/// against its root (paths rewritten) and keeps everything they printed in `printed`.
fn fake(c: &Cluster, name: &str, root: &Path, printed: Arc<Mutex<String>>) -> Arc<FakeHost> {
    let t = Templates::load(c).unwrap();
    let files = render::host_files(c, c.host(name).unwrap(), &t, &render::Options::default()).unwrap();
    render::write_tree(root, &files).unwrap();
    let r = root.to_path_buf();
    Arc::new(FakeHost::new(name, root).respond(move |cmd| {
        let a = &cmd.argv;
        if a.len() < 4 || a[0] != "sh" || a[3] != "kbin-certs" {
            return None;
        }
        let root = r.to_str().unwrap();
        let args: Vec<String> = a[4..].iter().map(|x| x.replacen(":/", &format!(":{root}/"), 1)).collect();
        let out = std::process::Command::new("sh").arg("-c").arg(&a[2]).arg("kbin-certs").args(&args).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap().replace(root, "");
        printed.lock().unwrap().push_str(&stdout);
        Some(Output { status: out.status.code().unwrap_or(1), signal: None, stdout: stdout.into_bytes(), stderr: out.stderr })
    }))
}

/// A client certificate for `cn`, valid for `days`, signed by `issuer`: PEM of the certificate
/// followed by its key, as the kubelet keeps it.
fn kubelet_pem(cn: &str, days: i64, issuer: &Issuer<'_, KeyPair>) -> String {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name.push(DnType::OrganizationName, "system:nodes");
    p.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    p.not_after = OffsetDateTime::now_utc() + Duration::days(days) + Duration::hours(12);
    format!("{}{}", p.signed_by(&key, issuer).unwrap().pem(), key.serialize_pem())
}

fn cluster_ca(c: &Cluster) -> Issuer<'static, KeyPair> {
    let pki = c.pki_dir();
    let key = KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).unwrap()).unwrap();
    Issuer::from_ca_cert_pem(&std::fs::read_to_string(pki.join("ca.crt")).unwrap(), key).unwrap()
}

fn other_ca() -> Issuer<'static, KeyPair> {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "kubernetes-ca");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    Issuer::new(p, key)
}

struct Setup {
    _tmp: tempfile::TempDir,
    cluster: Cluster,
    fakes: Vec<Arc<FakeHost>>,
    printed: Arc<Mutex<String>>,
}

/// m1 as kbin left it; n1 with a kubelet.crt that differs (n2's), no kube-proxy kubeconfig and a
/// kubelet client certificate expiring in 10 days; n2 with a kubelet client certificate from
/// another CA; n3 unreachable.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let c = cluster(tmp.path());
    let printed = Arc::new(Mutex::new(String::new()));
    let fakes: Vec<Arc<FakeHost>> = ["m1", "n1", "n2"]
        .iter()
        .map(|n| {
            let root = tmp.path().join(format!("root-{n}"));
            std::fs::create_dir_all(&root).unwrap();
            fake(&c, n, &root, printed.clone())
        })
        .collect();
    let ssl = &c.layout.k8s_ssl;
    let cfg = &c.layout.k8s_cfg;
    let (n1, n2) = (&fakes[1], &fakes[2]);
    std::fs::copy(n2.path(&format!("{ssl}/kubelet.crt")), n1.path(&format!("{ssl}/kubelet.crt"))).unwrap();
    std::fs::remove_file(n1.path(&format!("{cfg}/kube-proxy.kubeconfig"))).unwrap();
    std::fs::write(n1.path(&format!("{ssl}/kubelet-client-current.pem")), kubelet_pem("system:node:n1", 10, &cluster_ca(&c))).unwrap();
    std::fs::write(n2.path(&format!("{ssl}/kubelet-client-current.pem")), kubelet_pem("system:node:n2", 300, &other_ca())).unwrap();
    Setup { _tmp: tmp, cluster: c, fakes, printed }
}

fn run(s: &Setup) -> Report {
    let c = &s.cluster;
    let mut conns: Vec<(&kbin::config::Host, Result<Node<'_>, String>)> =
        s.fakes.iter().map(|f| (c.host(f.name()).unwrap(), Ok(Node { host: c.host(f.name()).unwrap(), remote: f.clone() as Arc<dyn Remote> }))).collect();
    conns.push((c.host("n3").unwrap(), Err("n3: connection refused".into())));
    certs::check(&Prepared::new(c).unwrap(), &conns, 2, &Cancel::new(), 30)
}

fn file<'r>(r: &'r Report, host: &str, name: &str) -> &'r kbin::pki::onhost::FileCheck {
    let h = r.hosts.iter().find(|h| h.host == host).unwrap();
    h.files.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{host} has no {name}: {:?}", h.files.iter().map(|f| &f.name).collect::<Vec<_>>()))
}

#[test]
fn hosts_are_judged_against_pki_file_by_file() {
    let s = setup();
    let r = run(&s);
    // m1: everything as kbin placed it, read in one round trip
    let m1 = r.hosts.iter().find(|h| h.host == "m1").unwrap();
    assert!(m1.files.iter().all(|f| f.status == Status::Ok && f.local == Local::Same), "{:#?}", m1.files);
    let names: Vec<&str> = m1.files.iter().map(|f| f.name.as_str()).collect();
    for n in ["ca", "etcd-ca", "front-proxy-ca", "apiserver", "etcd-server", "etcd-peer", "apiserver-etcd-client", "front-proxy-client", "kubeconfig/controller-manager", "kubeconfig/scheduler"] {
        assert!(names.contains(&n), "{n} not checked on m1: {names:?}");
    }
    assert!(!names.contains(&"kubelet-client-current"), "only nodes have a kubelet client certificate");
    assert_eq!(s.fakes[0].commands().len(), 1, "one round trip per host");
    assert!(file(&r, "m1", "apiserver").days_left.unwrap() > 300);
    assert!(file(&r, "m1", "apiserver").subject.as_deref().unwrap().contains("kube-apiserver"));

    // n1: differs, missing, expiring in 10 days
    let k = file(&r, "n1", "kubelet");
    assert_eq!((k.status, k.local), (Status::Differs, Local::Differs), "{k:#?}");
    assert_eq!(file(&r, "n1", "kubeconfig/kube-proxy").status, Status::Missing);
    let kc = file(&r, "n1", "kubelet-client-current");
    assert_eq!((kc.status, kc.local, kc.days_left), (Status::Expiring, Local::NoLocalCopy, Some(10)), "{kc:#?}");
    assert!(kc.subject.as_deref().unwrap().contains("system:node:n1"));
    assert_eq!(file(&r, "n1", "kubeconfig/flannel").status, Status::Ok, "a kubeconfig's client certificate compared with pki/");
    assert_eq!(file(&r, "n1", "kubeconfig/bootstrap").status, Status::Ok, "a token kubeconfig: its CA");

    // n2: a kubelet client certificate with the cluster CA's name but another CA's signature
    let kc = file(&r, "n2", "kubelet-client-current");
    assert_eq!(kc.status, Status::NotSignedByCa, "{kc:#?}");
    assert_eq!(kc.issuer.as_deref(), Some("CN=kubernetes-ca"), "same issuer name: only the signature tells");
    assert_eq!(file(&r, "n2", "kubelet").status, Status::Ok);

    // n3: unreachable
    let n3 = r.hosts.iter().find(|h| h.host == "n3").unwrap();
    assert!(!n3.reachable && n3.files.is_empty());

    let flagged: Vec<(String, Option<String>, String)> = r.problems.iter().map(|p| (p.host.clone(), p.path.clone().map(|x| x.rsplit('/').next().unwrap().to_string()), p.status.clone())).collect();
    let want = [
        ("n1", Some("kubelet.crt"), "differs"),
        ("n1", Some("kube-proxy.kubeconfig"), "missing"),
        ("n1", Some("kubelet-client-current.pem"), "expiring"),
        ("n2", Some("kubelet-client-current.pem"), "not-signed-by-ca"),
        ("n3", None, "unreachable"),
    ];
    assert_eq!(flagged, want.map(|(h, p, st)| (h.to_string(), p.map(String::from), st.to_string())));
    assert!(r.problems.iter().all(|p| !p.hint.is_empty()));

    // exit 1, and the error names host and file with a hint
    let e = certs::verdict(&r).unwrap_err();
    assert_eq!(e.exit() as i32, 1);
    let rendered = kbin::error::render(&e);
    assert!(rendered.contains("5 certificate problems on 3 hosts"), "{rendered}");
    assert!(rendered.contains("n1: /opt/kubernetes/ssl/kubelet.crt: kubelet differs from kbin's copy in pki/"), "{rendered}");
    assert!(rendered.contains("hint: the host holds another certificate; `kbin hosts push`"), "{rendered}");
}

#[test]
fn json_shape() {
    let s = setup();
    let v = serde_json::to_value(run(&s)).unwrap();
    assert_eq!(v["warn_days"], 30);
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.iter().map(|h| h["host"].as_str().unwrap()).collect::<Vec<_>>(), ["m1", "n1", "n2", "n3"]);
    let mut keys: Vec<&str> = hosts[0].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["address", "error", "files", "host", "reachable"]);
    let f = hosts[1]["files"].as_array().unwrap().iter().find(|f| f["name"] == "kubelet-client-current").unwrap();
    let mut keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["days_left", "findings", "issuer", "kind", "local", "name", "not_after", "path", "status", "subject"]);
    assert_eq!((f["status"].as_str(), f["local"].as_str(), f["kind"].as_str(), f["days_left"].as_i64()), (Some("expiring"), Some("no-local-copy"), Some("certificate"), Some(10)));
    assert_eq!(hosts[3]["reachable"], false);
    let p = &v["problems"][0];
    for k in ["host", "path", "status", "message", "hint"] {
        assert!(p.get(k).is_some(), "problem lacks {k}: {p}");
    }
}

#[test]
fn no_key_material_is_read_or_printed() {
    let s = setup();
    let r = run(&s);
    for f in &s.fakes {
        for l in f.log() {
            match l {
                Logged::Run { argv, .. } => {
                    for a in &argv[4..] {
                        assert!(!a.ends_with(".key") && !a.contains("sa.key") && !a.ends_with("token.csv"), "{} was asked for {a}", f.name());
                    }
                }
                other => panic!("{}: only the one script runs, nothing else is read: {other:?}", f.name()),
            }
        }
    }
    let printed = s.printed.lock().unwrap().clone();
    assert!(printed.contains("BEGIN CERTIFICATE") && printed.contains("client-certificate-data"), "{printed}");
    for secret in ["PRIVATE KEY", "client-key-data", "token:"] {
        assert!(!printed.contains(secret), "the hosts printed {secret}");
    }
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("PRIVATE KEY") && !json.contains("client-key-data"));
}

#[test]
fn the_nodes_kubeconfigs_in_the_profile_are_those_the_nodes_get() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cluster(tmp.path());
    let t = Templates::load(&c).unwrap();
    let profile = kbin::pki::profile::Profile::builtin();
    let mut pushed: Vec<String> = render::host_files(&c, c.host("n1").unwrap(), &t, &render::Options::default())
        .unwrap()
        .into_iter()
        .filter(|f| f.source.starts_with("pki/") && f.path.ends_with(".kubeconfig"))
        .map(|f| f.source.trim_start_matches("pki/").to_string())
        .collect();
    let mut marked: Vec<String> = profile.kubeconfigs.iter().filter(|k| k.nodes).map(|k| k.file.clone()).collect();
    pushed.sort();
    marked.sort();
    assert_eq!(pushed, marked, "kubeconfigs.toml `nodes = true` must match what render::host_files pushes to a node as it is");
}

#[test]
fn status_shows_the_days_left_on_the_hosts_and_what_check_hosts_flags() {
    let s = setup();
    let c = &s.cluster;
    let client = kbin::deploy::api_client(c).unwrap();
    // n1 and n2 as read over SSH; n3 unreachable: the local pki's days
    let mut conns: Vec<(&kbin::config::Host, Result<Node<'_>, String>)> =
        s.fakes[1..].iter().map(|f| (c.host(f.name()).unwrap(), Ok(Node { host: c.host(f.name()).unwrap(), remote: f.clone() as Arc<dyn Remote> }))).collect();
    conns.push((c.host("n3").unwrap(), Err("n3: connection refused".into())));
    let hosts = kbin::deploy::status::hosts(c, &conns, &client, 2, &Cancel::new());
    let n1 = &hosts[0];
    assert_eq!(n1.cert_days_left.get("kubelet-client-current"), Some(&10), "{:?}", n1.cert_days_left);
    assert_eq!(n1.cert_days_left.values().min(), Some(&10), "the CERT DAYS column");
    assert!(n1.cert_problems.iter().any(|p| p.contains("kubelet-client-current.pem: kubelet-client-current expires in 10 days")), "{:?}", n1.cert_problems);
    assert!(n1.cert_problems.iter().any(|p| p.contains("kubelet.crt: kubelet differs from kbin's copy")), "{:?}", n1.cert_problems);
    assert!(hosts[1].cert_problems.iter().any(|p| p.contains("is not signed by the ca CA")), "{:?}", hosts[1].cert_problems);
    let n3 = &hosts[2];
    assert!(!n3.reachable && n3.cert_days_left.get("kubelet").is_some_and(|d| *d > 300) && n3.cert_problems.is_empty(), "{n3:?}");
}

/// A deploy re-issues, keys kept, every kbin leaf with fewer than `pki.renew_before_days` left
/// (the pki was issued with 20-day leaves, the file now asks for renewal 30 days ahead) and
/// nothing else: the CAs stay, and a second deploy renews nothing.
#[test]
fn a_deploy_renews_the_leaves_that_expire_within_renew_before_days_and_only_them() {
    let d = tempfile::tempdir().unwrap();
    let short = CLUSTER.replace("[cluster]", "[pki]\nleaf_validity_days = 20\nrenew_before_days = 10\n\n[cluster]");
    std::fs::write(d.path().join("cluster.toml"), &short).unwrap();
    let c = kbin::config::load(&d.path().join("cluster.toml")).unwrap();
    kbin::pki::init(&c).unwrap();
    let pki = c.pki_dir();
    let ca_before = std::fs::read(pki.join("ca.crt")).unwrap();
    let key_before = std::fs::read(pki.join("hosts/m1/apiserver.key")).unwrap();
    assert!(kbin::deploy::adopt::renew_expiring(&deploy_run(&c), &c).unwrap().is_empty(), "20 days left, renewal 10 days ahead: nothing due");

    std::fs::write(d.path().join("cluster.toml"), CLUSTER).unwrap();
    let c = kbin::config::load(&d.path().join("cluster.toml")).unwrap();
    let due: Vec<String> = kbin::pki::expiring(&c, c.pki.renew_before_days).unwrap().into_iter().map(|i| i.name).collect();
    assert!(due.iter().any(|n| n == "apiserver/m1") && due.iter().any(|n| n == "kubelet/n1"), "{due:?}");
    let renewed = kbin::deploy::adopt::renew_expiring(&deploy_run(&c), &c).unwrap();
    assert_eq!(renewed.len(), due.len(), "{renewed:?}");
    assert!(kbin::pki::expiring(&c, 30).unwrap().is_empty(), "every leaf has a year again");
    assert_eq!(std::fs::read(pki.join("ca.crt")).unwrap(), ca_before, "the CA is never touched");
    assert_eq!(std::fs::read(pki.join("hosts/m1/apiserver.key")).unwrap(), key_before, "keys are kept");
    assert!(kbin::deploy::adopt::renew_expiring(&deploy_run(&c), &c).unwrap().is_empty(), "a second deploy renews nothing");
    assert!(kbin::pki::check(&c, 30).unwrap().is_empty(), "the renewed pki checks clean");
}

fn deploy_run(c: &Cluster) -> kbin::engine::Run<'_> {
    kbin::engine::Run { cluster: c, printer: kbin::output::Printer { quiet: true, color: false }, concurrency: 2, cancel: Cancel::new(), timeout: std::time::Duration::from_secs(1), dry_run: false, known: Default::default() }
}
