//! The change engine on fake hosts: the transaction (rollback order, rollback on drop, commit,
//! dry run), converge of services, and the phases of master, node, LB and `up` over it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kbin::config::Cluster;
use kbin::deploy::Ctx;
use kbin::engine::{self, Bins, Change, Item, Rollback, Run, Spec, Tx, converge};
use kbin::deploy::etcd;
use kbin::host::fake::{FakeHost, Logged, ok};
use kbin::host::parallel::Cancel;
use kbin::host::{Node, Output, Remote, Source, WriteOpts};
use kbin::output::Printer;
use kbin::render::Templates;

const UNITS_DIR: &str = "/usr/lib/systemd/system";

/// A fake host whose systemd keeps unit states (`systemctl is-active` answers them; enable,
/// restart, reload, disable --now change them), whose `mv` and `rm` really move and delete, and
/// which answers kbin's facts script with `facts`. `fail` makes commands fail: (argv[0], argv[1]).
struct Host {
    fake: Arc<FakeHost>,
    units: Arc<Mutex<BTreeMap<String, String>>>,
}

fn host(name: &str, root: &Path, running: &[&str], facts: &str, fail: &[(&'static str, &'static str)]) -> Host {
    let units: Arc<Mutex<BTreeMap<String, String>>> = Arc::new(Mutex::new(running.iter().map(|u| (u.to_string(), "active".to_string())).collect()));
    let (u, r, facts, fail) = (units.clone(), root.to_path_buf(), facts.to_string(), fail.to_vec());
    let fake = FakeHost::new(name, root).respond(move |c| {
        let a: Vec<&str> = c.argv.iter().map(String::as_str).collect();
        let local = |p: &str| r.join(p.trim_start_matches('/'));
        if fail.iter().any(|(x, y)| a.first() == Some(x) && a.get(1) == Some(y)) {
            return Some(Output { status: 1, signal: None, stdout: vec![], stderr: format!("{} failed on purpose", a.join(" ")).into_bytes() });
        }
        let mut units = u.lock().unwrap();
        match a.as_slice() {
            ["sh", "-c", _, "kbin-facts", ..] => Some(ok(&facts)),
            ["systemctl", "is-active", "--", list @ ..] => Some(ok(&list.iter().map(|x| format!("{}\n", units.get(*x).map(String::as_str).unwrap_or("inactive"))).collect::<String>())),
            ["systemctl", "restart" | "reload", "--no-block", x] | ["systemctl", "restart" | "reload", x] => {
                units.insert(x.to_string(), "active".into());
                Some(ok(""))
            }
            ["systemctl", "disable", "--now", "--quiet", list @ ..] => {
                for x in list {
                    units.insert(x.to_string(), "inactive".into());
                }
                Some(ok(""))
            }
            ["mv", "-f", from, to] => {
                std::fs::rename(local(from), local(to)).unwrap();
                Some(ok(""))
            }
            ["rm", "-f", rest @ ..] => {
                for p in rest.iter().filter(|p| **p != "--") {
                    let _ = std::fs::remove_file(local(p));
                }
                Some(ok(""))
            }
            _ => None,
        }
    });
    Host { fake: Arc::new(fake), units }
}

impl Host {
    fn node<'c>(&self, cluster: &'c Cluster, name: &str) -> Node<'c> {
        Node { host: cluster.host(name).unwrap(), remote: self.fake.clone() as Arc<dyn Remote> }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.fake.path(p)
    }
    fn systemctl(&self) -> Vec<String> {
        self.fake.commands().into_iter().filter(|a| a[0] == "systemctl" && a[1] != "is-active").map(|a| a[1..].join(" ")).collect()
    }
    fn writes(&self) -> Vec<String> {
        self.fake.log().into_iter().filter_map(|l| if let Logged::Write { path, .. } = l { Some(path) } else { None }).collect()
    }
    fn state(&self, unit: &str) -> String {
        self.units.lock().unwrap().get(unit).cloned().unwrap_or_else(|| "inactive".into())
    }
    /// Nothing was changed on this host: no write, no service touched.
    fn untouched(&self) -> bool {
        self.writes().is_empty() && self.systemctl().is_empty()
    }
}

fn cluster(dir: &Path, text: &str) -> Cluster {
    std::fs::write(dir.join("cluster.toml"), text).unwrap();
    kbin::config::load(&dir.join("cluster.toml")).unwrap()
}

const ONE: &str = "[cluster]\nname = \"t\"\n[[hosts]]\nname = \"m1\"\naddress = \"10.9.0.1\"\nroles = [\"etcd\", \"master\", \"node\"]\n";

fn run(cluster: &Cluster, dry_run: bool) -> Run<'_> {
    Run { cluster, printer: Printer { quiet: true, color: false }, concurrency: 2, cancel: Cancel::new(), timeout: Duration::from_millis(600), dry_run, known: Default::default() }
}

fn item(path: &str, text: &str, unit: &str) -> Item {
    Item::bytes(path, text, 0o644, &[unit])
}

/// Every release binary a role needs, as a few bytes each.
fn bins() -> Bins {
    let mut b = Bins::default();
    for (c, names) in [
        ("etcd", &["etcd", "etcdctl", "etcdutl"][..]),
        ("kube-apiserver", &["kube-apiserver"]),
        ("kube-controller-manager", &["kube-controller-manager"]),
        ("kube-scheduler", &["kube-scheduler"]),
        ("kubectl", &["kubectl"]),
        ("kubelet", &["kubelet"]),
        ("kube-proxy", &["kube-proxy"]),
        ("flanneld", &["flanneld"]),
        ("containerd", &["containerd", "containerd-shim-runc-v2", "ctr"]),
        ("runc", &["runc"]),
        ("crictl", &["crictl"]),
        ("cni-plugins", &["bridge", "host-local", "loopback", "portmap"]),
        ("flannel-cni-plugin", &["flannel-amd64"]),
    ] {
        for n in names {
            b.insert(c, n, Source::bytes(format!("#!/bin/sh\n# {n}\n").into_bytes()));
        }
    }
    b
}

// ---------------------------------------------------------------------------------------------
// The transaction
// ---------------------------------------------------------------------------------------------

#[test]
fn rollback_undoes_in_reverse_order_and_restarts_on_the_previous_files() {
    let d = tempfile::tempdir().unwrap();
    let h = host("m1", d.path(), &["b"], "", &[]);
    std::fs::create_dir_all(h.path("/etc")).unwrap();
    std::fs::write(h.path("/etc/a.conf"), "a=1\n").unwrap();
    let mut tx = Tx::new(h.fake.clone(), UNITS_DIR);
    tx.write("/etc/a.conf", &Source::bytes(b"a=2\n".to_vec()), WriteOpts::mode(0o644)).unwrap();
    tx.write("/etc/new.conf", &Source::bytes(b"n\n".to_vec()), WriteOpts::mode(0o644)).unwrap();
    tx.started("c");
    tx.restarted("b", "restart");
    assert!(matches!(&tx.changes()[0], Change::FileReplaced { path, .. } if path == "/etc/a.conf"));
    assert_eq!(tx.changes()[1], Change::FileCreated { path: "/etc/new.conf".into() });
    let r = tx.rollback();
    assert_eq!(r, Rollback::Done { what: "previous files restored, stopped c, restarted b on them".into() });
    // reverse order: the started unit stops first, then the files (the newest first), then
    // systemd re-reads and the restarted unit comes back on the old files
    let cmds: Vec<String> = h.fake.commands().into_iter().map(|a| a.join(" ")).collect();
    assert_eq!(cmds[0], "systemctl disable --now --quiet c");
    assert_eq!(cmds[1], "rm -f /etc/new.conf");
    assert!(cmds[2].starts_with("mv -f /etc/a.conf.kbin-backup-") && cmds[2].ends_with(" /etc/a.conf"), "{}", cmds[2]);
    assert_eq!(cmds[3..], ["systemctl daemon-reload", "systemctl restart b"]);
    assert_eq!(std::fs::read_to_string(h.path("/etc/a.conf")).unwrap(), "a=1\n");
    assert!(!h.path("/etc/new.conf").exists());
    assert_eq!(std::fs::read_dir(h.path("/etc")).unwrap().count(), 1, "no backup left behind");
}

#[test]
fn a_dropped_transaction_rolls_back_on_its_own() {
    let d = tempfile::tempdir().unwrap();
    let h = host("m1", d.path(), &[], "", &[]);
    std::fs::create_dir_all(h.path("/etc")).unwrap();
    std::fs::write(h.path("/etc/a.conf"), "a=1\n").unwrap();
    let early_return = || -> Result<(), String> {
        let mut tx = Tx::new(h.fake.clone(), UNITS_DIR);
        tx.write("/etc/a.conf", &Source::bytes(b"a=2\n".to_vec()), WriteOpts::mode(0o644)).map_err(|e| e.chain())?;
        tx.started("a");
        Err("verification failed".into()) // `?` and early returns need no cleanup code
    };
    assert!(early_return().is_err());
    assert_eq!(std::fs::read_to_string(h.path("/etc/a.conf")).unwrap(), "a=1\n");
    assert_eq!(h.systemctl(), ["disable --now --quiet a", "daemon-reload"]);
    // also on a panic
    let panics = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut tx = Tx::new(h.fake.clone(), UNITS_DIR);
        tx.write("/etc/a.conf", &Source::bytes(b"a=3\n".to_vec()), WriteOpts::mode(0o644)).unwrap();
        panic!("a bug in a phase");
    }));
    assert!(panics.is_err());
    assert_eq!(std::fs::read_to_string(h.path("/etc/a.conf")).unwrap(), "a=1\n");
}

#[test]
fn a_committed_transaction_keeps_its_changes_and_drops_the_backups() {
    let d = tempfile::tempdir().unwrap();
    let h = host("m1", d.path(), &[], "", &[]);
    std::fs::create_dir_all(h.path("/etc")).unwrap();
    std::fs::write(h.path("/etc/a.conf"), "a=1\n").unwrap();
    {
        let mut tx = Tx::new(h.fake.clone(), UNITS_DIR);
        tx.write("/etc/a.conf", &Source::bytes(b"a=2\n".to_vec()), WriteOpts::mode(0o644)).unwrap();
        tx.started("a");
        let kept = tx.commit();
        assert_eq!(kept.len(), 2);
    }
    assert_eq!(std::fs::read_to_string(h.path("/etc/a.conf")).unwrap(), "a=2\n");
    assert!(h.systemctl().is_empty(), "nothing undone");
    let left: Vec<_> = std::fs::read_dir(h.path("/etc")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(left, ["a.conf"], "the backup is gone");
}

/// A cluster of one host, m1, holding `/etc/b.conf` (`b=1`) for a unit `b` that runs.
fn b_conf_host(d: &Path) -> (Cluster, Host) {
    let c = cluster(d, ONE);
    let h = host("m1", &d.join("root"), &["b"], "", &[]);
    std::fs::create_dir_all(h.path("/etc")).unwrap();
    std::fs::write(h.path("/etc/b.conf"), "b=1\n").unwrap();
    (c, h)
}

#[test]
fn a_push_takes_the_runs_word_once_for_a_file_found_in_place_and_reads_it_otherwise() {
    // the relay's check read the large files already; the push after it does not read them again
    let d = tempfile::tempdir().unwrap();
    let (c, h) = b_conf_host(d.path());
    let node = h.node(&c, "m1");
    let printer = Printer { quiet: true, color: false };
    let items = [item("/etc/b.conf", "b=1\n", "b")];
    let known = engine::Known::default();
    let push = |known: &engine::Known| {
        let mut tx = Tx::new(h.fake.clone(), UNITS_DIR);
        let p = engine::push_known(&printer, &node, UNITS_DIR, &items, &mut tx, false, known).unwrap();
        tx.commit();
        p
    };
    let reads = || h.fake.log().iter().filter(|l| matches!(l, Logged::Sha256(p) if p == "/etc/b.conf")).count();

    known.note("m1", "/etc/b.conf", items[0].src.sha256());
    // the read-only check before a push (which hosts have anything to do) takes the word too,
    // and leaves it for the push
    assert!(!engine::needs_change(&node, &items, &["b"], &known).unwrap());
    assert_eq!(reads(), 0, "{:?}", h.fake.log());
    let p = push(&known);
    assert!(p.changed.is_empty() && p.restart.is_empty());
    assert_eq!(reads(), 0, "taken on the run's word: {:?}", h.fake.log());
    // the word is used once: the next push reads the file itself
    assert!(push(&known).changed.is_empty());
    assert_eq!(reads(), 1);
    // a word about another host, or another content, is not taken: the file is read and replaced
    std::fs::write(h.path("/etc/b.conf"), "b=0\n").unwrap();
    known.note("m2", "/etc/b.conf", items[0].src.sha256());
    known.note("m1", "/etc/b.conf", "0".repeat(64).as_str());
    assert_eq!(push(&known).changed, ["/etc/b.conf"]);
    assert_eq!(std::fs::read_to_string(h.path("/etc/b.conf")).unwrap(), "b=1\n");
}

#[test]
fn a_dry_run_plans_on_the_same_path_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (c, h) = b_conf_host(d.path());
    let node = h.node(&c, "m1");
    let items = [item("/etc/b.conf", "b=2\n", "b"), item("/etc/new.conf", "n\n", "b")];
    let mut tx = Tx::new(h.fake.clone(), UNITS_DIR);
    let plan = engine::push(&Printer { quiet: true, color: false }, &node, UNITS_DIR, &items, &mut tx, true).unwrap();
    assert_eq!(plan.changed, ["/etc/b.conf", "/etc/new.conf"]);
    assert!(plan.restart.contains("b") && plan.bytes_sent == 0);
    assert!(tx.changes().is_empty());
    drop(tx);
    let spec = Spec { items: &items, units: &["b"], ..Default::default() };
    let o = converge(&run(&c, true), &node, "test", &spec, &|_| panic!("a dry run verifies nothing")).unwrap();
    assert_eq!((o.changed.len(), o.restarted.as_slice(), o.dry_run), (2, &["b".to_string()][..], true));
    assert!(h.untouched(), "{:?}", h.fake.log());
    assert_eq!(std::fs::read_to_string(h.path("/etc/b.conf")).unwrap(), "b=1\n");
}

// ---------------------------------------------------------------------------------------------
// Converge (was deploy's unit tests)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_fresh_host_gets_its_files_and_its_services_started_in_order() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), ONE);
    let h = host("m1", &d.path().join("root"), &[], "", &[]);
    let items = [item("/usr/lib/systemd/system/a.service", "[Service]\n", "a"), item("/etc/b.conf", "b=1\n", "b")];
    let spec = Spec { items: &items, units: &["a", "b"], ..Default::default() };
    let o = converge(&run(&c, false), &h.node(&c, "m1"), "test", &spec, &|_| Ok(())).unwrap();
    assert_eq!(o.started, ["a", "b"]);
    assert_eq!(o.changed.len(), 2);
    assert_eq!(h.systemctl(), ["daemon-reload", "enable --quiet a b", "restart a", "restart b"]);
    assert_eq!(std::fs::read_to_string(h.path("/etc/b.conf")).unwrap(), "b=1\n");
}

#[test]
fn the_after_start_hook_runs_once_its_unit_started_and_before_the_units_after_it() {
    // a node's images go into containerd before the kubelet starts (no pod finds one missing)
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), ONE);
    let h = host("m1", &d.path().join("root"), &[], "", &[]);
    let items = [item("/usr/lib/systemd/system/a.service", "[Service]\n", "a"), item("/etc/b.conf", "b=1\n", "b")];
    let seen = Mutex::new(Vec::new());
    let hook = |_: &kbin::host::Node<'_>| -> Result<(), String> {
        seen.lock().unwrap().push(h.systemctl());
        Ok(())
    };
    let spec = Spec { items: &items, units: &["a", "b"], after_start: Some(("a", &hook)), ..Default::default() };
    let o = converge(&run(&c, false), &h.node(&c, "m1"), "test", &spec, &|_| Ok(())).unwrap();
    assert_eq!(o.started, ["a", "b"]);
    assert_eq!(*seen.lock().unwrap(), [["daemon-reload", "enable --quiet a b", "restart a"]], "once, right after a");
    assert_eq!(h.systemctl().last().unwrap(), "restart b");

    // a hook that fails stops the start there and rolls back like a failed verification
    let d = tempfile::tempdir().unwrap();
    let h = host("m1", &d.path().join("root"), &[], "", &[]);
    let failing = |_: &kbin::host::Node<'_>| -> Result<(), String> { Err("image import: no space left".into()) };
    let spec = Spec { items: &items, units: &["a", "b"], after_start: Some(("a", &failing)), ..Default::default() };
    let f = converge(&run(&c, false), &h.node(&c, "m1"), "test", &spec, &|_| panic!("nothing is verified after a failed start")).unwrap_err();
    assert_eq!(f.error, "image import: no space left");
    assert!(!h.systemctl().contains(&"restart b".to_string()), "b never started: {:?}", h.systemctl());
    assert!(f.rollback.is_done(), "{:?}", f.rollback);
    assert!(!h.path("/etc/b.conf").exists(), "the files the push created are gone");
}

#[test]
fn the_before_start_hook_runs_once_before_its_unit_or_the_first_after_it_and_not_when_none_starts() {
    // a node waits for its control plane before flanneld and the kubelet, not before containerd
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), ONE);
    let items = [item("/etc/a.conf", "a=1\n", "a"), item("/etc/b.conf", "b=1\n", "b"), item("/etc/c.conf", "c=1\n", "c")];
    let converge_with = |h: &Host, items: &[kbin::engine::Item], hook: &dyn Fn(&kbin::host::Node<'_>) -> Result<(), String>| {
        let spec = Spec { items, units: &["a", "b", "c"], before_start: Some(("b", hook)), ..Default::default() };
        converge(&run(&c, false), &h.node(&c, "m1"), "test", &spec, &|_| Ok(()))
    };
    let seen = Mutex::new(Vec::new());
    let h = host("m1", &d.path().join("fresh"), &[], "", &[]);
    let hook = |_: &kbin::host::Node<'_>| -> Result<(), String> {
        seen.lock().unwrap().push(h.systemctl());
        Ok(())
    };
    converge_with(&h, &items, &hook).unwrap();
    assert_eq!(*seen.lock().unwrap(), [["daemon-reload", "enable --quiet a b c", "restart a"]], "once, after a and right before b");

    // only c restarts (a and b run on unchanged files): the hook still runs before it
    let h = host("m1", &d.path().join("c-only"), &["a", "b", "c"], "", &[]);
    for (f, t) in [("a", "a=1\n"), ("b", "b=1\n"), ("c", "c=0\n")] {
        std::fs::create_dir_all(h.path("/etc")).unwrap();
        std::fs::write(h.path(&format!("/etc/{f}.conf")), t).unwrap();
    }
    let calls = Mutex::new(0);
    let count = |_: &kbin::host::Node<'_>| -> Result<(), String> {
        *calls.lock().unwrap() += 1;
        Ok(())
    };
    let o = converge_with(&h, &items, &count).unwrap();
    assert_eq!((o.restarted.as_slice(), *calls.lock().unwrap()), (&["c".to_string()][..], 1));

    // only a restarts: the units the hook guards do not start, so it does not run
    std::fs::write(h.path("/etc/a.conf"), "a=0\n").unwrap();
    let o = converge_with(&h, &items, &count).unwrap();
    assert_eq!((o.restarted.as_slice(), *calls.lock().unwrap()), (&["a".to_string()][..], 1));

    // a hook that fails stops the start there and rolls back: b and c never start
    let h = host("m1", &d.path().join("failing"), &[], "", &[]);
    let failing = |_: &kbin::host::Node<'_>| -> Result<(), String> { Err("the control plane did not come up".into()) };
    let f = converge_with(&h, &items, &failing).unwrap_err();
    assert_eq!(f.error, "the control plane did not come up");
    assert!(!h.systemctl().iter().any(|c| c == "restart b" || c == "restart c"), "{:?}", h.systemctl());
    assert!(f.rollback.is_done(), "{:?}", f.rollback);
    assert!(!h.path("/etc/b.conf").exists(), "the files the push created are gone");
}

#[test]
fn an_up_to_date_host_is_sent_nothing_and_nothing_restarts() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), ONE);
    let h = host("m1", &d.path().join("root"), &["b"], "", &[]);
    std::fs::create_dir_all(h.path("/etc")).unwrap();
    std::fs::write(h.path("/etc/b.conf"), "b=1\n").unwrap();
    let items = [item("/etc/b.conf", "b=1\n", "b")];
    let spec = Spec { items: &items, units: &["b"], ..Default::default() };
    let o = converge(&run(&c, false), &h.node(&c, "m1"), "test", &spec, &|_| panic!("nothing changed: nothing to verify")).unwrap();
    assert!(o.changed.is_empty() && o.started.is_empty() && o.restarted.is_empty());
    assert!(h.untouched());
}

#[test]
fn a_failed_verification_restores_the_previous_files_and_restarts_on_them() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), ONE);
    let h = host("m1", &d.path().join("root"), &["b"], "", &[]);
    std::fs::create_dir_all(h.path("/etc")).unwrap();
    std::fs::write(h.path("/etc/b.conf"), "b=1\n").unwrap();
    let items = [item("/etc/b.conf", "b=2\n", "b"), item("/etc/new.conf", "n\n", "b")];
    let spec = Spec { items: &items, units: &["b"], ..Default::default() };
    let f = converge(&run(&c, false), &h.node(&c, "m1"), "test", &spec, &|_| Err("b does not answer".into())).unwrap_err();
    assert_eq!((f.phase.as_str(), f.error.as_str()), ("verify", "b does not answer"));
    assert!(f.rollback.line().unwrap().contains("previous files restored"));
    assert_eq!(std::fs::read_to_string(h.path("/etc/b.conf")).unwrap(), "b=1\n", "the old content is back");
    assert!(!h.path("/etc/new.conf").exists(), "a file the push created is gone");
    assert_eq!(h.systemctl(), ["restart b", "daemon-reload", "restart b"]);
    let left: Vec<_> = std::fs::read_dir(h.path("/etc")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(left, ["b.conf"], "no backup left behind");
}

#[test]
fn a_release_switch_is_a_symlink_swap_that_restarts_its_unit_and_is_switched_back_when_it_fails() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), ONE);
    let h = host("m1", &d.path().join("root"), &[], "", &[]);
    let n = h.node(&c, "m1");
    let release = |v: &str| {
        let file = format!("/opt/kubernetes/releases/{v}/kubelet");
        vec![Item::bytes(&file, &format!("kubelet {v}\n"), 0o755, &["kubelet"]), Item::link("/opt/kubernetes/bin/kubelet", &file, vec!["kubelet".into()])]
    };
    let link = || std::fs::read_link(h.path("/opt/kubernetes/bin/kubelet")).unwrap().to_string_lossy().into_owned();
    let (v1, v2) = (release("v1.34.2"), release("v1.34.3"));
    let spec = |items| Spec { items, units: &["kubelet"], ..Default::default() };
    converge(&run(&c, false), &n, "node", &spec(&v1), &|_| Ok(())).unwrap();
    assert_eq!(link(), "/opt/kubernetes/releases/v1.34.2/kubelet");
    assert!(!engine::needs_change(&n, &v1, &["kubelet"], &engine::Known::default()).unwrap(), "a link that points where it should is no change");
    assert!(engine::needs_change(&n, &v2, &["kubelet"], &engine::Known::default()).unwrap());

    // the new release does not verify: the link points back at once, kubelet restarts on it
    let before = h.systemctl().len();
    let new_fails = |_: &Node<'_>| if link().contains("v1.34.3") { Err("kubelet does not register".to_string()) } else { Ok(()) };
    let f = converge(&run(&c, false), &n, "node", &spec(&v2), &new_fails).unwrap_err();
    assert_eq!(f.error, "kubelet does not register");
    assert!(f.rollback.is_done(), "{:?}", f.rollback);
    assert_eq!(link(), "/opt/kubernetes/releases/v1.34.2/kubelet");
    assert!(!h.path("/opt/kubernetes/releases/v1.34.3/kubelet").exists(), "the release the push created is gone again");
    assert_eq!(h.systemctl()[before..], ["restart kubelet", "daemon-reload", "restart kubelet"]);

    // a dry run says it would switch and changes nothing
    let o = converge(&run(&c, true), &n, "node", &spec(&v2), &|_| Ok(())).unwrap();
    assert!(o.changed.contains(&"/opt/kubernetes/bin/kubelet".to_string()) && o.restarted == ["kubelet"], "{o:?}");
    assert_eq!(link(), "/opt/kubernetes/releases/v1.34.2/kubelet");

    // it verifies: switched, restarted once, and the previous release stays on the host
    let before = h.systemctl().len();
    let o = converge(&run(&c, false), &n, "node", &spec(&v2), &|_| Ok(())).unwrap();
    assert_eq!(o.restarted, ["kubelet"]);
    assert_eq!(link(), "/opt/kubernetes/releases/v1.34.3/kubelet");
    assert_eq!(h.systemctl()[before..], ["restart kubelet"]);
    assert_eq!(std::fs::read_to_string(h.path("/opt/kubernetes/releases/v1.34.2/kubelet")).unwrap(), "kubelet v1.34.2\n");
    let left: Vec<_> = std::fs::read_dir(h.path("/opt/kubernetes/bin")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(left, ["kubelet"], "no backup of the old link left behind");

    // switching back to a release still on the host sends no byte
    let o = converge(&run(&c, false), &n, "node", &spec(&v1), &|_| Ok(())).unwrap();
    assert_eq!((o.bytes_sent, o.changed.as_slice()), (0, &["/opt/kubernetes/bin/kubelet".to_string()][..]));
}

#[test]
fn a_rollback_waits_until_the_restored_version_answers_again() {
    // regression (real apiserver): the rollback said "restarted kube-apiserver on them" while the
    // restored apiserver still needed seconds to answer; it now verifies the previous version
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), ONE);
    let h = host("m1", &d.path().join("root"), &["b"], "", &[]);
    std::fs::create_dir_all(h.path("/etc")).unwrap();
    std::fs::write(h.path("/etc/b.conf"), "b=1\n").unwrap();
    let items = [item("/etc/b.conf", "b=2\n", "b")];
    let spec = Spec { items: &items, units: &["b"], ..Default::default() };
    // the new file never answers; the old one does, once it is back
    let verify = |_: &Node<'_>| if std::fs::read_to_string(h.path("/etc/b.conf")).unwrap() == "b=1\n" { Ok(()) } else { Err("b does not answer".to_string()) };
    let f = converge(&run(&c, false), &h.node(&c, "m1"), "test", &spec, &verify).unwrap_err();
    assert_eq!(f.rollback, Rollback::Done { what: "previous files restored, restarted b on them, healthy again".into() });
    // and when even the previous version does not answer, the rollback says so
    let f = converge(&run(&c, false), &h.node(&c, "m1"), "test", &spec, &|_| Err("b does not answer".into())).unwrap_err();
    assert!(matches!(&f.rollback, Rollback::Incomplete { error, .. } if error.starts_with("still not healthy: b does not answer")), "{:?}", f.rollback);
}

/// A master whose controller-manager and scheduler are in systemd's auto-restart for the first
/// `down_polls` polls, and whose restart counter grows by `restarts` on every read.
fn restarting_master(root: &Path, down_polls: usize, restarts: usize) -> Arc<FakeHost> {
    let polls = std::sync::atomic::AtomicUsize::new(0);
    let reads = std::sync::atomic::AtomicUsize::new(0);
    Arc::new(FakeHost::new("m1", root).respond(move |c| {
        let a: Vec<&str> = c.argv.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["systemctl", "is-active", "--", units @ ..] => {
                let state = if polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < down_polls { "activating" } else { "active" };
                Some(ok(&format!("{state}\n").repeat(units.len())))
            }
            ["systemctl", "show", "-p", "NRestarts", "--value", "--", units @ ..] => {
                let n = reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) * restarts;
                Some(ok(&format!("{n}\n").repeat(units.len())))
            }
            _ => None,
        }
    }))
}

#[test]
fn a_controller_manager_restarting_after_losing_its_lease_is_waited_for() {
    // regression (real components): the controller-manager holding the leader lease exits when
    // its apiserver restarts and systemd starts it again 5 s later; `master add` called such a
    // master failed and rolled it back
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), ONE);
    let node = |r: Arc<FakeHost>| Node { host: c.host("m1").unwrap(), remote: r as Arc<dyn Remote> };
    let (timeout, cancel) = (Duration::from_secs(2), Cancel::new());
    let settled = |r| kbin::deploy::master::control_plane_settled(timeout, &cancel, &node(r));
    assert_eq!(settled(restarting_master(d.path(), 3, 0)), Ok(()));
    let e = settled(restarting_master(d.path(), 0, 1)).unwrap_err();
    assert!(e.contains("keep restarting"), "a crash loop is not running: {e}");
    let e = settled(restarting_master(d.path(), usize::MAX, 0)).unwrap_err();
    assert!(e.contains("kube-controller-manager and kube-scheduler not running") && e.contains("waited"), "{e}");
    // regression (real components): after an apiserver-only restart, the controller-manager lost
    // its lease and exited once a few seconds after the apiserver was back, inside the quiet
    // window; `pki rotate-encryption-key` then rolled the master back. One restart is waited for.
    let once = |root: &Path| {
        let reads = std::sync::atomic::AtomicUsize::new(0);
        Arc::new(FakeHost::new("m1", root).respond(move |c| {
            let a: Vec<&str> = c.argv.iter().map(String::as_str).collect();
            match a.as_slice() {
                ["systemctl", "is-active", "--", units @ ..] => Some(ok(&"active\n".repeat(units.len()))),
                ["systemctl", "show", "-p", "NRestarts", "--value", "--", units @ ..] => {
                    let n = usize::from(reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0);
                    Some(ok(&format!("{n}\n").repeat(units.len())))
                }
                _ => None,
            }
        }))
    };
    let long = Duration::from_secs(10);
    assert_eq!(kbin::deploy::master::control_plane_settled(long, &cancel, &node(once(d.path()))), Ok(()));
}

#[test]
fn a_refused_precheck_changes_no_service_and_puts_the_files_back() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), ONE);
    let h = host("m1", &d.path().join("root"), &[], "", &[("nginx", "-t")]);
    let items = [item("/etc/nginx/nginx.conf", "bad\n", "nginx")];
    let spec = Spec { items: &items, units: &["nginx"], reload: &["nginx"], precheck: Some(("nginx -t", kbin::host::Cmd::new(["nginx", "-t"]))), ..Default::default() };
    let f = converge(&run(&c, false), &h.node(&c, "m1"), "lb", &spec, &|_| Ok(())).unwrap_err();
    assert!(f.error.starts_with("nginx -t failed: nginx -t failed on purpose"), "{}", f.error);
    assert!(!h.systemctl().iter().any(|c| c.starts_with("restart") || c.starts_with("reload") || c.starts_with("enable")), "{:?}", h.systemctl());
    assert!(!h.path("/etc/nginx/nginx.conf").exists());
}

// ---------------------------------------------------------------------------------------------
// Masters, nodes, LB
// ---------------------------------------------------------------------------------------------

const CLUSTER: &str = r#"[cluster]
name = "t"
[apiserver]
vip = "10.9.0.100"
[[hosts]]
name = "m1"
address = "10.9.0.1"
roles = ["etcd", "master"]
[[hosts]]
name = "n1"
address = "10.9.0.2"
roles = ["node"]
[[hosts]]
name = "lb1"
address = "10.9.0.3"
roles = ["lb"]
"#;

/// A cluster file with its pki (the super-admin certificate the deploys talk to apiservers with).
fn cluster_with_pki(dir: &Path) -> Cluster {
    let c = cluster(dir, CLUSTER);
    kbin::pki::init(&c).unwrap();
    c
}

fn with_ctx<T>(c: &Cluster, dry_run: bool, f: impl FnOnce(&Ctx<'_>) -> T) -> T {
    let templates = Templates::load(c).unwrap();
    let bins = bins();
    let ctx = Ctx { run: run(c, dry_run), templates: &templates, bins: &bins };
    f(&ctx)
}

const FACTS_OK: &str = "arch=x86_64\nsystemd=1\nfound=cmd:nginx\nfound=cmd:keepalived\nfound=path:/usr/lib/nginx/modules/ngx_stream_module.so\nfound=iface:eth0\n";

#[test]
fn a_master_that_does_not_become_ready_is_rolled_back_and_the_lb_is_not_touched() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster_with_pki(d.path());
    let m1 = host("m1", &d.path().join("m1"), &[], FACTS_OK, &[]);
    let lb1 = host("lb1", &d.path().join("lb1"), &["nginx", "keepalived"], FACTS_OK, &[]);
    let e = with_ctx(&c, false, |ctx| kbin::deploy::master::deploy(ctx, &[m1.node(&c, "m1")], &[lb1.node(&c, "lb1")]).unwrap_err());
    assert_eq!(e.exit(), kbin::Exit::Failure);
    let text = kbin::error::render(&e);
    assert!(text.contains("[verify] m1: ") && text.contains("[rollback] m1: previous files restored, stopped kube-apiserver kube-controller-manager kube-scheduler"), "{text}");
    // started in dependency order, stopped again
    assert_eq!(m1.systemctl()[..2], ["daemon-reload", "enable --quiet kube-apiserver kube-controller-manager kube-scheduler"]);
    assert_eq!(m1.systemctl()[2..5], ["restart kube-apiserver", "restart kube-controller-manager", "restart kube-scheduler"]);
    assert_eq!(m1.state("kube-apiserver"), "inactive");
    assert!(!m1.path("/opt/kubernetes/bin/kube-apiserver").exists(), "the binaries it pushed are gone");
    assert!(lb1.untouched(), "the LB upstreams were not changed");
}

#[test]
fn a_master_dry_run_plans_the_files_and_starts_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster_with_pki(d.path());
    let m1 = host("m1", &d.path().join("m1"), &[], FACTS_OK, &[]);
    let r = with_ctx(&c, true, |ctx| kbin::deploy::master::deploy(ctx, &[m1.node(&c, "m1")], &[]).unwrap());
    assert_eq!(r.masters[0].started, ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]);
    assert!(r.masters[0].changed.iter().any(|p| p == "/usr/lib/systemd/system/kube-apiserver.service"));
    assert!(m1.untouched());
}

#[test]
fn a_node_is_prepared_before_its_services_start_and_rolled_back_when_it_does_not_register() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster_with_pki(d.path());
    let n1 = host("n1", &d.path().join("n1"), &[], FACTS_OK, &[]);
    let m1 = host("m1", &d.path().join("m1"), &[], FACTS_OK, &[]);
    // dry run: the apiserver is not asked; everything is planned, nothing changes
    let planned = with_ctx(&c, true, |ctx| kbin::deploy::node::deploy(ctx, &[n1.node(&c, "n1")], &[m1.node(&c, "m1")]).unwrap());
    assert_eq!(planned[0].started, ["containerd", "flanneld", "kubelet", "kube-proxy"]);
    assert!(n1.untouched());
    // a real run with no apiserver that answers: refused before the node is touched
    let e = with_ctx(&c, false, |ctx| kbin::deploy::node::deploy(ctx, &[n1.node(&c, "n1")], &[m1.node(&c, "m1")]).unwrap_err());
    assert_eq!(e.exit(), kbin::Exit::Refused, "{}", kbin::error::render(&e));
    assert!(n1.untouched());
    // converge itself, past the apiserver check: the preparation runs before any start, and a
    // node that does not come back is put back as it was
    let node = n1.node(&c, "n1");
    let e = with_ctx(&c, false, |ctx| {
        let items = kbin::deploy::items(ctx, node.host, kbin::render::Component::Node).unwrap();
        let spec = Spec { items: &items, units: &kbin::config::node_units(&c), reload: &[], precheck: Some(("node preparation", kbin::host::Cmd::new(["kbin-prepare"]))), ..Default::default() };
        converge(ctx, &node, "node", &spec, &|_| Err("node n1 has not registered with the apiserver".into())).unwrap_err()
    });
    let cmds: Vec<String> = n1.fake.commands().into_iter().map(|a| a.join(" ")).collect();
    let prepare = cmds.iter().position(|c| c == "kbin-prepare").unwrap();
    let first_start = cmds.iter().position(|c| c.starts_with("systemctl restart")).unwrap();
    assert!(prepare < first_start);
    assert_eq!(n1.systemctl()[2..6], ["restart containerd", "restart flanneld", "restart kubelet", "restart kube-proxy"]);
    assert!(e.rollback.is_done() && n1.state("kubelet") == "inactive", "{:?}", e.rollback);
}

#[test]
fn a_node_alongside_the_control_plane_starts_containerd_first_and_is_rolled_back_when_the_control_plane_fails() {
    // `up` converges the nodes while etcd and the masters start: files, containerd and images
    // need no apiserver; flanneld and the kubelet wait for it, and a control plane that does not
    // come up takes the node back to how it was
    let d = tempfile::tempdir().unwrap();
    let c = cluster_with_pki(d.path());
    let n1 = host("n1", &d.path().join("n1"), &[], FACTS_OK, &[]);
    let control = engine::Latch::default();
    let e = with_ctx(&c, false, |ctx| {
        std::thread::scope(|s| {
            s.spawn(|| {
                let t = std::time::Instant::now();
                while n1.state("containerd") != "active" {
                    assert!(t.elapsed() < Duration::from_secs(10), "containerd never started: {:?}", n1.systemctl());
                    std::thread::sleep(Duration::from_millis(10));
                }
                std::thread::sleep(Duration::from_millis(100));
                assert_eq!(n1.state("flanneld"), "inactive", "flanneld waits for the control plane");
                assert_eq!(n1.state("kubelet"), "inactive", "the kubelet waits for the control plane");
                control.set(Err("etcd on m1 did not become healthy".into()));
            });
            kbin::deploy::node::converge_each(ctx, &[n1.node(&c, "n1")], &kbin::deploy::node::ControlPlane::Later(&control), &|_| Ok(())).unwrap_err()
        })
    });
    let text = kbin::error::render(&e);
    assert!(text.contains("n1: the control plane did not come up: etcd on m1 did not become healthy"), "{text}");
    let started: Vec<String> = n1.systemctl().into_iter().filter(|c| c.starts_with("restart ")).collect();
    assert_eq!(started, ["restart containerd"], "nothing after containerd started");
    assert_eq!(n1.state("containerd"), "inactive", "containerd stopped again: {:?}", n1.systemctl());
    assert!(!n1.path("/opt/kubernetes/bin/kubelet").exists(), "the files it got are gone");
}

#[test]
fn lb_upstreams_change_by_an_nginx_reload_after_nginx_t() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster_with_pki(d.path());
    let lb1 = host("lb1", &d.path().join("lb1"), &["nginx", "keepalived"], FACTS_OK, &[]);
    std::fs::create_dir_all(lb1.path("/etc/nginx")).unwrap();
    std::fs::write(lb1.path("/etc/nginx/nginx.conf"), "old upstreams\n").unwrap();
    let r = with_ctx(&c, false, |ctx| kbin::deploy::lb::update_upstreams(ctx, &[lb1.node(&c, "lb1")]).unwrap());
    assert_eq!(r[0].restarted, ["nginx"]);
    assert!(std::fs::read_to_string(lb1.path("/etc/nginx/nginx.conf")).unwrap().contains("server 10.9.0.1:6443"));
    assert_eq!(lb1.systemctl(), ["reload nginx"], "reloaded, never restarted");
    assert!(lb1.fake.commands().iter().any(|a| a[..2] == ["nginx", "-t"]));
    // again: nothing to do
    let again = with_ctx(&c, false, |ctx| kbin::deploy::lb::update_upstreams(ctx, &[lb1.node(&c, "lb1")]).unwrap());
    assert!(again[0].changed.is_empty() && lb1.systemctl().len() == 1);
}

#[test]
fn an_lb_whose_nginx_config_is_refused_keeps_its_previous_config_and_service() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster_with_pki(d.path());
    let lb1 = host("lb1", &d.path().join("lb1"), &["nginx", "keepalived"], FACTS_OK, &[("nginx", "-t")]);
    std::fs::create_dir_all(lb1.path("/etc/nginx")).unwrap();
    std::fs::write(lb1.path("/etc/nginx/nginx.conf"), "old upstreams\n").unwrap();
    let e = with_ctx(&c, false, |ctx| kbin::deploy::lb::deploy(ctx, &[lb1.node(&c, "lb1")]).unwrap_err());
    let text = kbin::error::render(&e);
    assert!(text.contains("[verify] lb1: nginx -t failed") && text.contains("[rollback] lb1: previous files restored"), "{text}");
    assert_eq!(std::fs::read_to_string(lb1.path("/etc/nginx/nginx.conf")).unwrap(), "old upstreams\n");
    assert!(!lb1.systemctl().iter().any(|c| c.starts_with("restart") || c.starts_with("reload")), "{:?}", lb1.systemctl());
}

#[test]
fn lb_preflight_refuses_missing_packages_and_interface() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster_with_pki(d.path());
    let lb1 = host("lb1", &d.path().join("lb1"), &[], "arch=x86_64\nsystemd=1\nfound=cmd:nginx\nbusy=6443\n", &[]);
    let e = with_ctx(&c, false, |ctx| kbin::deploy::lb::deploy(ctx, &[lb1.node(&c, "lb1")]).unwrap_err());
    assert_eq!(e.exit(), kbin::Exit::Refused);
    let d = e.details();
    for want in ["keepalived is not installed", "stream module", "no network interface eth0", "port 6443 is already in use"] {
        assert!(d.iter().any(|l| l.starts_with("[preflight] lb1: ") && l.contains(want)), "{want}: {d:?}");
    }
    assert!(lb1.untouched());
}

// ---------------------------------------------------------------------------------------------
// etcd's parts on the engine: its push with the initial-* hook, its refusal
// ---------------------------------------------------------------------------------------------

const ETCD: &str = "[cluster]\nname = \"t\"\n[[hosts]]\nname = \"e1\"\naddress = \"10.9.0.1\"\nroles = [\"etcd\", \"master\"]\n";

fn etcd_item(path: &str, text: &str, restarts: bool) -> Item {
    let mut it = Item::bytes(path, text, 0o644, if restarts { &["etcd"] } else { &[] });
    if path.ends_with("etcd.yml") {
        it.significant = Some(kbin::deploy::etcd::significant_config);
    }
    it
}

fn etcd_setup() -> (tempfile::TempDir, Cluster) {
    let d = tempfile::tempdir().unwrap();
    let c = kbin::config::parse(&d.path().join("cluster.toml"), ETCD).unwrap();
    (d, c)
}

#[test]
fn push_sends_only_what_changed_and_dry_run_writes_nothing() {
    let (d, c) = etcd_setup();
    let fake = FakeHost::new("e1", &d.path().join("root"));
    let remote: Arc<dyn Remote> = Arc::new(fake);
    let node = Node { host: &c.hosts[0], remote: remote.clone() };
    let printer = Printer { quiet: true, color: false };
    let cfg = "/opt/etcd/cfg/etcd.yml";
    let items = vec![etcd_item(cfg, "name: e1\ninitial-cluster-state: new\n", true), etcd_item("/opt/etcd/ssl/ca.crt", "CA\n", true)];
    let push = |items: &[Item], dry_run: bool| {
        let mut tx = Tx::new(remote.clone(), "/usr/lib/systemd/system");
        let p = engine::push(&printer, &node, "/usr/lib/systemd/system", items, &mut tx, dry_run).unwrap();
        tx.commit();
        p
    };

    let dry = push(&items, true);
    assert_eq!(dry.changed.len(), 2);
    assert!(remote.read_file(cfg).unwrap().is_none(), "--dry-run wrote nothing");

    let first = push(&items, false);
    assert!(first.restart.contains("etcd") && first.changed.len() == 2 && first.bytes_sent > 0);
    let again = push(&items, false);
    assert!(again.changed.is_empty() && again.bytes_sent == 0 && again.restart.is_empty(), "unchanged files are not sent");

    // a change of initial-* keys only: written, but no restart
    let p = push(&[etcd_item(cfg, "name: e1\ninitial-cluster-state: existing\n", true)], false);
    assert_eq!(p.changed, [cfg]);
    assert!(p.restart.is_empty());
    // a real config change restarts
    assert!(push(&[etcd_item(cfg, "name: e1\ninitial-cluster-state: existing\nquota-backend-bytes: 1\n", true)], false).restart.contains("etcd"));
}

#[test]
fn preflight_refuses_foreign_data_busy_ports_and_wrong_arch() {
    let (d, c) = etcd_setup();
    let facts = |stdout: &'static str| {
        let fake = FakeHost::new("e1", &d.path().join("root")).respond(move |_| Some(ok(stdout)));
        engine::facts::gather(&Node { host: &c.hosts[0], remote: Arc::new(fake) }, &etcd::probe(&c)).unwrap()
    };
    let fresh = facts("arch=x86_64\nsystemd=1\nunit etcd=inactive\n");
    assert!(etcd::refusal(&c, &fresh).is_empty());
    let foreign = facts("arch=x86_64\nunit etcd=inactive\nfound=path:/var/lib/etcd/default.etcd/member\n");
    assert!(etcd::refusal(&c, &foreign)[0].contains("holds data of an etcd member kbin did not set up"));
    let busy = facts("arch=x86_64\nunit etcd=inactive\nbusy=2379\n");
    assert_eq!(etcd::refusal(&c, &busy), ["port 2379 is already in use by another program"]);
    let arm = facts("arch=aarch64\nunit etcd=inactive\n");
    assert!(etcd::refusal(&c, &arm)[0].contains("architecture is aarch64"));
    // kbin's own running member: its data and ports are expected
    let root = d.path().join("root/opt/etcd/cfg");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("etcd.yml"), "initial-cluster-token: \"etcd-t\"\n").unwrap();
    let ours = facts("arch=x86_64\nunit etcd=active\nfound=path:/var/lib/etcd/default.etcd/member\nbusy=2379\nbusy=2380\n");
    assert_eq!(etcd::found_token(&c, &ours).as_deref(), Some("etcd-t"));
    assert!(etcd::refusal(&c, &ours).is_empty(), "{:?}", etcd::refusal(&c, &ours));
    std::fs::write(root.join("etcd.yml"), "initial-cluster-token: \"etcd-other\"\n").unwrap();
    let other = facts("arch=x86_64\nunit etcd=active\nfound=path:/var/lib/etcd/default.etcd/member\n");
    assert!(etcd::refusal(&c, &other)[0].contains("belongs to another etcd cluster"));
}

#[test]
fn an_etcd_push_that_fails_on_one_member_rolls_back_the_others_on_drop() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), "[cluster]\nname = \"t\"\n[[hosts]]\nname = \"e1\"\naddress = \"10.9.0.1\"\nroles = [\"etcd\", \"master\"]\n[[hosts]]\nname = \"e2\"\naddress = \"10.9.0.2\"\nroles = [\"etcd\"]\n");
    kbin::pki::init(&c).unwrap();
    let e1 = host("e1", &d.path().join("e1"), &[], "", &[]);
    let e2 = host("e2", &d.path().join("e2"), &[], "", &[("sh", "-c")]); // etcd does not start on e2
    let templates = Templates::load(&c).unwrap();
    let ctx = etcd::Ctx::new(run(&c, false)).unwrap();
    let facts = vec![engine::Facts { arch: "x86_64".into(), ..Default::default() }; 2];
    let e = etcd::rollout(&ctx, &[e1.node(&c, "e1"), e2.node(&c, "e2")], &facts, &templates, &bins()).unwrap_err();
    let text = kbin::error::render(&e);
    assert!(text.lines().any(|l| l.starts_with("  [push] e2: `sudo sh -c 'systemctl daemon-reload") && l.ends_with("failed on purpose")), "one line naming host, phase, command and cause: {text}");
    // e1 had started etcd on its new files: its transaction was dropped with the error, so etcd
    // is stopped again and every file it got is gone
    assert_eq!(e1.state("etcd"), "inactive");
    assert!(e1.systemctl().contains(&"disable --now --quiet etcd".to_string()), "{:?}", e1.systemctl());
    for f in ["/opt/etcd/bin/etcd", "/opt/etcd/cfg/etcd.yml", "/usr/lib/systemd/system/etcd.service"] {
        assert!(!e1.path(f).exists(), "{f} left on e1");
    }
}

// ---------------------------------------------------------------------------------------------
// up
// ---------------------------------------------------------------------------------------------

#[test]
fn up_refuses_a_node_whose_kubelet_port_is_taken_before_etcd_or_any_master_is_touched() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster_with_pki(d.path());
    let m1 = host("m1", &d.path().join("m1"), &[], FACTS_OK, &[]);
    let n1 = host("n1", &d.path().join("n1"), &[], "arch=x86_64\nsystemd=1\nbusy=10250\n", &[]);
    let lb1 = host("lb1", &d.path().join("lb1"), &[], FACTS_OK, &[]);
    let templates = Templates::load(&c).unwrap();
    let fetched = Mutex::new(false);
    let fetch = |_: &Cluster, _: &[kbin::render::Component]| -> kbin::Result<Bins> {
        *fetched.lock().unwrap() = true;
        Ok(bins())
    };
    let inputs = kbin::deploy::up::Inputs { run: run(&c, false), templates: &templates, etcd_timeout: Duration::from_secs(1), fetch: &fetch, relay: kbin::engine::relay::Mode::Direct };
    let nodes = [m1.node(&c, "m1"), n1.node(&c, "n1"), lb1.node(&c, "lb1")];
    let mut report = kbin::deploy::up::Report::default();
    let e = kbin::deploy::up::run_on(&inputs, &nodes, &mut report).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Refused);
    let text = kbin::error::render(&e);
    assert!(text.starts_with("error: preflight refused the up run on 1 of 3 hosts; nothing was changed\n"), "{text}");
    assert!(text.contains("\n  [preflight] n1: port 10250 is already in use by another program\n"), "{text}");
    assert!(!*fetched.lock().unwrap(), "nothing was downloaded");
    assert!(report.stages.is_empty());
    for h in [&m1, &n1, &lb1] {
        assert!(h.untouched(), "{:?}", h.fake.log());
    }
    // every host was asked every question of its roles, once
    let facts_runs = |h: &Host| h.fake.commands().iter().filter(|a| a.get(3).map(String::as_str) == Some("kbin-facts")).count();
    assert_eq!((facts_runs(&m1), facts_runs(&n1), facts_runs(&lb1)), (1, 1, 1));
    let asked: Vec<String> = m1.fake.commands().into_iter().find(|a| a.get(3).map(String::as_str) == Some("kbin-facts")).unwrap();
    for q in ["unit:etcd", "unit:kube-apiserver", "port:2379", "port:6443", "port:10257"] {
        assert!(asked.iter().any(|a| a == q), "{q}: {asked:?}");
    }
}

#[test]
fn up_refuses_a_cgroup_v1_node_before_etcd_or_any_master_is_touched() {
    // the kubelet of 1.35 and later exits on cgroup v1 unless failCgroupV1 = false: found by the
    // preflight, not by a crash loop in the middle of `up`
    let d = tempfile::tempdir().unwrap();
    let c = cluster_with_pki(d.path());
    assert!(c.kubernetes_version.as_str() >= "v1.35", "the default release refuses cgroup v1: {}", c.kubernetes_version);
    let m1 = host("m1", &d.path().join("m1"), &[], &format!("{FACTS_OK}cgroup=tmpfs\n"), &[]);
    let n1 = host("n1", &d.path().join("n1"), &[], &format!("{FACTS_OK}cgroup=tmpfs\n"), &[]);
    let lb1 = host("lb1", &d.path().join("lb1"), &[], FACTS_OK, &[]);
    let templates = Templates::load(&c).unwrap();
    let fetch = |_: &Cluster, _: &[kbin::render::Component]| -> kbin::Result<Bins> { panic!("nothing is downloaded on a refusal") };
    let inputs = kbin::deploy::up::Inputs { run: run(&c, false), templates: &templates, etcd_timeout: Duration::from_secs(1), fetch: &fetch, relay: kbin::engine::relay::Mode::Direct };
    let nodes = [m1.node(&c, "m1"), n1.node(&c, "n1"), lb1.node(&c, "lb1")];
    let mut report = kbin::deploy::up::Report::default();
    let e = kbin::deploy::up::run_on(&inputs, &nodes, &mut report).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Refused);
    let text = kbin::error::render(&e);
    assert!(text.starts_with("error: preflight refused the up run on 1 of 3 hosts; nothing was changed\n"), "only the node is refused (m1 is no node): {text}");
    assert!(text.contains("[preflight] n1: the host runs cgroup v1, and the kubelet of Kubernetes v1.37.2 refuses to start on it") && text.contains("systemd.unified_cgroup_hierarchy=1") && text.contains("failCgroupV1 = false"), "{text}");
    assert!(report.stages.is_empty());
    for h in [&m1, &n1, &lb1] {
        assert!(h.untouched(), "{:?}", h.fake.log());
    }
    // with failCgroupV1 = false, said knowingly, the same hosts pass the preflight
    let allowed = cluster(d.path(), &format!("{CLUSTER}[kubelet.config]\nfailCgroupV1 = false\n"));
    let facts = kbin::host::check::parse_facts("arch=x86_64\ncgroup_fs=tmpfs\nend=1\n").unwrap();
    assert_eq!(facts.cgroup, Some(kbin::host::check::Cgroup::V1));
    assert_eq!(kbin::host::check::cgroup_refusal(&allowed, facts.cgroup, &allowed.kubernetes_version), None);
}

#[test]
fn up_refuses_to_move_running_hosts_to_another_release_and_names_upgrade() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster_with_pki(d.path());
    let m1 = host("m1", &d.path().join("m1"), &[], FACTS_OK, &[]);
    let n1 = host("n1", &d.path().join("n1"), &[], FACTS_OK, &[]);
    let lb1 = host("lb1", &d.path().join("lb1"), &[], FACTS_OK, &[]);
    // n1 runs another release than the cluster file's
    std::fs::create_dir_all(n1.path("/opt/kubernetes/bin")).unwrap();
    std::os::unix::fs::symlink("/opt/kubernetes/releases/v1.33.4/kubelet", n1.path("/opt/kubernetes/bin/kubelet")).unwrap();
    let templates = Templates::load(&c).unwrap();
    let fetch = |_: &Cluster, _: &[kbin::render::Component]| -> kbin::Result<Bins> { panic!("nothing is downloaded on a refusal") };
    let inputs = kbin::deploy::up::Inputs { run: run(&c, false), templates: &templates, etcd_timeout: Duration::from_secs(1), fetch: &fetch, relay: kbin::engine::relay::Mode::Direct };
    let nodes = [m1.node(&c, "m1"), n1.node(&c, "n1"), lb1.node(&c, "lb1")];
    let e = kbin::deploy::up::run_on(&inputs, &nodes, &mut kbin::deploy::up::Report::default()).unwrap_err();
    assert_eq!(e.exit(), kbin::Exit::Refused);
    let text = kbin::error::render(&e);
    assert!(text.contains(&format!("n1: kubelet runs v1.33.4, the cluster file says {}", c.kubernetes_version)) && text.contains("hint: `kbin upgrade` moves them"), "{text}");
    for h in [&m1, &n1, &lb1] {
        assert!(h.untouched(), "{:?}", h.fake.log());
    }
}

#[test]
fn the_vip_belongs_to_the_highest_priority_lb_host() {
    // regression (real keepalived under load): the BACKUP whose keepalived came up first held the
    // VIP for a moment and `lb deploy` reported it as the holder; the MASTER preempts it seconds
    // later, so the deploy waits for the highest priority to hold it
    let d = tempfile::tempdir().unwrap();
    let text = "[cluster]\nname = \"t\"\n[apiserver]\nvip = \"10.9.0.100\"\n[[hosts]]\nname = \"m1\"\naddress = \"10.9.0.1\"\nroles = [\"etcd\", \"master\"]\n[[hosts]]\nname = \"lb1\"\naddress = \"10.9.0.3\"\nroles = [\"lb\"]\nlb_priority = 90\n[[hosts]]\nname = \"lb2\"\naddress = \"10.9.0.4\"\nroles = [\"lb\"]\nlb_priority = 120\n";
    let c = cluster(d.path(), text);
    let (a, b) = (host("lb1", &d.path().join("a"), &[], "", &[]), host("lb2", &d.path().join("b"), &[], "", &[]));
    let lbs = [a.node(&c, "lb1"), b.node(&c, "lb2")];
    assert_eq!(kbin::deploy::lb::top_priority(&lbs), Some("lb2"));
    let tie = cluster(d.path(), &text.replace("lb_priority = 120", "lb_priority = 90"));
    let lbs = [a.node(&tie, "lb1"), b.node(&tie, "lb2")];
    assert_eq!(kbin::deploy::lb::top_priority(&lbs), None, "a tie names no holder");
}

// ---------------------------------------------------------------------------------------------
// `hosts push` on the engine: one transaction per host
// ---------------------------------------------------------------------------------------------

fn push_setup(d: &Path) -> (Cluster, Host, kbin::deploy::hosts::Push) {
    let c = cluster(d, ONE);
    let h = host("m1", &d.join("root"), &[], "", &[]);
    std::fs::create_dir_all(h.path("/etc")).unwrap();
    std::fs::write(h.path("/etc/app.conf"), "old\n").unwrap();
    std::fs::write(d.join("a"), "new\n").unwrap();
    std::fs::write(d.join("b"), "b\n").unwrap();
    // the second file's directory is the first file: it cannot be written
    let files = vec![(d.join("a"), "/etc/app.conf".to_string()), (d.join("b"), "/etc/app.conf/b".to_string())];
    (c, h, kbin::deploy::hosts::Push { files, mode: 0o644, owner: None, backup: false, relay: kbin::engine::relay::Mode::Direct })
}

#[test]
fn a_push_that_fails_on_the_second_file_puts_the_first_back() {
    let d = tempfile::tempdir().unwrap();
    let (c, h, spec) = push_setup(d.path());
    let r = kbin::deploy::hosts::push_node(&run(&c, false), &h.node(&c, "m1"), &spec.items().unwrap(), false, None, false);
    let f = r.failure.expect("the second file fails");
    assert!(!r.ok && f.phase == "push" && f.error.contains("/etc/app.conf/b"), "{f:?}");
    assert_eq!(f.rollback, Rollback::Done { what: "previous files restored".into() });
    assert_eq!(h.writes(), ["/etc/app.conf"], "the first file was written, then restored");
    assert_eq!(std::fs::read_to_string(h.path("/etc/app.conf")).unwrap(), "old\n");
    let left: Vec<_> = std::fs::read_dir(h.path("/etc")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(left, ["app.conf"], "no backup left behind");
}

#[test]
fn rendered_files_written_together_are_undone_together_when_one_of_them_fails() {
    let d = tempfile::tempdir().unwrap();
    let (c, h, _) = push_setup(d.path());
    let node = h.node(&c, "m1");
    // in-memory files (what kbin renders) go to the host in one write_files call
    let items = [item("/etc/app.conf", "new\n", "app"), item("/etc/new.conf", "n\n", "app"), item("/etc/app.conf/b", "b\n", "app"), item("/etc/after.conf", "a\n", "app")];
    let mut tx = Tx::new(node.remote.clone(), "/etc/systemd/system");
    let e = engine::push(&Printer { quiet: true, color: false }, &node, "/etc/systemd/system", &items, &mut tx, false).unwrap_err();
    assert!(e.to_string().contains("/etc/app.conf/b"), "{e}");
    let kinds: Vec<String> = tx.changes().iter().map(|c| serde_json::to_value(c).unwrap()["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["file-replaced", "file-created"], "the two files written before the failure are recorded");
    assert_eq!(tx.rollback(), Rollback::Done { what: "previous files restored".into() });
    assert_eq!(std::fs::read_to_string(h.path("/etc/app.conf")).unwrap(), "old\n");
    assert!(!h.path("/etc/new.conf").exists() && !h.path("/etc/after.conf").exists());
}

#[test]
fn a_push_dry_run_plans_both_files_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (c, h, mut spec) = push_setup(d.path());
    spec.files[1].1 = "/etc/other.conf".into();
    let r = kbin::deploy::hosts::push_node(&run(&c, true), &h.node(&c, "m1"), &spec.items().unwrap(), false, None, false);
    assert!(r.ok && r.changed && r.dry_run && r.bytes_sent == 0, "{r:?}");
    assert_eq!(r.files, ["/etc/app.conf", "/etc/other.conf"]);
    assert!(h.fake.commands().is_empty() && h.writes().is_empty(), "{:?}", h.fake.log());
    assert_eq!(std::fs::read_to_string(h.path("/etc/app.conf")).unwrap(), "old\n");
    assert!(!h.path("/etc/other.conf").exists());
}

#[test]
fn a_push_with_backup_keeps_the_replaced_file_and_a_second_push_sends_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (c, h, mut spec) = push_setup(d.path());
    spec.files.truncate(1);
    spec.backup = true;
    let items = spec.items().unwrap();
    let r = kbin::deploy::hosts::push_node(&run(&c, false), &h.node(&c, "m1"), &items, true, None, false);
    assert!(r.ok && r.changed && r.bytes_sent == 4, "{r:?}");
    assert_eq!(r.backups.len(), 1);
    assert_eq!(std::fs::read_to_string(h.path(&r.backups[0])).unwrap(), "old\n");
    assert_eq!(std::fs::read_to_string(h.path("/etc/app.conf")).unwrap(), "new\n");
    let again = kbin::deploy::hosts::push_node(&run(&c, false), &h.node(&c, "m1"), &items, true, None, false);
    assert!(again.ok && !again.changed && again.bytes_sent == 0, "{again:?}");
}

/// `hosts check` and the deploy preflight judge a host by the same rules: the port table of each
/// role and the architecture of the cluster's binaries.
#[test]
fn hosts_check_and_the_preflight_agree_on_ports_and_architecture() {
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), ONE);
    let m1 = &c.hosts[0];
    let ports: Vec<u16> = kbin::host::check::required_ports(&c, m1).iter().map(|p| p.0).collect();
    let mut probed: Vec<u16> = kbin::deploy::up::probe(&c, m1).ask.iter().filter_map(|q| q.strip_prefix("port:")?.parse().ok()).collect();
    probed.sort_unstable();
    assert_eq!(ports, probed, "the same ports, from one table");
    let mut f = kbin::host::check::parse_facts("arch=aarch64\nsystemd=252\nlisten_hex=280A\nend=1\n").unwrap();
    f.sudo = "root".into();
    let checks: Vec<String> = kbin::host::check::evaluate_host(&c, m1, &f).into_iter().filter(|p| p.check == "arch" || p.check == "ports").map(|p| p.message).collect();
    assert_eq!(checks, ["architecture is aarch64, but the cluster installs amd64 binaries (artifacts.arch)", "ports already in use: 10250 (kubelet)"]);
    let fake = FakeHost::new("m1", &d.path().join("root")).respond(|_| Some(ok("arch=aarch64\nsystemd=1\nbusy=10250\n")));
    let facts = engine::facts::gather(&Node { host: m1, remote: Arc::new(fake) }, &kbin::deploy::node::probe(&c)).unwrap();
    assert_eq!(kbin::deploy::node::refusal(&c, &facts), [checks[0].as_str(), "port 10250 is already in use by another program"]);
}

#[test]
fn the_relay_plans_only_the_parts_a_run_fetched() {
    // regression (lab): `upgrade --rollback` fetches the master and node binaries only, and the
    // relay's plan asked for etcd's too on an etcd host ("the etcd release artifact has no file etcd")
    let d = tempfile::tempdir().unwrap();
    let c = cluster_with_pki(d.path());
    let templates = Templates::load(&c).unwrap();
    let mut partial = Bins::default();
    for (comp, name) in [("kube-apiserver", "kube-apiserver"), ("kube-controller-manager", "kube-controller-manager"), ("kube-scheduler", "kube-scheduler"), ("kubectl", "kubectl")] {
        partial.insert(comp, name, Source::bytes(format!("{name}\n").into_bytes()));
    }
    let ctx = Ctx { run: run(&c, false), templates: &templates, bins: &partial };
    let m1 = c.host("m1").unwrap();
    use kbin::render::Component::{Etcd, Master};
    let items = kbin::deploy::up::relay_items(&ctx, m1, &[Master]).unwrap();
    assert!(items.iter().any(|i| i.path.ends_with("/kube-apiserver")) && !items.iter().any(|i| i.path.contains("etcd/bin")), "{:?}", items.iter().map(|i| &i.path).collect::<Vec<_>>());
    assert!(kbin::deploy::up::relay_items(&ctx, m1, &[Etcd, Master]).is_err(), "etcd's binaries were not fetched");
}

#[test]
fn the_relay_measures_the_operators_link_and_sends_directly_over_a_fast_one() {
    // two hosts lack the same 2 MiB file: worth relaying over a slow link; the fake hosts' link is
    // memory, so the default measures it and sends directly; --direct does not even measure
    use kbin::engine::relay::{self, Mode};
    let d = tempfile::tempdir().unwrap();
    let c = cluster(d.path(), "[cluster]\nname = \"t\"\n[[hosts]]\nname = \"a\"\naddress = \"10.9.0.1\"\nroles = [\"etcd\", \"master\", \"node\"]\n[[hosts]]\nname = \"b\"\naddress = \"10.9.0.2\"\nroles = [\"node\"]\n");
    let (a, b) = (host("a", &d.path().join("a"), &[], "", &[]), host("b", &d.path().join("b"), &[], "", &[]));
    let nodes = [a.node(&c, "a"), b.node(&c, "b")];
    let big = Item::bytes("/opt/bin/big", &"x".repeat(2 << 20), 0o755, &[]);
    let plans = vec![vec![big.clone()], vec![big]];
    let probes = |h: &Host| h.fake.commands().iter().filter(|a| a.join(" ") == "sh -c cat >/dev/null").count();

    let r = relay::stage(&run(&c, false), &nodes, &plans, Mode::Direct).unwrap();
    assert_eq!((r.mode.as_str(), r.link_bytes_per_sec, probes(&a) + probes(&b)), ("direct", None, 0));

    let r = relay::stage(&run(&c, false), &nodes, &plans, Mode::Auto).unwrap();
    assert_eq!(r.mode, "direct");
    assert!(r.link_bytes_per_sec.unwrap() >= relay::FAST_LINK && !r.compress, "{r:?}");
    assert_eq!((probes(&a), probes(&b)), (1, 1), "each host that needs the file measured, once");
    assert!(r.routes.is_empty() && r.operator_bytes == 0);
    assert!(r.summary().starts_with("direct (operator link "), "{}", r.summary());
}
