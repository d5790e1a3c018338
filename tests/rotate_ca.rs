//! CA rotation on the `pki/` side (`kbin::pki::rotate`): each stage as the files hold it, checked
//! with `openssl verify` as an independent verifier; a step repeated after a stop gives the same
//! files; the old pair is kept until it is retired, never deleted.

mod common;

use common::*;
use kbin::pki::rotate::{self, Stage};

const CLUSTER: &str = r#"
[cluster]
name = "rot"
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
"#;

fn cluster(d: &Dir) -> kbin::config::Cluster {
    kbin::config::load(&d.path().join("cluster.toml")).unwrap()
}

fn read(d: &Dir, rel: &str) -> String {
    std::fs::read_to_string(d.pki().join(rel)).unwrap()
}

fn certs_in(d: &Dir, rel: &str) -> Vec<Vec<u8>> {
    rotate::blocks(&read(d, rel)).into_iter().map(|(_, der)| der).collect()
}

/// The first certificate of `rel` in a file of its own (openssl verify takes the first one).
fn first_only(d: &Dir, rel: &str, out: &str) -> String {
    let first = &rotate::blocks(&read(d, rel))[0].0;
    std::fs::write(d.path().join(out), first).unwrap();
    d.path().join(out).to_string_lossy().into_owned()
}

/// Whether `ca` (a PEM file of one certificate, path relative to pki/ or absolute) signed `cert`.
fn signs(d: &Dir, ca: &str, cert: &str) -> bool {
    let pki = d.pki();
    let (ok, text) = openssl(&pki, &["verify", "-x509_strict", "-partial_chain", "-CAfile", ca, cert]);
    ok && text.contains(": OK")
}

/// openssl's view of whether `key` belongs to the first certificate of `cert`.
fn pair(d: &Dir, cert: &str, key: &str) -> bool {
    let pki = d.pki();
    let (_, a) = openssl(&pki, &["x509", "-in", cert, "-noout", "-pubkey"]);
    let (_, b) = openssl(&pki, &["pkey", "-in", key, "-pubout"]);
    !a.is_empty() && a == b
}

fn kubeconfig_ca(d: &Dir, rel: &str) -> String {
    let k = kbin::pki::kubeconfig::parse(&read(d, rel)).unwrap();
    kbin::pki::kubeconfig::decode_data(k.clusters[0].cluster.certificate_authority_data.as_deref().unwrap()).unwrap()
}

#[test]
fn a_kubernetes_ca_rotation_moves_through_each_stage_with_the_first_certificate_always_the_signer() {
    let d = Dir::with_cluster(CLUSTER);
    d.kbin(&["pki", "init"]).ok();
    let c = cluster(&d);
    let old = certs_in(&d, "ca.crt");
    assert_eq!(rotate::stage(&c, "ca").unwrap(), Stage::Settled);
    assert!(rotate::unsigned_leaves(&c, "ca").unwrap().is_empty());

    // prepared: a new CA beside the old one, the old files untouched
    rotate::prepare(&c, "ca").unwrap();
    assert_eq!(rotate::stage(&c, "ca").unwrap(), Stage::Prepared);
    assert_eq!(certs_in(&d, "ca.crt"), old);
    assert!(pair(&d, "ca.new.crt", "ca.new.key"));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(d.pki().join("ca.new.key")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "a CA key is 0600");
    let new = certs_in(&d, "ca.new.crt");
    assert_ne!(new, old);
    // the same subject, another key
    assert_eq!(x509_subject(&d, "ca.new.crt"), x509_subject(&d, "ca.crt"));

    // trusted: old + new, the old one first (it still signs), every kubeconfig trusts both
    rotate::trust(&c, "ca").unwrap();
    rotate::refresh_kubeconfigs(&c).unwrap();
    assert_eq!(rotate::stage(&c, "ca").unwrap(), Stage::Trusted);
    assert_eq!(certs_in(&d, "ca.crt"), [old.clone(), new.clone()].concat());
    assert!(pair(&d, "ca.crt", "ca.key"), "the first certificate matches ca.key");
    for k in ["kubeconfigs/admin.kubeconfig", "kubeconfigs/bootstrap.kubeconfig", "kubeconfigs/kube-proxy.kubeconfig"] {
        assert_eq!(kubeconfig_ca(&d, k), read(&d, "ca.crt"), "{k} trusts the bundle");
    }
    assert_eq!(rotate::old_ca(&c, "ca").unwrap(), Some(old[0].clone()));

    // reissued: the new pair signs, the old one kept as ca.old.*; repeating the step changes nothing
    rotate::switch_signer(&c, "ca").unwrap();
    let after_switch = (read(&d, "ca.crt"), read(&d, "ca.key"));
    assert_eq!(rotate::stage(&c, "ca").unwrap(), Stage::Reissued);
    assert_eq!(certs_in(&d, "ca.crt"), [new.clone(), old.clone()].concat());
    assert!(pair(&d, "ca.crt", "ca.key"), "the first certificate matches ca.key");
    assert!(pair(&d, "ca.old.crt", "ca.old.key"));
    assert_eq!(certs_in(&d, "ca.old.crt"), old);
    assert!(!d.pki().join("ca.new.key").exists());
    // every leaf of the kubernetes CA is still the old CA's
    let unsigned = rotate::unsigned_leaves(&c, "ca").unwrap();
    for name in ["apiserver/m1", "admin", "controller-manager", "kubelet/n1", "kube-proxy", "apiserver-kubelet-client", "flannel", "scheduler", "super-admin"] {
        assert!(unsigned.iter().any(|u| u == name), "{name} in {unsigned:?}");
    }
    assert!(!unsigned.iter().any(|u| u.starts_with("etcd-")), "no etcd leaf: {unsigned:?}");
    kbin::pki::renew(&c, &unsigned).unwrap();
    rotate::refresh_kubeconfigs(&c).unwrap();
    assert!(rotate::unsigned_leaves(&c, "ca").unwrap().is_empty());
    let new_ca = first_only(&d, "ca.crt", "new-ca.pem");
    let old_ca = first_only(&d, "ca.old.crt", "old-ca.pem");
    assert!(signs(&d, &new_ca, "hosts/m1/apiserver.crt") && !signs(&d, &old_ca, "hosts/m1/apiserver.crt"));
    assert!(signs(&d, &new_ca, "admin.crt"));
    // the kubelet client certificate kbin gives a node is the new CA's, for system:node:<name>
    let pem = rotate::kubelet_client(&c, "n1").unwrap();
    std::fs::write(d.path().join("kc.pem"), &pem).unwrap();
    let kc = d.path().join("kc.pem").to_string_lossy().into_owned();
    assert!(signs(&d, &new_ca, &kc));
    let subject = openssl(&d.pki(), &["x509", "-in", &kc, "-noout", "-subject"]).1;
    assert!(subject.contains("O = system:nodes") && subject.contains("CN = system:node:n1"), "{subject}");
    assert!(pem.contains("PRIVATE KEY"), "cert and key in one file, as the kubelet keeps them");

    // a stop after ca.crt but before ca.key was replaced: the step is repeated and completes
    std::fs::write(d.pki().join("ca.crt"), &after_switch.0).unwrap();
    rotate::switch_signer(&c, "ca").unwrap_err(); // nothing to switch: ca.new.* are gone
    assert_eq!((read(&d, "ca.crt"), read(&d, "ca.key")), after_switch);

    // finishing: only the new CA trusted; settled once the old pair is retired (moved, not deleted)
    rotate::drop_old(&c, "ca").unwrap();
    rotate::refresh_kubeconfigs(&c).unwrap();
    assert_eq!(rotate::stage(&c, "ca").unwrap(), Stage::Finishing);
    assert_eq!(certs_in(&d, "ca.crt"), new);
    assert_eq!(kubeconfig_ca(&d, "kubeconfigs/admin.kubeconfig"), read(&d, "ca.crt"));
    assert_eq!(rotate::old_ca(&c, "ca").unwrap(), Some(old[0].clone()));
    let dir = rotate::retire(&c, "ca").unwrap();
    assert_eq!(rotate::stage(&c, "ca").unwrap(), Stage::Settled);
    assert_eq!(certs_in(&d, &format!("{dir}/ca.crt")), old);
    assert!(pair(&d, &format!("{dir}/ca.crt"), &format!("{dir}/ca.key")));
    // pki check agrees with the rotated pki
    d.kbin(&["pki", "check"]).ok();
}

#[test]
fn a_stop_between_writing_the_bundle_and_the_key_is_completed_by_repeating_the_switch() {
    let d = Dir::with_cluster(CLUSTER);
    d.kbin(&["pki", "init"]).ok();
    let c = cluster(&d);
    rotate::prepare(&c, "etcd-ca").unwrap();
    rotate::trust(&c, "etcd-ca").unwrap();
    let (old, new) = (certs_in(&d, "etcd/ca.crt")[0].clone(), certs_in(&d, "etcd/ca.new.crt")[0].clone());
    let old_key = read(&d, "etcd/ca.key");
    // what switch_signer writes first (the old pair), then the bundle, but not yet the key
    std::fs::write(d.pki().join("etcd/ca.old.key"), &old_key).unwrap();
    std::fs::write(d.pki().join("etcd/ca.old.crt"), &rotate::blocks(&read(&d, "etcd/ca.crt"))[0].0).unwrap();
    let bundle = format!("{}{}", rotate::blocks(&read(&d, "etcd/ca.new.crt"))[0].0, rotate::blocks(&read(&d, "etcd/ca.crt"))[0].0);
    std::fs::write(d.pki().join("etcd/ca.crt"), bundle).unwrap();
    assert_eq!(rotate::stage(&c, "etcd-ca").unwrap(), Stage::Trusted, "still trusted: the new pair is there");
    rotate::switch_signer(&c, "etcd-ca").unwrap();
    assert_eq!(rotate::stage(&c, "etcd-ca").unwrap(), Stage::Reissued);
    assert_eq!(certs_in(&d, "etcd/ca.crt"), vec![new, old]);
    assert!(pair(&d, "etcd/ca.crt", "etcd/ca.key"));
    assert_eq!(read(&d, "etcd/ca.old.key"), old_key, "the old key is kept as it was");
    // the etcd leaves, and only they, wait for the new CA
    let unsigned = rotate::unsigned_leaves(&c, "etcd-ca").unwrap();
    assert!(unsigned.contains(&"etcd-server/m1".to_string()) && unsigned.contains(&"apiserver-etcd-client".to_string()), "{unsigned:?}");
    assert!(!unsigned.iter().any(|u| u.starts_with("apiserver/")), "{unsigned:?}");
}

#[test]
fn a_ca_file_in_no_state_a_rotation_knows_is_an_error_naming_it_and_pki_renew_of_a_ca_names_rotate_ca() {
    let d = Dir::with_cluster(CLUSTER);
    d.kbin(&["pki", "init"]).ok();
    let c = cluster(&d);
    let ca = read(&d, "front-proxy-ca.crt");
    std::fs::write(d.pki().join("front-proxy-ca.crt"), format!("{ca}{ca}{ca}")).unwrap();
    let e = rotate::stage(&c, "front-proxy-ca").unwrap_err().to_string();
    assert!(e.contains("front-proxy-ca.crt") && e.contains("3 certificate(s)"), "{e}");
    std::fs::write(d.pki().join("front-proxy-ca.crt"), ca).unwrap();
    let out = d.kbin(&["pki", "renew", "ca"]).fails_with(2);
    assert!(out.stderr().contains("kbin pki rotate-ca"), "{}", out.stderr());
}

fn x509_subject(d: &Dir, rel: &str) -> String {
    openssl(&d.pki(), &["x509", "-in", rel, "-noout", "-subject"]).1
}

#[test]
fn the_service_account_key_rotates_through_the_same_stages_with_sa_pub_accepting_both_in_between() {
    let d = Dir::with_cluster(CLUSTER);
    d.kbin(&["pki", "init"]).ok();
    let c = cluster(&d);
    let old_pub = read(&d, "sa.pub");
    assert_eq!(rotate::sa_stage(&c).unwrap(), Stage::Settled);
    rotate::sa_prepare(&c).unwrap();
    assert_eq!(rotate::sa_stage(&c).unwrap(), Stage::Prepared);
    assert_eq!(read(&d, "sa.pub"), old_pub, "nothing accepted yet");
    rotate::sa_trust(&c).unwrap();
    assert_eq!(rotate::sa_stage(&c).unwrap(), Stage::Trusted);
    let keys = rotate::public_keys(&read(&d, "sa.pub"));
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].trim(), old_pub.trim(), "the signing key's public key first");
    assert_eq!(rotate::sa_old_public(&c).unwrap().unwrap().trim(), old_pub.trim());
    d.kbin(&["pki", "check"]).ok();

    rotate::sa_switch(&c).unwrap();
    assert_eq!(rotate::sa_stage(&c).unwrap(), Stage::Reissued);
    assert!(rotate::sa_switched_at(&c).is_some());
    // openssl agrees: sa.key's public key is the first of sa.pub, the old one the second
    let (_, new_pub) = openssl(&d.pki(), &["pkey", "-in", "sa.key", "-pubout"]);
    let keys = rotate::public_keys(&read(&d, "sa.pub"));
    assert_eq!(keys[0].trim(), new_pub.trim());
    assert_eq!(keys[1].trim(), old_pub.trim());
    d.kbin(&["pki", "check"]).ok();

    rotate::sa_drop_old(&c).unwrap();
    assert_eq!(rotate::sa_stage(&c).unwrap(), Stage::Finishing);
    assert_eq!(read(&d, "sa.pub").trim(), new_pub.trim());
    let dir = rotate::sa_retire(&c).unwrap();
    assert_eq!(rotate::sa_stage(&c).unwrap(), Stage::Settled);
    let (_, retired_pub) = openssl(&d.pki(), &["pkey", "-in", &format!("{dir}/sa.key"), "-pubout"]);
    assert_eq!(retired_pub.trim(), old_pub.trim(), "the old key is kept in pki/retired/");
    d.kbin(&["pki", "check"]).ok();
}

/// A port nothing listens on, so every SSH connection is refused at once.
const UNREACHABLE: &str = "[ssh]\nport = 1\nconnect_timeout_secs = 1\n";

#[test]
fn a_rotation_with_a_host_that_does_not_answer_is_refused_with_pki_unchanged_and_json_on_stdout() {
    let d = Dir::with_cluster(&format!("{CLUSTER}{UNREACHABLE}"));
    d.kbin(&["pki", "init"]).ok();
    let before = d.snapshot();
    for args in [&["pki", "rotate-ca", "kubernetes", "--json"][..], &["pki", "rotate-ca", "etcd", "--json"], &["pki", "rotate-sa-key", "--json"]] {
        let out = d.kbin(args).fails_with(2);
        assert!(out.stderr().contains("cannot reach 2 of 2 hosts; nothing was changed") && out.stderr().contains("hint:"), "{args:?}: {}", out.stderr());
        let v: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout()));
        assert_eq!((v["ok"].as_bool(), v["error"]["exit"].as_i64()), (Some(false), Some(2)), "{v}");
    }
    assert_eq!(d.snapshot(), before, "nothing in the state directory changed");
}

/// The real kube-controller-manager refuses a `--cluster-signing-cert-file` with two certificates
/// ("expected 1 certificate, found 2", found in the lab): masters get the trust bundle as `ca.crt`
/// and the signing CA alone as `ca-signer.crt`.
#[test]
fn during_a_rotation_masters_get_the_bundle_as_ca_crt_and_the_signing_ca_alone_as_ca_signer_crt() {
    let d = Dir::with_cluster(CLUSTER);
    d.kbin(&["pki", "init"]).ok();
    let c = cluster(&d);
    rotate::prepare(&c, "ca").unwrap();
    rotate::trust(&c, "ca").unwrap();
    let templates = kbin::render::Templates::load(&c).unwrap();
    let m1 = c.hosts.iter().find(|h| h.name == "m1").unwrap();
    let files = kbin::render::host_files(&c, m1, &templates, &kbin::render::Options::default()).unwrap();
    let get = |p: &str| String::from_utf8(files.iter().find(|f| f.path == p).unwrap_or_else(|| panic!("{p}")).content.clone()).unwrap();
    let bundle = get("/opt/kubernetes/ssl/ca.crt");
    let signer = get("/opt/kubernetes/ssl/ca-signer.crt");
    assert_eq!(rotate::blocks(&bundle).len(), 2);
    assert_eq!(rotate::blocks(&signer).len(), 1);
    assert_eq!(rotate::blocks(&signer)[0].1, rotate::blocks(&bundle)[0].1, "the signer is the bundle's first certificate");
    let unit = get("/usr/lib/systemd/system/kube-controller-manager.service");
    assert!(unit.contains("--cluster-signing-cert-file=/opt/kubernetes/ssl/ca-signer.crt") && unit.contains("--root-ca-file=/opt/kubernetes/ssl/ca.crt"), "{unit}");
    std::fs::write(d.path().join("signer.pem"), &signer).unwrap();
    assert!(pair(&d, &d.path().join("signer.pem").to_string_lossy(), "ca.key"));
}
