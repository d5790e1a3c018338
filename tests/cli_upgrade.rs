//! `kbin upgrade` and `kbin etcd restore`: what the real binary refuses before it changes anything
//! (exit 2, a report on stdout with --json). The skew rules are unit-tested in
//! `deploy::upgrade`; the lab (tests/lab/e2e-upgrade.sh) runs both on real clusters.

mod common;

use common::*;

/// A port nothing listens on, so every SSH connection is refused at once.
const UNREACHABLE: &str = "[ssh]\nport = 1\nconnect_timeout_secs = 1\n";

#[test]
fn a_rollback_with_no_recorded_upgrade_is_refused() {
    let d = Dir::with_cluster(&format!("{SMALL}{UNREACHABLE}"));
    let out = d.kbin(&["upgrade", "--rollback", "--json"]).fails_with(2);
    assert!(out.stderr().contains("no upgrade is recorded") && out.stderr().contains("hint:"), "{}", out.stderr());
    let v: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout()));
    assert_eq!((v["ok"].as_bool(), v["error"]["exit"].as_i64(), v["rollback"].as_bool()), (Some(false), Some(2), Some(true)), "{v}");
}

#[test]
fn an_upgrade_with_an_unreachable_host_is_refused_before_anything_changes() {
    let d = Dir::with_cluster(&format!("{SMALL}{UNREACHABLE}"));
    let out = d.kbin(&["upgrade", "--dry-run"]).fails_with(2);
    assert!(out.stderr().contains("m1"), "{}", out.stderr());
    assert!(!d.path().join("upgrade.json").exists() && !d.path().join("backups").exists());
}

#[test]
fn a_restore_from_a_file_that_is_no_snapshot_is_refused_naming_it() {
    let d = Dir::with_cluster(&format!("{SMALL}{UNREACHABLE}"));
    std::fs::write(d.path().join("snap.db"), vec![7u8; 8192]).unwrap();
    for (file, want) in [("snap.db", "snap.db is not a usable etcd snapshot: no bbolt database header"), ("missing.db", "cannot read the snapshot")] {
        let out = d.kbin(&["etcd", "restore", file]).fails_with(2);
        assert!(out.stderr().contains(want) && out.stderr().contains("hint: give a file written by `kbin etcd backup`"), "{}", out.stderr());
    }
}
