//! `kbin upgrade` on fake hosts: the rules that refuse an upgrade before any host changes (exit
//! 2). The skew and etcd rules themselves are unit-tested (`deploy::upgrade`, `config::release`);
//! the lab (tests/lab/e2e-upgrade.sh) runs the upgrades on real clusters.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kbin::config::Cluster;
use kbin::deploy::upgrade::{Options, Report};
use kbin::host::fake::{FakeHost, Logged, ok};
use kbin::host::parallel::Cancel;
use kbin::host::{Node, Remote};
use kbin::output::Printer;

const FILE: &str = r#"[cluster]
name = "t"
kubernetes_version = "v1.37.2"
etcd_version = "v3.6.17"
[[hosts]]
name = "m1"
address = "10.9.0.1"
roles = ["etcd", "master"]
[[hosts]]
name = "n1"
address = "10.9.0.2"
roles = ["node"]
"#;

/// A host that answers `--version` of the Kubernetes binaries with `k8s`, etcd's with `etcd`,
/// and the facts script with `facts`; its etcd.yml is this cluster's.
fn fake(name: &str, root: &Path, k8s: &str, etcd: &str, facts: &str) -> Arc<FakeHost> {
    fake_v2store(name, root, k8s, etcd, facts, None)
}

/// [`fake`], whose `etcdutl check v2store` answers `v2store` (exit 1, this on stderr) when given.
fn fake_v2store(name: &str, root: &Path, k8s: &str, etcd: &str, facts: &str, v2store: Option<&'static str>) -> Arc<FakeHost> {
    std::fs::create_dir_all(root.join("opt/etcd/cfg")).unwrap();
    std::fs::write(root.join("opt/etcd/cfg/etcd.yml"), "initial-cluster-token: \"etcd-t\"\n").unwrap();
    let (k8s, etcd, facts) = (k8s.to_string(), etcd.to_string(), facts.to_string());
    Arc::new(FakeHost::new(name, root).respond(move |c| {
        let a: Vec<&str> = c.argv.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["sh", "-c", _, "kbin-facts", ..] => Some(ok(&format!("{facts}version etcd=etcd Version: {etcd}\n"))),
            [bin, "--version"] if bin.ends_with("/kube-apiserver") || bin.ends_with("/kubelet") => Some(ok(&format!("Kubernetes {k8s}\n"))),
            [bin, "check", "v2store", "--data-dir", _] if bin.ends_with("/etcdutl") => Some(match v2store {
                Some(err) => kbin::host::Output { status: 1, signal: None, stdout: vec![], stderr: err.as_bytes().to_vec() },
                None => ok("No custom content found in both v2store and WAL records.\n"),
            }),
            _ => None,
        }
    }))
}

/// The cluster file with its pki (the etcd client certificate the preflight reads).
fn cluster(dir: &Path, text: &str) -> Cluster {
    std::fs::write(dir.join("cluster.toml"), text).unwrap();
    let c = kbin::config::load(&dir.join("cluster.toml")).unwrap();
    kbin::pki::init(&c).unwrap();
    c
}

/// Runs the upgrade on the two fake hosts; returns the error's rendering after checking that it
/// is a refusal, that nothing was fetched, and that no host was changed.
fn refused(c: &Cluster, m1: &Arc<FakeHost>, n1: &Arc<FakeHost>) -> String {
    let fetch = |_: &Cluster, _: &[kbin::render::Component]| -> kbin::Result<kbin::engine::Bins> { panic!("nothing is downloaded on a refusal") };
    let opts = kbin::deploy::Opts { printer: Printer { quiet: true, color: false }, concurrency: Some(2), cancel: Cancel::new(), timeout: Duration::from_millis(500), dry_run: false, accept_new_host_keys: false, fetch: &fetch, relay: kbin::engine::relay::Mode::Direct };
    let nodes = [Node { host: c.host("m1").unwrap(), remote: m1.clone() as Arc<dyn Remote> }, Node { host: c.host("n1").unwrap(), remote: n1.clone() as Arc<dyn Remote> }];
    let mut report = Report::default();
    let e = kbin::deploy::upgrade::upgrade_on(&opts, c, &nodes, None, Options { rollback: false, batch: 1 }, &mut report).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Refused, "{}", kbin::error::render(&e));
    for h in [m1, n1] {
        let changed: Vec<Logged> = h.log().into_iter().filter(|l| matches!(l, Logged::Write { .. } | Logged::Link { .. })).collect();
        assert!(changed.is_empty(), "{changed:?}");
        let ran: Vec<String> = h.commands().into_iter().map(|a| a.join(" ")).filter(|a| !a.starts_with("sh -c") && !a.ends_with("--version") && !a.contains("etcdutl check v2store")).collect();
        assert!(ran.is_empty(), "only read-only commands ran: {ran:?}");
    }
    assert!(!c.state_dir.join("upgrade.json").exists() && !c.state_dir.join("backups").exists(), "no record, no snapshot");
    kbin::error::render(&e)
}

#[test]
fn an_upgrade_that_skips_a_minor_release_is_refused_before_any_host_changes() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), FILE);
    let facts = "arch=x86_64\nsystemd=1\ncgroup=cgroup2fs\n";
    let (m1, n1) = (fake("m1", &d.path().join("m1"), "v1.35.4", "3.6.17", facts), fake("n1", &d.path().join("n1"), "v1.35.4", "3.6.17", facts));
    let text = refused(&c, &m1, &n1);
    assert!(text.contains("the upgrade to v1.37.2 breaks the version skew rules; nothing was changed"), "{text}");
    assert!(text.contains("the control plane moves one minor release at a time: m1 runs v1.35.4, and v1.37.2 skips v1.36") && text.contains("hint: upgrade one minor release at a time"), "{text}");
}

#[test]
fn an_etcd_below_the_patch_that_may_move_to_3_6_is_refused_naming_the_patch_first() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), FILE);
    let facts = "arch=x86_64\nsystemd=1\ncgroup=cgroup2fs\n";
    // Kubernetes is where the file says; etcd runs 3.5.21, the file says 3.6.17
    let (m1, n1) = (fake("m1", &d.path().join("m1"), "v1.37.2", "3.5.21", facts), fake("n1", &d.path().join("n1"), "v1.37.2", "3.5.21", facts));
    let text = refused(&c, &m1, &n1);
    assert!(text.contains("preflight refused the etcd run") && text.contains("m1: etcd moves from 3.5 to 3.6 only from v3.5.26 or later: this member runs v3.5.21"), "{text}");
    assert!(text.contains("upgrade to the newest 3.5 patch first"), "{text}");
}

#[test]
fn an_etcd_that_would_go_back_a_minor_release_is_refused_with_the_restore_to_run() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), &FILE.replace("v3.6.17", "v3.5.36"));
    let facts = "arch=x86_64\nsystemd=1\ncgroup=cgroup2fs\n";
    let (m1, n1) = (fake("m1", &d.path().join("m1"), "v1.37.2", "3.6.17", facts), fake("n1", &d.path().join("n1"), "v1.37.2", "3.6.17", facts));
    let text = refused(&c, &m1, &n1);
    assert!(text.contains("m1: etcd never goes back a minor release: this member runs v3.6.17") && text.contains("kbin etcd restore"), "{text}");
}

#[test]
fn an_upgrade_to_a_kubelet_that_refuses_cgroup_v1_is_refused_naming_the_node() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), FILE);
    let (m1, n1) = (fake("m1", &d.path().join("m1"), "v1.36.3", "3.6.17", "arch=x86_64\nsystemd=1\ncgroup=cgroup2fs\n"), fake("n1", &d.path().join("n1"), "v1.36.3", "3.6.17", "arch=x86_64\nsystemd=1\ncgroup=tmpfs\n"));
    let text = refused(&c, &m1, &n1);
    assert!(text.contains("the kubelet of v1.37.2 would not start on some nodes; nothing was changed") && text.contains("n1: the host runs cgroup v1"), "{text}");
    assert!(!text.contains("m1: the host runs cgroup v1"), "m1 is no node: {text}");
}

#[test]
fn a_v2store_with_custom_content_stops_the_move_to_etcd_3_6_before_any_change() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), FILE);
    let facts = "arch=x86_64\nsystemd=1\ncgroup=cgroup2fs\n";
    let err = Some("Error: detected custom content in v2store\n");
    let (m1, n1) = (fake_v2store("m1", &d.path().join("m1"), "v1.37.2", "3.5.36", facts, err), fake("n1", &d.path().join("n1"), "v1.37.2", "3.5.36", facts));
    let text = refused(&c, &m1, &n1);
    assert!(text.contains("m1: the etcd v2store holds data etcd 3.6 cannot read; nothing was changed") && text.contains("detected custom content in v2store"), "{text}");
    assert!(text.contains("hint: follow etcd's v3.5 -> v3.6 upgrade guide"), "{text}");
    assert!(m1.commands().iter().any(|a| a.join(" ") == "/opt/etcd/bin/etcdutl check v2store --data-dir /var/lib/etcd/default.etcd"), "{:?}", m1.commands());
}
