//! `kbin manifests`: the real binary in a fresh temp dir.

mod common;

use base64::Engine as _;
use common::*;

#[test]
fn render_redacts_secret_data_unless_asked() {
    let d = Dir::with_cluster(SMALL);
    d.kbin(&["pki", "init"]).ok();
    let token = std::fs::read_to_string(d.pki().join("bootstrap-token")).unwrap();
    let (id, secret) = token.trim().split_once('.').unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);

    let out = d.kbin(&["manifests", "render"]).ok();
    let yaml = out.stdout();
    assert!(!yaml.contains(secret) && !yaml.contains(&b64) && !out.stderr().contains(secret), "{yaml}");
    assert!(yaml.contains("token-secret: <redacted>"), "{yaml}");
    assert!(yaml.contains(&format!("name: bootstrap-token-{id}")));
    for name in ["kbin:kubelet-bootstrap", "kbin:node-autoapprove-bootstrap", "kbin:node-autoapprove-certificate-rotation", "kbin:cluster-admins", "kbin:flannel", "kbin:apiserver-kubelet-client"] {
        assert!(yaml.contains(&format!("name: {name}\n")), "{name} missing:\n{yaml}");
    }
    // kbin's 8 objects and CoreDNS's 7 (on by default; metrics-server is off), each parses
    let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&yaml).map(|doc| serde::Deserialize::deserialize(doc).unwrap()).collect();
    assert_eq!(docs.len(), 15);
    assert!(yaml.contains("# manifests/coredns.yaml.hbs#7") && yaml.contains("name: kube-dns\n") && !yaml.contains("metrics-server"), "{yaml}");

    let shown = d.kbin(&["manifests", "render", "--show-secrets"]).ok().stdout();
    assert!(shown.contains(&format!("token-secret: {b64}")), "{shown}");
}

#[test]
fn without_a_pki_render_says_to_run_pki_init() {
    let d = Dir::with_cluster(SMALL);
    let out = d.kbin(&["manifests", "render"]).fails_with(1);
    assert!(out.stderr().contains("cannot read the bootstrap token") && out.stderr().contains("hint: run `kbin pki init`"), "{}", out.stderr());
}

#[test]
fn apply_refuses_when_the_apiserver_is_not_ready() {
    let d = Dir::with_cluster(SMALL);
    d.kbin(&["pki", "init"]).ok();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}");
    let out = d.kbin(&["manifests", "apply", "--server", &url]).fails_with(2);
    let err = out.stderr();
    assert!(err.contains(&format!("error: the apiserver at 127.0.0.1:{port} is not ready; nothing was changed")), "{err}");
    assert!(err.contains("Connection refused") && err.contains("hint: "), "{err}");
    assert!(out.stdout().is_empty());

    let out = d.kbin(&["manifests", "apply", "--server", "http://127.0.0.1:6443"]).fails_with(1);
    assert!(out.stderr().contains("must start with https://"), "{}", out.stderr());
}
