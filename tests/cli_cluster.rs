//! `kbin master add`, `node add`, `lb deploy`, `up`, `repoint-nodes`: what the real binary does
//! before it reaches any host (argument and cluster-file handling). The lab tests
//! (tests/lab/e2e-cluster.sh, e2e-repoint.sh) cover the rest on real hosts.

mod common;

use common::*;

/// A port nothing listens on, so every SSH connection is refused at once.
const UNREACHABLE: &str = "[ssh]\nport = 1\nconnect_timeout_secs = 1\n";

#[test]
fn master_add_of_a_new_address_that_cannot_be_reached_leaves_the_file_alone() {
    let d = Dir::with_cluster(&format!("# comment kept\n{SMALL}{UNREACHABLE}"));
    d.kbin(&["pki", "init"]).ok();
    let before = std::fs::read(d.path().join("cluster.toml")).unwrap();
    for args in [&["master", "add", "127.0.0.9", "--name", "m9", "--dry-run"][..], &["master", "add", "127.0.0.9", "--name", "m9"], &["master", "add", "127.0.0.9"]] {
        let out = d.kbin(args).fails_with(2);
        assert!(out.stderr().contains("cannot reach 1 of 1 hosts; nothing was changed"), "{}", out.stderr());
        assert_eq!(std::fs::read(d.path().join("cluster.toml")).unwrap(), before, "{args:?} wrote the file");
        assert!(!d.pki().join("hosts/m9").exists(), "{args:?} issued certificates");
    }
}

#[test]
fn master_add_refuses_a_host_without_the_role_and_unknown_names() {
    let d = Dir::with_cluster(&format!("{SMALL}[[hosts]]\nname = \"w1\"\naddress = \"127.0.0.8\"\nroles = [\"node\"]\n"));
    let out = d.kbin(&["master", "add", "w1"]).fails_with(2);
    assert!(out.stderr().contains("w1 does not have the master role") && out.stderr().contains("hint: add \"master\" to the roles of w1"), "{}", out.stderr());
    let out = d.kbin(&["master", "add", "nosuch"]).fails_with(1);
    assert!(out.stderr().contains("no host \"nosuch\"") && out.stderr().contains("hint:"), "{}", out.stderr());
}

#[test]
fn repoint_needs_a_target_and_a_vip_for_vip() {
    let d = Dir::with_cluster(SMALL);
    d.kbin(&["repoint-nodes"]).fails_with(2); // clap: one of --vip / --endpoint
    let out = d.kbin(&["repoint-nodes", "--vip"]).fails_with(2);
    assert!(out.stderr().contains("sets no apiserver.vip") && out.stderr().contains("hint: set apiserver.vip"), "{}", out.stderr());
    let out = d.kbin(&["repoint-nodes", "--endpoint", "x:0"]).fails_with(1);
    assert!(out.stderr().contains("--endpoint") && out.stderr().contains("port"), "{}", out.stderr());
    let out = d.kbin(&["repoint-nodes", "--endpoint", "10.0.0.1", "--nodes", "nosuch"]).fails_with(1);
    assert!(out.stderr().contains("--nodes: no host \"nosuch\""), "{}", out.stderr());
}

#[test]
fn up_dry_run_without_a_pki_issues_nothing() {
    let d = Dir::with_cluster(&format!("{SMALL}{UNREACHABLE}\n[artifacts]\nmirror = \"http://127.0.0.1:1\"\n"));
    let out = d.kbin(&["up", "--dry-run"]).ok();
    assert!(out.stderr().contains("pki: would create the CAs"), "{}", out.stderr());
    assert!(!d.pki().exists(), "a dry run issues nothing");
}

#[test]
fn a_failing_up_with_json_prints_the_report_on_stdout_and_downloads_nothing() {
    // every host unreachable and a mirror that does not answer: `up` stops at connect, before
    // any download (which would fail with exit 1), with the JSON report on stdout
    let d = Dir::with_cluster(&format!("{SMALL}{UNREACHABLE}\n[artifacts]\nmirror = \"http://127.0.0.1:1\"\n"));
    let out = d.kbin(&["up", "--json"]).fails_with(2);
    let v: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout()));
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["exit"], 2);
    assert!(v["error"]["message"].as_str().unwrap().contains("nothing was changed"), "{v}");
    let stages: Vec<&str> = v["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(stages, ["pki"], "no download stage: {v}");
    let hosts = v["error"]["hosts"].as_array().unwrap();
    assert!(!hosts.is_empty() && hosts.iter().all(|h| h["phase"] == "connect" && h["rollback"]["state"] == "not-needed"), "{v}");
    // one line per host on stderr, `[connect] host: cause`, never a script
    let first = hosts[0]["host"].as_str().unwrap();
    assert!(out.stderr().lines().any(|l| l.starts_with(&format!("  [connect] {first}: ")) && !l.contains(&format!("{first}: {first}:"))), "{}", out.stderr());
    // without --json, stdout stays empty
    let out = d.kbin(&["up"]).fails_with(2);
    assert!(out.stdout().is_empty());
}

#[test]
fn etcd_add_remove_and_backup_report_a_failure_as_json_on_stdout() {
    let d = Dir::with_cluster(&format!("{SMALL}{UNREACHABLE}[[hosts]]\nname = \"e2\"\naddress = \"127.0.0.7\"\nroles = [\"etcd\"]\n"));
    d.kbin(&["pki", "init"]).ok();
    for (args, code) in [(&["etcd", "add", "e2", "--dry-run", "--json"][..], 2), (&["etcd", "remove", "e2", "--json"], 2), (&["etcd", "backup", "--json"], 2)] {
        let out = d.kbin(args).fails_with(code);
        let v: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", out.stdout()));
        assert_eq!(v["ok"], false, "{args:?}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap_or_default().is_empty() && v["error"]["exit"] == code, "{args:?}: {v}");
        // the same failure without --json: nothing on stdout, the error on stderr
        let plain: Vec<&str> = args.iter().copied().filter(|a| *a != "--json").collect();
        let out = d.kbin(&plain).fails_with(code);
        assert!(out.stdout().is_empty() && out.stderr().contains("error:"), "{plain:?}: {}", out.stderr());
    }
    assert!(!d.path().join("backups").read_dir().map(|mut r| r.next().is_some()).unwrap_or(false), "no snapshot was written");
}
