//! `kbin node remove` and `kbin master remove`: what the real binary refuses before it changes
//! anything (exit 2, the cluster file as it was). tests/remove.rs covers the steps on fake hosts.

mod common;

use common::*;

/// A port nothing listens on, so every SSH connection is refused at once.
const UNREACHABLE: &str = "[ssh]\nport = 1\nconnect_timeout_secs = 1\n";

const TWO_MASTERS: &str = "[[hosts]]\nname = \"m2\"\naddress = \"10.213.0.12\"\nroles = [\"master\", \"etcd\"]\n";

#[test]
fn unknown_hosts_and_hosts_without_the_role_are_refused() {
    let d = Dir::with_cluster(&format!("# kept\n{SMALL}{TWO_MASTERS}{UNREACHABLE}"));
    let before = std::fs::read(d.path().join("cluster.toml")).unwrap();
    for (args, want) in [
        (&["node", "remove", "nosuch"][..], "no host \"nosuch\""),
        (&["master", "remove", "nosuch"], "no host \"nosuch\""),
        (&["node", "remove", "m2"], "m2 does not have the node role"),
    ] {
        let out = d.kbin(args).fails_with(2);
        assert!(out.stderr().contains(want) && out.stderr().contains("hint:"), "{args:?}: {}", out.stderr());
    }
    assert_eq!(std::fs::read(d.path().join("cluster.toml")).unwrap(), before);
}

#[test]
fn the_last_master_and_the_master_the_nodes_use_are_refused() {
    let d = Dir::with_cluster(&format!("{SMALL}{UNREACHABLE}"));
    let out = d.kbin(&["master", "remove", "m1", "--dry-run"]).fails_with(2);
    assert!(out.stderr().contains("m1 is the last master"), "{}", out.stderr());
    // two masters, no VIP or endpoint: the nodes use the first
    let d = Dir::with_cluster(&format!("{SMALL}{TWO_MASTERS}{UNREACHABLE}"));
    let out = d.kbin(&["master", "remove", "10.213.0.11", "--json"]).fails_with(2);
    assert!(out.stderr().contains("the nodes reach the apiserver through m1") && out.stderr().contains("hint: move them first: `kbin repoint-nodes"), "{}", out.stderr());
    let v: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout()));
    assert_eq!((v["ok"].as_bool(), v["error"]["exit"].as_i64()), (Some(false), Some(2)), "{v}");
}

#[test]
fn an_unreachable_node_is_refused_with_a_hint_to_force() {
    let d = Dir::with_cluster(&format!("{SMALL}{UNREACHABLE}"));
    let before = std::fs::read(d.path().join("cluster.toml")).unwrap();
    let out = d.kbin(&["node", "remove", "m1", "--json"]).fails_with(2);
    assert!(out.stderr().contains("cannot reach m1; nothing was changed") && out.stderr().contains("--force"), "{}", out.stderr());
    let v: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(v["error"]["hosts"][0]["phase"], "connect", "{v}");
    assert_eq!(std::fs::read(d.path().join("cluster.toml")).unwrap(), before);
}
