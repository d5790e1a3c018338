//! The real `kbin` binary: download / pin / bundle in a fresh temp dir with KBIN_CACHE_DIR set,
//! against a loopback mirror the test starts.

#[path = "http_support/mod.rs"]
mod support;

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use support::{Behavior, Server, bytes, cached_files, sha256_hex, targz};

/// The real binary in `dir`, with a private cache, fast network timeouts and no proxy.
fn kbin_std(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin!("kbin"));
    c.current_dir(dir)
        .env("KBIN_CACHE_DIR", dir.join("cache"))
        .env("NO_COLOR", "1")
        .env("KBIN_HTTP_TIMEOUT", "2")
        .env("KBIN_HTTP_ATTEMPTS", "2")
        .env("KBIN_HTTP_BACKOFF_MS", "10");
    for v in ["KBIN_CONFIG", "KBIN_MIRROR", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        c.env_remove(v);
    }
    c
}

fn kbin(dir: &Path) -> Command {
    Command::from_std(kbin_std(dir))
}

/// An etcd v3.5.1 tarball laid out like upstream's.
fn etcd_tarball() -> Vec<u8> {
    use tar::EntryType as T;
    targz(&[
        ("etcd-v3.5.1-linux-amd64/", T::Directory, b""),
        ("etcd-v3.5.1-linux-amd64/etcd", T::Regular, &bytes(200_000, 1)),
        ("etcd-v3.5.1-linux-amd64/etcdctl", T::Regular, &bytes(100_000, 2)),
        ("etcd-v3.5.1-linux-amd64/etcdutl", T::Regular, &bytes(50_000, 3)),
        ("etcd-v3.5.1-linux-amd64/README.md", T::Regular, b"docs"),
    ])
}

fn lab(srv: &Server) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("[artifacts.mirrors]\netcd = \"{}\"\n", srv.url("/etcd"));
    fs::write(dir.path().join("cluster.toml"), support::cluster_toml("v3.5.1", &extra)).unwrap();
    dir
}

#[test]
fn pinned_etcd_from_a_plain_http_mirror_with_no_internet() {
    let tgz = etcd_tarball();
    let digest = sha256_hex(&tgz);
    let srv = Server::start(vec![("/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz", Behavior::Bytes(tgz))]);
    let dir = lab(&srv);
    let d = dir.path();

    kbin(d).args(["pin", "etcd", "v3.5.1", &digest]).assert().success().stderr(predicates::str::contains(format!("[pin] etcd v3.5.1 (amd64): sha256 {digest} recorded in")));
    let lock = fs::read_to_string(d.join("kbin.lock")).unwrap();
    assert!(lock.contains(&format!("sha256 = \"{digest}\"")) && lock.contains("version = \"v3.5.1\""), "{lock}");

    let out = kbin(d).args(["download", "etcd", "--extract", "bin"]).assert().success().get_output().clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let cols: Vec<&str> = stdout.trim().split('\t').collect();
    assert_eq!(&cols[..4], ["etcd", "v3.5.1", "amd64", digest.as_str()]);
    assert!(cols[4].ends_with(&format!("cache/sha256/{digest}")), "{stdout}");
    assert!(stderr.contains("[download] etcd v3.5.1:"), "{stderr}");
    for f in ["etcd", "etcdctl", "etcdutl"] {
        assert!(d.join("bin/etcd").join(f).is_file(), "{f} extracted");
    }
    assert!(!d.join("bin/etcd/README.md").exists());
    assert_eq!(cached_files(&d.join("cache")), vec![digest.clone()]);

    // second run: a cache hit, no request; --json is data on stdout only
    let out = kbin(d).args(["download", "etcd", "--json"]).assert().success().get_output().clone();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["component"], "etcd");
    assert_eq!(v[0]["sha256"], digest.as_str());
    assert_eq!(v[0]["outcome"], "cached");
    assert_eq!(v[0]["digest_source"]["kind"], "lock");
    assert_eq!(srv.requests("/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz").len(), 1);
    // --quiet: nothing on stderr
    kbin(d).args(["-q", "download", "etcd"]).assert().success().stderr("");
}

#[test]
fn mirror_serving_other_bytes_fails_with_the_digests_and_a_hint() {
    let tgz = etcd_tarball();
    let srv = Server::start(vec![("/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz", Behavior::Bytes(b"not etcd".to_vec()))]);
    let dir = lab(&srv);
    let d = dir.path();
    kbin(d).args(["pin", "etcd", "v3.5.1", &sha256_hex(&tgz)]).assert().success();
    let out = kbin(d).args(["download", "etcd"]).assert().code(1).get_output().clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(&format!("error: digest mismatch for {}", srv.url("/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz"))), "{stderr}");
    assert!(stderr.contains(&sha256_hex(&tgz)) && stderr.contains(&sha256_hex(b"not etcd")), "{stderr}");
    assert!(stderr.contains("hint: nothing was cached"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(cached_files(&d.join("cache")).is_empty());
}

#[test]
fn unpinned_version_without_checksum_file_asks_for_a_pin() {
    let dir = tempfile::tempdir().unwrap();
    let toml = support::cluster_toml("v3.5.1", "").replace("etcd_version = \"v3.5.1\"", "etcd_version = \"v3.5.1\"\nflannel_version = \"v0.1.0\"");
    fs::write(dir.path().join("cluster.toml"), toml).unwrap();
    // flanneld publishes no checksum file and v0.1.0 is pinned nowhere: refused before any request
    let out = kbin(dir.path()).args(["download", "flanneld"]).assert().code(1).get_output().clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("error: no trusted digest for flanneld v0.1.0 (amd64)"), "{stderr}");
    assert!(stderr.contains("kbin pin flanneld v0.1.0 <sha256>"), "{stderr}");
    assert!(cached_files(&dir.path().join("cache")).is_empty());
}

#[test]
fn unknown_component_is_a_usage_error() {
    let srv = Server::start(vec![]);
    let dir = lab(&srv);
    kbin(dir.path()).args(["download", "etcdd"]).assert().code(3).stderr(predicates::str::contains("unknown component \"etcdd\"")).stderr(predicates::str::contains("hint: known components: etcd,"));
    kbin(dir.path()).args(["pin", "etcd", "v3.5.1", "xyz"]).assert().code(3).stderr(predicates::str::contains("not a SHA-256 digest"));
}

#[test]
fn bad_artifacts_section_reports_every_field_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[artifacts]\nmirror = \"ftp://mirror\"\narch = \"s390x\"\n\n[artifacts.mirrors]\netcd = \"not a url\"\nkubeproxy = \"http://x\"\n\n[artifacts.versions]\ncontainerd = \"2.1\"\nkubelet = \"v1.34.2\"\n";
    fs::write(dir.path().join("cluster.toml"), support::cluster_toml("v3.5.21", extra)).unwrap();
    let out = kbin(dir.path()).args(["download"]).assert().code(3).get_output().clone();
    let e = String::from_utf8(out.stderr).unwrap();
    for want in [
        "cluster.toml:14: artifacts.mirror: \"ftp://mirror\" is not an http(s) URL",
        "cluster.toml:15: artifacts.arch: unknown architecture \"s390x\"",
        "cluster.toml:18: artifacts.mirrors.etcd: \"not a url\" is not an http(s) URL",
        "cluster.toml:19: artifacts.mirrors.kubeproxy: unknown component",
        "cluster.toml:22: artifacts.versions.containerd: \"2.1\" is not a release version",
        "cluster.toml:23: artifacts.versions.kubelet: the version of kubelet comes from cluster.kubernetes_version",
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }
    kbin(dir.path()).args(["download", "--mirror", "mirror.example"]).assert().code(3);
}

#[test]
fn bundle_create_then_load_into_an_air_gapped_cache() {
    let tgz = etcd_tarball();
    let digest = sha256_hex(&tgz);
    let srv = Server::start(vec![("/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz", Behavior::Bytes(tgz))]);
    let online = lab(&srv);
    kbin(online.path()).args(["pin", "etcd", "v3.5.1", &digest]).assert().success();
    let bundle = online.path().join("b.tar");
    kbin(online.path()).args(["bundle", "create", "b.tar", "etcd"]).assert().success();
    assert!(bundle.is_file());

    let offline = tempfile::tempdir().unwrap();
    fs::write(offline.path().join("cluster.toml"), support::cluster_toml("v3.5.1", "")).unwrap();
    kbin(offline.path()).arg("bundle").arg("load").arg(&bundle).assert().success().stdout(predicates::str::contains(&digest));
    assert_eq!(cached_files(&offline.path().join("cache")), vec![digest.clone()]);
    let lock = fs::read_to_string(offline.path().join("kbin.lock")).unwrap();
    assert!(lock.contains(&digest), "the bundle's digest is now the cluster's law: {lock}");
    // and download now works with no server at all
    drop(srv);
    kbin(offline.path()).args(["download", "etcd"]).assert().success();
}

#[test]
fn help_texts_describe_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    kbin(dir.path()).args(["download", "--help"]).assert().success().stdout(predicates::str::contains("--mirror <URL>")).stdout(predicates::str::contains("kbin.lock"));
    // the component list in the help text matches the catalog
    let help = String::from_utf8(kbin(dir.path()).args(["download", "--help"]).output().unwrap().stdout).unwrap();
    let listed = help.split("Components:").nth(1).unwrap().split("\n\n").next().unwrap().replace('\n', " ");
    let listed: Vec<&str> = listed.split(',').map(str::trim).collect();
    assert_eq!(listed, kbin::artifacts::Catalog::embedded().names());
    kbin(dir.path()).args(["pin", "--help"]).assert().success().stdout(predicates::str::contains("<DIGEST>")).stdout(predicates::str::contains("SHA-512 (128 hex digits"));
    kbin(dir.path()).args(["bundle", "create", "--help"]).assert().success().stdout(predicates::str::contains("--mirror <URL>"));
    kbin(dir.path()).args(["bundle", "load", "--help"]).assert().success().stdout(predicates::str::contains("Nothing enters the cache unless every digest matches"));
}

#[test]
fn proxy_environment_is_honoured() {
    // the test server plays the proxy: it receives absolute-form requests for a mirror host that
    // does not resolve, so the download can only succeed through HTTP_PROXY
    let tgz = etcd_tarball();
    let digest = sha256_hex(&tgz);
    let proxy = Server::start(vec![("http://mirror.invalid/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz", Behavior::Bytes(tgz))]);
    let dir = tempfile::tempdir().unwrap();
    let extra = "[artifacts.mirrors]\netcd = \"http://mirror.invalid/etcd\"\n";
    fs::write(dir.path().join("cluster.toml"), support::cluster_toml("v3.5.1", extra)).unwrap();
    kbin(dir.path()).args(["pin", "etcd", "v3.5.1", &digest]).assert().success();
    kbin(dir.path())
        .env("HTTP_PROXY", proxy.url(""))
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .args(["download", "etcd"])
        .assert()
        .success()
        .stdout(predicates::str::contains(&digest));
    assert_eq!(proxy.requests("http://mirror.invalid/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz").len(), 1);
}

#[test]
fn two_kbin_processes_downloading_at_once_share_one_cache_entry() {
    use tar::EntryType as T;
    let tgz = targz(&[("etcd-v3.5.1-linux-amd64/etcd", T::Regular, &bytes(2 << 20, 9)), ("etcd-v3.5.1-linux-amd64/etcdctl", T::Regular, b"c"), ("etcd-v3.5.1-linux-amd64/etcdutl", T::Regular, b"u")]);
    let digest = sha256_hex(&tgz);
    let srv = Server::start(vec![("/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz", Behavior::Bytes(tgz))]);
    let dir = lab(&srv);
    let d = dir.path();
    kbin(d).args(["pin", "etcd", "v3.5.1", &digest]).assert().success();
    let spawn = || {
        let mut c = kbin_std(d);
        c.args(["-q", "download", "etcd"]).stdout(std::process::Stdio::piped()).spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8(out.stdout).unwrap().contains(&digest));
    }
    assert_eq!(cached_files(&d.join("cache")), vec![digest]);
    assert!(support::partial_files(&d.join("cache")).is_empty());
}

#[test]
fn cache_dir_from_the_cluster_file_is_used_when_kbin_cache_dir_is_unset() {
    let tgz = etcd_tarball();
    let digest = sha256_hex(&tgz);
    let srv = Server::start(vec![("/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz", Behavior::Bytes(tgz))]);
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("[artifacts]\ncache_dir = \"{}\"\n\n[artifacts.mirrors]\netcd = \"{}\"\n", dir.path().join("from-file").display(), srv.url("/etcd"));
    fs::write(dir.path().join("cluster.toml"), support::cluster_toml("v3.5.1", &extra)).unwrap();
    kbin(dir.path()).args(["pin", "etcd", "v3.5.1", &digest]).assert().success();
    let mut c = kbin_std(dir.path());
    c.env_remove("KBIN_CACHE_DIR").args(["-q", "download", "etcd"]);
    assert!(c.status().unwrap().success());
    assert_eq!(cached_files(&dir.path().join("from-file")), vec![digest]);
    assert!(!dir.path().join("cache").exists());
}

#[test]
fn server_binaries_come_out_of_one_tarball_pinned_by_its_sha512() {
    use tar::EntryType as T;
    let apiserver = bytes(200_000, 31);
    let tgz = targz(&[
        ("kubernetes/server/bin/kube-apiserver", T::Regular, &apiserver),
        ("kubernetes/server/bin/kube-controller-manager", T::Regular, &bytes(100_000, 32)),
        ("kubernetes/server/bin/kube-scheduler", T::Regular, &bytes(100_000, 33)),
        ("kubernetes/server/bin/kube-proxy", T::Regular, &bytes(100_000, 34)),
        ("kubernetes/server/bin/kubectl", T::Regular, b"not taken from here"),
    ]);
    let d512 = kbin::artifacts::Sha512::of(&tgz).hex();
    let path = "/kubernetes-server/v9.9.9/kubernetes-server-linux-amd64.tar.gz";
    let srv = Server::start(vec![(path, Behavior::Bytes(tgz.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let toml = support::cluster_toml("v3.5.1", "").replace("etcd_version = \"v3.5.1\"", "etcd_version = \"v3.5.1\"\nkubernetes_version = \"v9.9.9\"");
    fs::write(dir.path().join("cluster.toml"), toml).unwrap();
    let d = dir.path();

    kbin(d).args(["pin", "kubernetes-server", "v9.9.9", &d512]).assert().success().stderr(predicates::str::contains(format!("[pin] kubernetes-server v9.9.9 (amd64): sha512 {d512} recorded in")));
    assert!(fs::read_to_string(d.join("kbin.lock")).unwrap().contains(&format!("sha512 = \"{d512}\"")));

    let out = kbin(d)
        .args(["download", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "--mirror", &srv.url(""), "--extract", "bin"])
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let cols: Vec<&str> = stdout.trim().split('\t').collect();
    assert_eq!(stdout.lines().count(), 1, "one artifact: {stdout}");
    assert_eq!(&cols[..4], ["kubernetes-server", "v9.9.9", "amd64", sha256_hex(&tgz).as_str()]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(&format!("sha512 {} ok (for kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy)", &d512[..12])), "{stderr}");
    assert_eq!(fs::read(d.join("bin/kube-apiserver/kube-apiserver")).unwrap(), apiserver);
    for c in ["kube-controller-manager", "kube-scheduler", "kube-proxy"] {
        assert!(d.join("bin").join(c).join(c).is_file(), "{c}");
    }
    assert!(!d.join("bin/kube-apiserver/kubectl").exists());
    assert_eq!(srv.requests(path).len(), 1);

    // again, as JSON: a cache hit, checked against the SHA-512
    let out = kbin(d).args(["download", "kube-proxy", "--mirror", &srv.url(""), "--json"]).assert().success().get_output().clone();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["component"], "kubernetes-server");
    assert_eq!(v[0]["digest"], format!("sha512:{d512}"));
    assert_eq!(v[0]["sha256"], sha256_hex(&tgz));
    assert_eq!(v[0]["provides"], serde_json::json!(["kube-proxy"]));
    assert_eq!(v[0]["outcome"], "cached");
    assert_eq!(srv.requests(path).len(), 1);

    // the mirror's copy changes: the next fresh download names both SHA-512s
    drop(srv);
    let srv = Server::start(vec![(path, Behavior::Bytes(b"tampered".to_vec()))]);
    fs::remove_dir_all(d.join("cache")).unwrap();
    let out = kbin(d).args(["download", "kube-apiserver", "--mirror", &srv.url("")]).assert().code(1).get_output().clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let tampered = kbin::artifacts::Sha512::of(b"tampered").hex();
    assert!(stderr.contains(&format!("error: digest mismatch for {}: expected sha512 {d512}, got {tampered}", srv.url(path))), "{stderr}");
    assert!(cached_files(&d.join("cache")).is_empty());
}
