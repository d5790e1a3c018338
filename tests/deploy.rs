//! Pure functions of the deploy operations: kubeconfig rewrites and targets of repoint-nodes,
//! the swap lines a node turns off.

use kbin::deploy::node::fstab_without_swap;
use kbin::deploy::repoint::{Target, rewrite, unit_for};
use serde_yaml_ng::Value;

const KC: &str = "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: QUJD\n    server: https://10.0.0.11:6443\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: kubelet\n  name: default\ncurrent-context: default\nusers:\n- name: kubelet\n  user:\n    client-certificate: /opt/kubernetes/ssl/kubelet-client-current.pem\n    client-key: /opt/kubernetes/ssl/kubelet-client-current.pem\n";

#[test]
fn only_the_server_of_old_clusters_changes() {
    let old = |s: &str| s == "https://10.0.0.11:6443";
    let (new, changes, _) = rewrite(KC, &old, "https://10.0.0.88:6443").unwrap();
    let new = new.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].cluster.as_str(), changes[0].from.as_str()), ("kubernetes", "https://10.0.0.11:6443"));
    let a: Value = serde_yaml_ng::from_str(KC).unwrap();
    let mut b: Value = serde_yaml_ng::from_str(&new).unwrap();
    assert_eq!(b["clusters"][0]["cluster"]["server"], Value::String("https://10.0.0.88:6443".into()));
    b["clusters"][0]["cluster"]["server"] = Value::String("https://10.0.0.11:6443".into());
    assert_eq!(a, b, "nothing but the server changed");
    // a second run: already there
    let (again, changes, at) = rewrite(&new, &old, "https://10.0.0.88:6443").unwrap();
    assert!(again.is_none() && changes.is_empty() && at);
}

#[test]
fn an_unknown_server_is_refused_not_moved() {
    let e = rewrite(&KC.replace("10.0.0.11", "10.9.9.9"), &|s| s == "https://10.0.0.11:6443", "https://10.0.0.88:6443").unwrap_err();
    assert!(e.contains("neither the current endpoint nor a master"), "{e}");
}

#[test]
fn targets_parse_with_and_without_port() {
    let t = Target::parse("10.0.0.88", 6443).unwrap();
    assert_eq!(t.url(), "https://10.0.0.88:6443");
    assert_eq!(Target::parse("lb.example.com:8443", 6443).unwrap().url(), "https://lb.example.com:8443");
    assert_eq!(Target::parse("https://[fd00::1]:6443", 1).unwrap().url(), "https://[fd00::1]:6443");
    assert!(Target::parse("x:0", 6443).is_err());
    assert!(Target::parse("", 6443).is_err());
}

#[test]
fn kubeconfigs_map_to_the_services_that_read_them() {
    assert_eq!(unit_for("/opt/kubernetes/cfg/bootstrap.kubeconfig"), Some("kubelet"));
    assert_eq!(unit_for("/opt/kubernetes/cfg/kubelet.kubeconfig"), Some("kubelet"));
    assert_eq!(unit_for("/opt/kubernetes/cfg/kube-proxy.kubeconfig"), Some("kube-proxy"));
    assert_eq!(unit_for("/opt/kubernetes/cfg/flannel.kubeconfig"), Some("flanneld"));
    assert_eq!(unit_for("/opt/kubernetes/cfg/kube-scheduler.kubeconfig"), None);
}

#[test]
fn swap_lines_are_commented_out_once() {
    let fstab = "UUID=1 / ext4 defaults 0 1\n/swap.img none swap sw 0 0\n# /old none swap sw 0 0\n";
    let out = fstab_without_swap(fstab).unwrap();
    assert!(out.contains("# /swap.img none swap sw 0 0  # swap turned off by kbin"));
    assert!(out.contains("UUID=1 / ext4 defaults 0 1\n"));
    assert_eq!(fstab_without_swap(&out), None, "a second run changes nothing");
    assert_eq!(fstab_without_swap("UUID=1 / ext4 defaults 0 1\n"), None);
}
