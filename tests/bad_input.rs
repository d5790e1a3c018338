//! Regression tests for bad input found by an adversarial pass (issue 13): each named after what
//! broke, each through the real binary where a user would meet it, each checking that nothing
//! was written when the input is refused.

mod common;
#[path = "http_support/mod.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use support::{Behavior, Server, cached_files, sha256_hex};

/// SMALL with `extra` TOML lines added to its one host.
fn small_with_host_lines(extra: &str) -> String {
    format!("{SMALL}{extra}\n")
}

/// Refused with exit 3, nothing written, and the diagnostic names `field` at `line`.
#[track_caller]
fn refused(d: &Dir, args: &[&str], field: &str, line: usize) -> String {
    let out = d.kbin(args).fails_with(3);
    let err = out.stderr();
    assert!(err.contains(&format!("cluster.toml:{line}: {field}:")), "no {field} at line {line}:\n{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!d.pki().exists(), "pki/ written");
    let names: Vec<String> = fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["cluster.toml"], "files written");
    err
}

// 1. values injected into rendered files

#[test]
fn node_label_with_newline_is_refused() {
    let d = Dir::with_cluster(&small_with_host_lines("labels = [\"zone=a\\nExecStartPre=/bin/sh -c id\"]"));
    let err = refused(&d, &["render", "--host", "m1", "--out", "out"], "hosts[0].labels[0]", 11);
    assert!(err.contains("value"), "{err}");
}

#[test]
fn node_label_with_a_comma_would_add_a_label_and_is_refused() {
    let d = Dir::with_cluster(&small_with_host_lines("labels = [\"zone=a,node-role.kubernetes.io/master=\"]"));
    refused(&d, &["pki", "init"], "hosts[0].labels[0]", 11);
}

#[test]
fn lb_interface_with_newline_and_quotes_is_refused() {
    let text = format!(
        "{SMALL}\n[apiserver]\nvip = \"10.213.0.88\"\n\n[[hosts]]\nname = \"lb1\"\naddress = \"10.213.0.15\"\nroles = [\"lb\"]\nlb_interface = \"eth0\\n    notify_master \\\"/bin/sh -c id\\\"\"\n"
    );
    let d = Dir::with_cluster(&text);
    let err = refused(&d, &["render", "--host", "lb1"], "hosts[1].lb_interface", 19);
    assert!(err.contains("interface names are letters"), "{err}");
    let d = Dir::with_cluster(&format!("{SMALL}\n[lb]\ninterface = \"eth0 eth1\"\n"));
    refused(&d, &["pki", "init"], "lb.interface", 13);
}

#[test]
fn layout_path_with_a_space_is_refused() {
    let d = Dir::with_cluster(&format!("{SMALL}\n[layout]\nk8s_bin = \"/opt/k8s bin\"\netcd_cfg = \"/etc/%n\"\n"));
    let err = refused(&d, &["render", "--host", "m1"], "layout.k8s_bin", 13);
    assert!(err.contains("cluster.toml:14: layout.etcd_cfg:"), "{err}");
}

#[test]
fn version_suffix_with_a_newline_is_refused() {
    let d = Dir::with_cluster(&SMALL.replace("name = \"small\"", "name = \"small\"\nkubernetes_version = \"v1.34.2-x\\ny\""));
    refused(&d, &["pki", "init"], "cluster.kubernetes_version", 4);
}

// 2. addresses no host can have

#[test]
fn unspecified_broadcast_and_multicast_addresses_are_refused() {
    for (addr, why) in [("0.0.0.0", "unspecified"), ("255.255.255.255", "broadcast"), ("224.0.0.18", "multicast"), ("::", "unspecified"), ("ff02::1", "multicast")] {
        let d = Dir::with_cluster(&SMALL.replace("10.213.0.11", addr));
        let err = refused(&d, &["pki", "init"], "hosts[0].address", 9);
        assert!(err.contains(why), "{addr}: {err}");
    }
    let d = Dir::with_cluster(&format!("{SMALL}\n[apiserver]\nvip = \"255.255.255.255\"\n"));
    let err = refused(&d, &["pki", "init"], "apiserver.vip", 13);
    assert!(err.contains("broadcast"), "{err}");
}

// 3. numbers bounded to what they mean

#[test]
fn ca_validity_past_the_year_9999_is_refused_not_a_panic() {
    let d = Dir::with_cluster(&format!("{SMALL}\n[pki]\nca_validity_days = 2913500\n"));
    let err = refused(&d, &["pki", "init"], "pki.ca_validity_days", 13);
    assert!(err.contains("100 years"), "{err}");
}

#[test]
fn timeouts_concurrency_and_ports_out_of_range_are_refused() {
    let d = Dir::with_cluster(&format!("{SMALL}\n[ssh]\ncommand_timeout_secs = 9223372036854775807\nconcurrency = 100000\n[apiserver]\nport = 10250\n"));
    let out = d.kbin(&["pki", "init"]).fails_with(3);
    let err = out.stderr();
    for f in ["ssh.command_timeout_secs", "ssh.concurrency", "apiserver.port"] {
        assert!(err.contains(f), "{f} missing:\n{err}");
    }
    assert!(!d.pki().exists());
}

// 4. keys and certificates only in regular files inside pki/

#[test]
fn dangling_symlink_ca_key_is_refused_and_nothing_is_written() {
    let d = Dir::with_cluster(SMALL);
    fs::create_dir(d.pki()).unwrap();
    std::os::unix::fs::symlink(d.path().join("elsewhere/ca.key"), d.pki().join("ca.key")).unwrap();
    let out = d.kbin(&["pki", "init"]).fails_with(2);
    let err = out.stderr();
    assert!(err.contains("ca.key is a symbolic link") && err.contains("hint: move"), "{err}");
    let names: Vec<String> = fs::read_dir(d.pki()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["ca.key"], "nothing but the link");
    assert!(!d.path().join("elsewhere").exists());
    // once the link is gone, the next run issues everything
    fs::remove_file(d.pki().join("ca.key")).unwrap();
    d.kbin(&["pki", "init"]).ok();
    d.kbin(&["pki", "check"]).ok();
}

#[test]
fn symlinked_host_directory_in_pki_is_refused() {
    let d = Dir::with_cluster(SMALL);
    fs::create_dir_all(d.pki().join("hosts")).unwrap();
    fs::create_dir(d.path().join("outside")).unwrap();
    std::os::unix::fs::symlink(d.path().join("outside"), d.pki().join("hosts/m1")).unwrap();
    let out = d.kbin(&["pki", "init"]).fails_with(2);
    assert!(out.stderr().contains("hosts/m1 is a symbolic link"), "{}", out.stderr());
    assert_eq!(fs::read_dir(d.path().join("outside")).unwrap().count(), 0, "written through the link");
    assert!(!d.pki().join("ca.crt").exists());
}

#[test]
fn render_refuses_a_key_in_pki_that_is_a_symlink() {
    let d = Dir::with_cluster(SMALL);
    d.kbin(&["pki", "init"]).ok();
    fs::write(d.path().join("not-a-key"), "secret of another program").unwrap();
    let key = d.pki().join("hosts/m1/kubelet.key");
    fs::remove_file(&key).unwrap();
    std::os::unix::fs::symlink(d.path().join("not-a-key"), &key).unwrap();
    let out = d.kbin(&["render", "--host", "m1", "--out", "out"]).fails_with(2);
    assert!(out.stderr().contains("kubelet.key is a symbolic link"), "{}", out.stderr());
    assert!(!d.path().join("out").exists());
}

// 5. pki import checks what openssl checks

fn write_ca(d: &Path, name: &str, edit: impl FnOnce(&mut rcgen::CertificateParams)) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(365);
    edit(&mut p);
    fs::write(d.join(format!("{name}.crt")), p.self_signed(&key).unwrap().pem()).unwrap();
    fs::write(d.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

#[track_caller]
fn import_refused(d: &Dir, name: &str, want: &str) {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    let out = d.kbin(&["pki", "import", "--ca", "kubernetes", "--cert", &crt, "--key", &key]).fails_with(1);
    assert!(out.stderr().contains(want), "{name}: wanted {want:?}:\n{}", out.stderr());
    assert!(!d.pki().join("ca.crt").exists() && !d.pki().join("ca.key").exists(), "{name} written");
}

#[test]
fn pki_import_refuses_a_ca_not_valid_yet() {
    let d = Dir::with_cluster(SMALL);
    write_ca(d.path(), "next-month", |p| {
        p.not_before = time::OffsetDateTime::now_utc() + time::Duration::days(30);
        p.not_after = p.not_before + time::Duration::days(365);
    });
    import_refused(&d, "next-month", "validity: not valid before");
}

#[test]
fn pki_import_refuses_a_ca_whose_key_usage_lacks_key_cert_sign() {
    let d = Dir::with_cluster(SMALL);
    write_ca(d.path(), "no-certsign", |p| p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature]);
    import_refused(&d, "no-certsign", "keyUsage: lacks keyCertSign");
}

#[test]
fn pki_import_refuses_rsa_1024_for_its_key_size() {
    let d = Dir::with_cluster(SMALL);
    let (ok, text) = openssl(d.path(), &["req", "-x509", "-newkey", "rsa:1024", "-nodes", "-keyout", "weak.key", "-out", "weak.crt", "-subj", "/CN=weak", "-days", "30"]);
    assert!(ok, "{text}");
    import_refused(&d, "weak", "key size: RSA 1024 bits; at least 2048 are required");
    let out = d.kbin(&["pki", "import", "--ca", "kubernetes", "--cert", "weak.crt", "--key", "weak.key"]).fails_with(1);
    assert!(!out.stderr().contains("self-signed"), "the wrong reason: {}", out.stderr());
}

#[test]
fn pki_import_refuses_a_leaf_with_basic_constraints_named() {
    let d = Dir::with_cluster(SMALL);
    write_ca(d.path(), "leaf", |p| p.is_ca = rcgen::IsCa::ExplicitNoCa);
    import_refused(&d, "leaf", "basicConstraints: CA:FALSE");
}

#[test]
fn pki_import_accepts_der() {
    let d = Dir::with_cluster(SMALL);
    write_ca(d.path(), "good", |_| {});
    let (ok, text) = openssl(d.path(), &["x509", "-in", "good.crt", "-outform", "DER", "-out", "good.der"]);
    assert!(ok, "{text}");
    d.kbin(&["pki", "import", "--ca", "kubernetes", "--cert", "good.der", "--key", "good.key"]).ok();
    assert_verifies(&d.pki(), "ca.crt", "ca.crt");
}

#[test]
fn pki_check_and_init_catch_a_ca_without_key_cert_sign_already_in_pki() {
    let d = Dir::with_cluster(SMALL);
    fs::create_dir(d.pki()).unwrap();
    write_ca(&d.pki(), "ca", |p| p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature]);
    let out = d.kbin(&["pki", "check", "--json"]).fails_with(1);
    assert!(out.stdout().contains("keyUsage: lacks keyCertSign"), "{}", out.stdout());
    let before = d.snapshot();
    let out = d.kbin(&["pki", "init"]).fails_with(2);
    assert!(out.stderr().contains("keyUsage: lacks keyCertSign"), "{}", out.stderr());
    let after: Vec<String> = d.snapshot().into_keys().filter(|k| !k.starts_with(".kbin")).collect();
    assert_eq!(after, before.into_keys().collect::<Vec<_>>(), "init signed with a CA verifiers reject");
}

// 6. no credentials in output

#[test]
fn mirror_password_is_redacted_on_stderr_and_in_json() {
    let tgz = support::targz(&[("etcd-v3.5.1-linux-amd64/etcd", tar::EntryType::Regular, b"etcd")]);
    let digest = sha256_hex(&tgz);
    let srv = Server::start(vec![("/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz", Behavior::Bytes(tgz))]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mirror = srv.url("/etcd").replace("http://", "http://kbin:s3cret@");
    fs::write(d.join("cluster.toml"), support::cluster_toml("v3.5.1", &format!("[artifacts.mirrors]\netcd = \"{mirror}\"\n"))).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kbin")).args(args).current_dir(d).env("KBIN_CACHE_DIR", d.join("cache")).env("NO_COLOR", "1").env("KBIN_HTTP_ATTEMPTS", "1").output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert!(run(&["pin", "etcd", "v3.5.1", &digest]).0 == Some(0));
    let (code, out, err) = run(&["download", "etcd", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("s3cret") && !err.contains("s3cret"), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("http://***@127.0.0.1"), "{out}");
    assert!(err.contains("http://***@127.0.0.1"), "{err}");
    // a failing download names the URL without the password too
    fs::write(d.join("cluster.toml"), support::cluster_toml("v3.5.1", &format!("[artifacts.mirrors]\netcd = \"{}\"\n", mirror.replace("/etcd", "/missing")))).unwrap();
    fs::remove_dir_all(d.join("cache")).unwrap();
    let (code, out, err) = run(&["download", "etcd", "--json"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(!out.contains("s3cret") && !err.contains("s3cret"), "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("http://***@127.0.0.1"), "{err}");
    // and an invalid one in the cluster file
    fs::write(d.join("cluster.toml"), support::cluster_toml("v3.5.1", "[artifacts]\nmirror = \"ftp://kbin:s3cret@host/x\"\n")).unwrap();
    let (code, _, err) = run(&["download", "etcd"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(!err.contains("s3cret") && err.contains("ftp://***@host/x"), "{err}");
}

// 7. a re-run cleans what an interrupted run left

#[test]
fn pki_init_removes_the_temp_files_a_killed_run_left() {
    let d = Dir::with_cluster(SMALL);
    fs::create_dir_all(d.pki().join("hosts/m1")).unwrap();
    let key = "-----BEGIN PRIVATE KEY-----\nleft by kill -9\n-----END PRIVATE KEY-----\n";
    for f in [".kbin-newAbC123", "hosts/m1/.kbin-newXyZ789"] {
        fs::write(d.pki().join(f), key).unwrap();
    }
    d.kbin(&["pki", "init"]).ok();
    let left: Vec<String> = d.snapshot().into_keys().filter(|k| k.contains(".kbin-new")).collect();
    assert!(left.is_empty(), "{left:?}");
}

// 8. smaller ones

#[test]
fn corrupted_cache_entry_is_fetched_again_by_download_extract() {
    let tgz = support::targz(&[("etcd-v3.5.1-linux-amd64/etcd", tar::EntryType::Regular, b"etcd"), ("etcd-v3.5.1-linux-amd64/etcdctl", tar::EntryType::Regular, b"ctl"), ("etcd-v3.5.1-linux-amd64/etcdutl", tar::EntryType::Regular, b"utl")]);
    let digest = sha256_hex(&tgz);
    let path = "/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz";
    let srv = Server::start(vec![(path, Behavior::Bytes(tgz.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("cluster.toml"), support::cluster_toml("v3.5.1", &format!("[artifacts.mirrors]\netcd = \"{}\"\n", srv.url("/etcd")))).unwrap();
    let kbin = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_kbin")).args(args).current_dir(d).env("KBIN_CACHE_DIR", d.join("cache")).env("NO_COLOR", "1").output().unwrap();
    assert!(kbin(&["pin", "etcd", "v3.5.1", &digest]).status.success());
    assert!(kbin(&["download", "etcd"]).status.success());
    // garbage where the gzip stream starts: extraction fails before the digest is known
    let blob = d.join("cache/sha256").join(&digest);
    fs::write(&blob, b"\x1f\x8b garbage, not the archive").unwrap();
    for _ in 0..2 {
        let out = kbin(&["download", "etcd", "--extract", "bin"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(fs::read(&blob).unwrap(), tgz);
    assert_eq!(fs::read(d.join("bin/etcd/etcd")).unwrap(), b"etcd");
    assert_eq!(srv.requests(path).len(), 2, "fetched once more, then a cache hit");
}

#[test]
fn type_error_names_the_field() {
    let d = Dir::with_cluster(&format!("{SMALL}\n[apiserver]\nport = \"6443\"\n"));
    let err = refused(&d, &["pki", "init"], "apiserver.port", 13);
    assert!(err.contains("invalid type"), "{err}");
    let d = Dir::with_cluster(&small_with_host_lines("ssh_port = 70000"));
    refused(&d, &["pki", "init"], "hosts[0].ssh_port", 11);
    let d = Dir::with_cluster(&small_with_host_lines("labels = [\"a=b\", 3]"));
    refused(&d, &["pki", "init"], "hosts[0].labels[1]", 11);
}

#[test]
fn invalid_utf8_cluster_file_is_an_encoding_error_not_a_hint_to_create_it() {
    let d = Dir::with_cluster("");
    let mut bytes = SMALL.as_bytes().to_vec();
    bytes.extend_from_slice(b"# caf\xe9\n");
    fs::write(d.path().join("cluster.toml"), bytes).unwrap();
    let out = d.kbin(&["pki", "init"]).fails_with(3);
    let err = out.stderr();
    assert!(err.contains("cluster.toml:11: not UTF-8 text (invalid byte at column 6)"), "{err}");
    assert!(err.contains("hint: save the cluster file as UTF-8") && !err.contains("create"), "{err}");
    assert!(!d.pki().exists());
}

#[test]
fn relative_cache_dir_is_relative_to_the_cluster_file() {
    let tgz = support::targz(&[("etcd-v3.5.1-linux-amd64/etcd", tar::EntryType::Regular, b"etcd")]);
    let digest = sha256_hex(&tgz);
    let srv = Server::start(vec![("/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz", Behavior::Bytes(tgz))]);
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("clusters/prod");
    fs::create_dir_all(&sub).unwrap();
    fs::write(sub.join("cluster.toml"), support::cluster_toml("v3.5.1", &format!("[artifacts]\ncache_dir = \"artifact-cache\"\n\n[artifacts.mirrors]\netcd = \"{}\"\n", srv.url("/etcd")))).unwrap();
    let kbin = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_kbin")).args(["-c", "clusters/prod/cluster.toml"]).args(args).current_dir(dir.path()).env_remove("KBIN_CACHE_DIR").env("NO_COLOR", "1").output().unwrap();
    assert!(kbin(&["pin", "etcd", "v3.5.1", &digest]).status.success());
    let out = kbin(&["-q", "download", "etcd"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cached_files(&sub.join("artifact-cache")), vec![digest]);
    assert!(!dir.path().join("artifact-cache").exists(), "resolved against the current directory");
}

#[test]
fn render_out_under_umask_000_makes_no_world_writable_directories() {
    let d = Dir::with_cluster(SMALL);
    d.kbin(&["pki", "init"]).ok();
    let status = Command::new("sh")
        .args(["-c", "umask 000 && exec \"$0\" render --host m1 --out out", env!("CARGO_BIN_EXE_kbin")])
        .current_dir(d.path())
        .env("NO_COLOR", "1")
        .status()
        .unwrap();
    assert!(status.success());
    fn walk(p: &Path, dirs: &mut Vec<(String, u32)>, files: &mut Vec<(String, u32)>) {
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let mode = e.metadata().unwrap().permissions().mode() & 0o7777;
            let name = e.path().display().to_string();
            if e.file_type().unwrap().is_dir() {
                dirs.push((name, mode));
                walk(&e.path(), dirs, files);
            } else {
                files.push((name, mode));
            }
        }
    }
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    walk(&d.path().join("out"), &mut dirs, &mut files);
    assert!(!dirs.is_empty() && dirs.iter().all(|(_, m)| *m == 0o755), "{dirs:?}");
    assert_eq!(fs::metadata(d.path().join("out")).unwrap().permissions().mode() & 0o777, 0o755);
    assert!(files.iter().all(|(n, m)| if n.ends_with(".key") || n.ends_with(".kubeconfig") { *m == 0o600 } else { *m & 0o022 == 0 }), "{files:?}");
}

#[test]
fn mirror_streaming_without_content_length_is_cut_off_at_the_cap() {
    use kbin::artifacts::cache::Cache;
    use kbin::artifacts::download::{FetchOptions, Fetcher, NoProgress};
    use kbin::artifacts::{ArtifactError, Sha256};
    let srv = Server::start(vec![("/kubelet", Behavior::Endless)]);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let f = Fetcher::new(FetchOptions { attempts: 1, ..FetchOptions::default() }).unwrap();
    let err = f.fetch_limited(&srv.url("/kubelet"), Sha256([7; 32]), 1 << 20, &cache, &NoProgress).unwrap_err();
    assert!(matches!(err, ArtifactError::TooLarge { limit, .. } if limit == 1 << 20), "{err}");
    assert!(support::partial_files(&dir.path().join("cache")).is_empty(), "the oversized body is not kept");
    assert!(cached_files(&dir.path().join("cache")).is_empty());
    // the cap comes from the catalog: the server tarball is large, single binaries are not
    let c = kbin::artifacts::Catalog::embedded();
    let arch = kbin::artifacts::Arch::Amd64;
    assert_eq!(c.component("kubernetes-server").unwrap().artifact("v1.34.2", arch).max_bytes, 2048 << 20);
    assert_eq!(c.component("kubelet").unwrap().artifact("v1.34.2", arch).max_bytes, 512 << 20);
}

// 4. images, add-ons and registry mirrors (issue 14)

#[test]
fn images_and_registry_mirrors_are_checked_field_by_field_and_nothing_is_written() {
    let text = format!(
        "{SMALL}\n[images.pause]\nref = \"registry.k8s.io/pause\"\nsha256 = \"12345\"\nurl = \"ftp://x/pause.tar\"\n\n\
         [images.web]\nref = \"web:1\"\nsha256 = \"{h}\"\nurl = \"http://10.0.0.1/web.tar\"\nfile = \"web.tar\"\n\n\
         [images.Web2]\nref = \"web:1\"\nsha256 = \"{h}\"\n\n\
         [addons]\ncoredns = true\nmetricserver = true\n\n\
         [registries.\"docker.io\"]\nmirrors = [\"mirror.example:5000\"]\nca_file = \"missing-ca.crt\"\n\n\
         [registries.\"bad host\"]\nmirrors = []\n",
        h = "ab".repeat(32)
    );
    let d = Dir::with_cluster(&text);
    let out = d.kbin(&["pki", "init"]).fails_with(3);
    let err = out.stderr();
    for field in [
        "images.pause.ref: \"registry.k8s.io/pause\" has neither a tag nor a digest",
        "images.pause.sha256: \"12345\" is not a SHA-256 digest",
        "images.pause.url: \"ftp://x/pause.tar\" is not an http(s) URL",
        "images.web.file: both url and file are set",
        "images.Web2: \"Web2\" is not a usable image key",
        "images.web.ref: \"web:1\" is also images.Web2.ref",
        "addons.metricserver",
        "registries.docker.io.mirrors[0]: \"mirror.example:5000\" is not an http(s) URL",
        "registries.docker.io.ca_file: cannot read",
        "registries.bad host: \"bad host\" is not a registry host",
        "registries.bad host.mirrors: no mirror listed",
    ] {
        assert!(err.contains(field), "{field} not reported:\n{err}");
    }
    assert!(!d.pki().exists(), "pki/ written");
}
