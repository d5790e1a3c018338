//! `kbin pki` end to end through the real binary; certificates are checked with the openssl CLI.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_issues_the_whole_set_and_openssl_agrees() {
    let d = Dir::with_cluster(EXPANSION);
    d.kbin(&["pki", "init"]).ok();
    let pki = d.pki();
    // chains: each leaf verifies against its own CA, and not against another
    for (ca, leaf) in [
        ("ca.crt", "hosts/master1/apiserver.crt"),
        ("ca.crt", "hosts/master2/apiserver.crt"),
        ("ca.crt", "hosts/node1/kubelet.crt"),
        ("ca.crt", "admin.crt"),
        ("ca.crt", "super-admin.crt"),
        ("ca.crt", "controller-manager.crt"),
        ("ca.crt", "scheduler.crt"),
        ("ca.crt", "kube-proxy.crt"),
        ("ca.crt", "apiserver-kubelet-client.crt"),
        ("etcd/ca.crt", "hosts/master1/etcd-server.crt"),
        ("etcd/ca.crt", "hosts/node2/etcd-peer.crt"),
        ("etcd/ca.crt", "apiserver-etcd-client.crt"),
        ("etcd/ca.crt", "etcd/healthcheck-client.crt"),
        ("front-proxy-ca.crt", "front-proxy-client.crt"),
    ] {
        assert_verifies(&pki, ca, leaf);
    }
    let (ok, _) = openssl(&pki, &["verify", "-CAfile", "ca.crt", "apiserver-etcd-client.crt"]);
    assert!(!ok, "the etcd client cert must not verify under the kubernetes CA");

    // apiserver SANs
    let text = x509_text(&pki, "hosts/master2/apiserver.crt");
    for san in [
        "DNS:master2", "IP Address:192.168.0.14", "IP Address:192.168.0.88", "IP Address:127.0.0.1", "IP Address:10.0.0.1",
        "DNS:kubernetes,", "DNS:kubernetes.default,", "DNS:kubernetes.default.svc,", "DNS:kubernetes.default.svc.cluster.local",
    ] {
        assert!(text.contains(san), "apiserver/master2 lacks {san}:\n{text}");
    }
    assert!(!text.contains("192.168.0.11"), "no other master's address in master2's cert");
    assert!(text.contains("TLS Web Server Authentication") && !text.contains("TLS Web Client Authentication"));
    assert!(text.contains("CA:FALSE") && text.contains("Authority Key Identifier") && text.contains("Subject Key Identifier"));

    // etcd member certs: server+client, name, address, localhost, 127.0.0.1, ::1
    let text = x509_text(&pki, "hosts/node1/etcd-peer.crt");
    for want in ["DNS:node1", "IP Address:192.168.0.12", "DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1", "TLS Web Server Authentication, TLS Web Client Authentication"] {
        assert!(text.contains(want), "etcd-peer/node1 lacks {want}:\n{text}");
    }
    // clients
    let text = x509_text(&pki, "super-admin.crt");
    assert!(text.contains("O = system:masters") && text.contains("TLS Web Client Authentication"), "{text}");
    assert!(x509_text(&pki, "controller-manager.crt").contains("CN = system:kube-controller-manager"));
    // CAs
    let ca = x509_text(&pki, "ca.crt");
    assert!(ca.contains("CA:TRUE") && ca.contains("Certificate Sign") && ca.contains("prime256v1"), "{ca}");
    // serial numbers are random and positive
    let s1 = openssl(&pki, &["x509", "-in", "admin.crt", "-noout", "-serial"]).1;
    let s2 = openssl(&pki, &["x509", "-in", "scheduler.crt", "-noout", "-serial"]).1;
    assert_ne!(s1, s2);
    assert!(s1.trim().len() > "serial=".len() + 30, "{s1}");

    // modes: keys and tokens 0600, directory 0700
    assert_eq!(mode(&pki), 0o700);
    for f in ["ca.key", "etcd/ca.key", "sa.key", "hosts/master1/apiserver.key", "bootstrap-token", "token.csv", "kubeconfigs/admin.kubeconfig"] {
        assert_eq!(mode(&pki.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&pki.join("ca.crt")), 0o644);
    // service-account key pair is not a CA key
    let sa_pub = std::fs::read_to_string(pki.join("sa.pub")).unwrap();
    assert!(sa_pub.starts_with("-----BEGIN PUBLIC KEY-----"));
    let (_, ca_pub) = openssl(&pki, &["x509", "-in", "ca.crt", "-noout", "-pubkey"]);
    assert_ne!(sa_pub.trim(), ca_pub.trim());

    // bootstrap token and static token file
    let token = std::fs::read_to_string(pki.join("bootstrap-token")).unwrap();
    let token = token.trim();
    let (id, secret) = token.split_once('.').unwrap();
    assert!(id.len() == 6 && secret.len() == 16 && token.bytes().all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit()), "{token}");
    let csv = std::fs::read_to_string(pki.join("token.csv")).unwrap();
    assert_eq!(csv, format!("{token},kubelet-bootstrap,10001,\"system:bootstrappers\"\n"));
}

#[test]
fn kubeconfigs_parse_back_and_point_at_the_vip() {
    let d = Dir::with_cluster(EXPANSION);
    d.kbin(&["pki", "init"]).ok();
    let pki = d.pki();
    for (file, user) in [
        ("admin", "kubernetes-admin"),
        ("super-admin", "kubernetes-super-admin"),
        ("kube-controller-manager", "system:kube-controller-manager"),
        ("kube-scheduler", "system:kube-scheduler"),
        ("kube-proxy", "system:kube-proxy"),
        ("flannel", "flannel"),
        ("bootstrap", "kubelet-bootstrap"),
    ] {
        let text = std::fs::read_to_string(pki.join(format!("kubeconfigs/{file}.kubeconfig"))).unwrap();
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(v["clusters"][0]["cluster"]["server"].as_str(), Some("https://192.168.0.88:6443"), "{file}");
        assert_eq!(v["users"][0]["name"].as_str(), Some(user));
        assert_eq!(v["current-context"].as_str(), Some(format!("{user}@expansion").as_str()));
        let ca_data = v["clusters"][0]["cluster"]["certificate-authority-data"].as_str().unwrap();
        assert_eq!(b64(ca_data), std::fs::read_to_string(pki.join("ca.crt")).unwrap(), "{file} embeds ca.crt");
        if file == "bootstrap" {
            let token = std::fs::read_to_string(pki.join("bootstrap-token")).unwrap();
            assert_eq!(v["users"][0]["user"]["token"].as_str(), Some(token.trim()));
        } else {
            // the embedded client cert verifies against the CA and matches its key
            let cert = b64(v["users"][0]["user"]["client-certificate-data"].as_str().unwrap());
            let key = b64(v["users"][0]["user"]["client-key-data"].as_str().unwrap());
            std::fs::write(d.path().join("c.crt"), &cert).unwrap();
            std::fs::write(d.path().join("c.key"), &key).unwrap();
            assert_verifies(d.path(), "pki/ca.crt", "c.crt");
            let (_, a) = openssl(d.path(), &["x509", "-in", "c.crt", "-noout", "-pubkey"]);
            let (_, b) = openssl(d.path(), &["pkey", "-in", "c.key", "-pubout"]);
            assert_eq!(a, b, "{file}: key does not match cert");
        }
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}

#[test]
fn rerun_rewrites_nothing() {
    let d = Dir::with_cluster(EXPANSION);
    d.kbin(&["pki", "init"]).ok();
    let before = d.snapshot();
    let out = d.kbin(&["pki", "init", "--json"]).ok();
    assert_eq!(d.snapshot(), before, "second run changed files");
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(report["issued"].as_array().unwrap().len(), 0);
    assert_eq!(report["written"].as_array().unwrap().len(), 0);
    assert!(out.stderr().contains("nothing to issue"), "{}", out.stderr());
}

#[test]
fn adding_a_master_issues_exactly_its_certificates() {
    let d = Dir::with_cluster(EXPANSION);
    d.kbin(&["pki", "init"]).ok();
    let before = d.snapshot();
    d.write_cluster(&format!("{EXPANSION}\n[[hosts]]\nname = \"master3\"\naddress = \"192.168.0.17\"\nroles = [\"master\"]\n"));
    d.kbin(&["pki", "init"]).ok();
    let after = d.snapshot();
    let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert_eq!(added, ["hosts/master3/apiserver.crt", "hosts/master3/apiserver.key"]);
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "{k} changed");
    }
    assert_verifies(&d.pki(), "ca.crt", "hosts/master3/apiserver.crt");
    assert!(x509_text(&d.pki(), "hosts/master3/apiserver.crt").contains("IP Address:192.168.0.17"));
}

#[test]
fn vip_added_later_is_reported_then_renewed_on_purpose() {
    let no_vip = EXPANSION.replace("vip = \"192.168.0.88\"\n", "").replace("roles = [\"lb\"]", "roles = [\"node\"]");
    let d = Dir::with_cluster(&no_vip);
    d.kbin(&["pki", "init"]).ok();
    d.kbin(&["pki", "check"]).ok();
    let before = d.snapshot();
    d.write_cluster(&no_vip.replace("port = 6443", "vip = \"192.168.0.88\"\nport = 6443"));
    let out = d.kbin(&["pki", "init"]).ok();
    assert_eq!(d.snapshot(), before, "a stale cert is reported, not silently replaced");
    let err = out.stderr();
    assert!(err.contains("apiserver/master1") && err.contains("lacks 192.168.0.88") && err.contains("kbin pki renew apiserver/master1"), "{err}");
    assert!(err.contains("kubeconfig/admin") && err.contains("server is https://192.168.0.11:6443"), "{err}");

    let out = d.kbin(&["pki", "check"]).fails_with(1);
    let err = out.stderr();
    assert!(err.contains("apiserver/master1 (hosts/master1/apiserver.crt): SANs differ from the cluster file: lacks 192.168.0.88"), "{err}");
    assert!(err.contains("apiserver/master2"), "{err}");

    let key_before = before["hosts/master1/apiserver.key"].clone();
    d.kbin(&["pki", "renew", "apiserver", "admin", "super-admin", "controller-manager", "scheduler", "kube-proxy", "flannel", "kubeconfig/bootstrap"]).ok();
    d.kbin(&["pki", "check"]).ok();
    assert!(x509_text(&d.pki(), "hosts/master1/apiserver.crt").contains("IP Address:192.168.0.88"));
    assert_eq!(std::fs::read(d.pki().join("hosts/master1/apiserver.key")).unwrap(), key_before, "renew keeps the key");
    assert_eq!(std::fs::read(d.pki().join("ca.crt")).unwrap(), before["ca.crt"], "renew never touches a CA");
}

#[test]
fn renew_refuses_cas_and_unknown_names() {
    let d = Dir::with_cluster(SMALL);
    d.kbin(&["pki", "init"]).ok();
    let before = d.snapshot();
    let out = d.kbin(&["pki", "renew", "ca"]).fails_with(2);
    assert!(out.stderr().contains("never replaces a CA"), "{}", out.stderr());
    let out = d.kbin(&["pki", "renew", "apiserver/nope"]).fails_with(1);
    assert!(out.stderr().contains("unknown certificate \"apiserver/nope\"") && out.stderr().contains("hint: names are:"), "{}", out.stderr());
    assert_eq!(d.snapshot(), before);
}

#[test]
fn a_missing_ca_is_never_silently_recreated() {
    let d = Dir::with_cluster(SMALL);
    d.kbin(&["pki", "init"]).ok();
    std::fs::remove_file(d.pki().join("etcd/ca.crt")).unwrap();
    let before = d.snapshot();
    let out = d.kbin(&["pki", "init"]).fails_with(2);
    assert!(out.stderr().contains("the etcd-ca CA is missing") && out.stderr().contains("etcd-server/m1"), "{}", out.stderr());
    assert_eq!(d.snapshot(), before, "nothing written");
}

#[test]
fn bad_cluster_files_exit_3_and_write_nothing() {
    let cases = [
        (SMALL.replace("10.213.0.11", "10.213.0.311"), "hosts[0].address"),
        (SMALL.replace("[cluster]", "[cluster]\nversion = 2"), "cluster.version: unknown key"),
        (SMALL.replace("10.244.0.0/16", "10.96.0.0/12"), "overlaps the service CIDR"),
        (SMALL.replace("[cluster]", "[pki]\nkey_algorithm = \"ed448\"\n[cluster]"), "unknown key algorithm \"ed448\""),
        (SMALL.replace("\"master\", ", ""), "no host has the master role"),
        (SMALL.replace("name = \"small\"", "name = \"small\"\ncluster_dns = \"10.97.0.10\""), "outside the service CIDR"),
        ("[cluster\n".to_string(), "cluster.toml:1"),
    ];
    for (text, want) in cases {
        let d = Dir::with_cluster(&text);
        let out = d.kbin(&["pki", "init"]).fails_with(3);
        assert!(out.stderr().contains(want) && out.stderr().contains("hint:"), "want {want:?} in:\n{}", out.stderr());
        assert!(!d.pki().exists(), "pki/ created for a bad file ({want})");
    }
    // a missing file names it and says what to do
    let d = Dir::with_cluster(SMALL);
    let out = d.kbin(&["-c", "nope.toml", "pki", "init"]).fails_with(3);
    assert!(out.stderr().contains("cannot read cluster file nope.toml") && out.stderr().contains("hint:"), "{}", out.stderr());
}

#[test]
fn rsa_2048_keys() {
    let d = Dir::with_cluster(&SMALL.replace("[cluster]", "[pki]\nkey_algorithm = \"rsa-2048\"\n[cluster]"));
    d.kbin(&["pki", "init"]).ok();
    let text = x509_text(&d.pki(), "hosts/m1/apiserver.crt");
    assert!(text.contains("Public-Key: (2048 bit)") && text.contains("sha256WithRSAEncryption"), "{text}");
    assert!(text.contains("Digital Signature, Key Encipherment"), "{text}");
    assert_verifies(&d.pki(), "ca.crt", "hosts/m1/apiserver.crt");
    d.kbin(&["pki", "check"]).ok();
}

#[test]
fn inspect_lists_every_certificate() {
    let d = Dir::with_cluster(PRIVATE_HA);
    d.kbin(&["pki", "init"]).ok();
    let out = d.kbin(&["pki", "inspect", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let certs = v.as_array().unwrap();
    // 3 CAs, 3 apiservers, 3x2 etcd, 3 kubelets, 10 clients, metrics-server's serving certificate
    assert_eq!(certs.len(), 26);
    let ms = certs.iter().find(|c| c["name"] == "metrics-server").unwrap();
    assert_eq!((ms["issuer"].as_str(), ms["sans"].clone()), (Some("CN=kubernetes-ca"), serde_json::json!(["metrics-server.kube-system.svc", "metrics-server.kube-system.svc.cluster.local"])));
    let api = certs.iter().find(|c| c["name"] == "apiserver/cp2").unwrap();
    assert_eq!(api["issuer"], "CN=kubernetes-ca");
    assert_eq!(api["key"], "ECDSA P-256");
    assert!(api["sans"].as_array().unwrap().iter().any(|s| s == "k8s-api.internal.example.com"));
    assert!(api["sans"].as_array().unwrap().iter().any(|s| s == "k8s.example.com"));
    assert!((363..=365).contains(&api["days_left"].as_i64().unwrap()));
    let table = d.kbin(&["pki", "inspect"]).ok().stdout();
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("etcd-peer/cp3") && l.contains("CN=etcd-ca")), "{table}");
}

#[test]
fn check_finds_wrong_keys_foreign_certs_and_near_expiry() {
    let d = Dir::with_cluster(SMALL);
    d.kbin(&["pki", "init"]).ok();
    d.kbin(&["pki", "check", "--warn-days", "30"]).ok();
    let out = d.kbin(&["pki", "check", "--warn-days", "400"]).fails_with(1);
    assert!(out.stderr().contains("admin (admin.crt): expires in 36"), "{}", out.stderr());
    // swap a key; sign the scheduler cert with another CA
    let pki = d.pki();
    std::fs::copy(pki.join("admin.key"), pki.join("scheduler.key")).unwrap();
    std::fs::copy(pki.join("etcd/healthcheck-client.crt"), pki.join("kube-proxy.crt")).unwrap();
    let out = d.kbin(&["pki", "check", "--json"]).fails_with(1);
    let v: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let msgs: Vec<String> = v.as_array().unwrap().iter().map(|p| format!("{}: {}", p["name"].as_str().unwrap(), p["message"].as_str().unwrap())).collect();
    assert!(msgs.contains(&"scheduler: does not match scheduler.crt".to_string()), "{msgs:?}");
    assert!(msgs.contains(&"kube-proxy: is not signed by the ca CA".to_string()), "{msgs:?}");
}

#[test]
fn import_a_ca_made_by_cfssl() {
    for (algo, size, want) in [("rsa", 2048, "RSA 2048"), ("ecdsa", 256, "ECDSA P-256")] {
        let d = Dir::with_cluster(SMALL);
        let csr = format!(r#"{{"CN":"cfssl-made-ca","key":{{"algo":"{algo}","size":{size}}},"names":[{{"O":"legacy"}}]}}"#);
        std::fs::write(d.path().join("ca-csr.json"), csr).unwrap();
        let sh = std::process::Command::new("sh")
            .arg("-c")
            .arg("cfssl gencert -initca ca-csr.json | cfssljson -bare legacy")
            .current_dir(d.path())
            .output()
            .expect("sh");
        assert!(sh.status.success() && d.path().join("legacy-key.pem").exists(), "cfssl must be installed (apt-get install golang-cfssl): {}", String::from_utf8_lossy(&sh.stderr));
        let key_pem = std::fs::read_to_string(d.path().join("legacy-key.pem")).unwrap();
        assert!(key_pem.contains(if algo == "rsa" { "RSA PRIVATE KEY" } else { "EC PRIVATE KEY" }), "cfssl writes PKCS#1/SEC1");

        // a key that is not the CA's is refused, and nothing is written
        let (ok, text) = openssl(d.path(), &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "wrong.key"]);
        assert!(ok, "{text}");
        let out = d.kbin(&["pki", "import", "--ca", "kubernetes", "--cert", "legacy.pem", "--key", "wrong.key"]).fails_with(1);
        assert!(out.stderr().contains("is not the private key of legacy.pem"), "{}", out.stderr());
        assert!(!d.pki().join("ca.crt").exists());

        let out = d.kbin(&["pki", "import", "--ca", "kubernetes", "--cert", "legacy.pem", "--key", "legacy-key.pem"]).ok();
        assert!(out.stderr().contains(want), "{}", out.stderr());
        assert_eq!(mode(&d.pki().join("ca.key")), 0o600);
        d.kbin(&["pki", "init"]).ok();
        // leaves verify against the cfssl CA file itself
        std::fs::copy(d.path().join("legacy.pem"), d.pki().join("legacy.pem")).unwrap();
        assert_verifies(&d.pki(), "legacy.pem", "hosts/m1/apiserver.crt");
        assert_verifies(&d.pki(), "legacy.pem", "admin.crt");
        d.kbin(&["pki", "check"]).ok();
        // importing again never replaces the CA
        let before = d.snapshot();
        let out = d.kbin(&["pki", "import", "--ca", "kubernetes", "--cert", "legacy.pem", "--key", "legacy-key.pem"]).fails_with(2);
        assert!(out.stderr().contains("never replaces a CA"), "{}", out.stderr());
        assert_eq!(d.snapshot(), before);
    }
}

#[test]
fn import_refuses_a_leaf_certificate() {
    let d = Dir::with_cluster(SMALL);
    let other = Dir::with_cluster(SMALL);
    other.kbin(&["pki", "init"]).ok();
    let out = d
        .kbin(&["pki", "import", "--ca", "etcd", "--cert", other.pki().join("admin.crt").to_str().unwrap(), "--key", other.pki().join("admin.key").to_str().unwrap()])
        .fails_with(1);
    assert!(out.stderr().contains("is not a CA certificate"), "{}", out.stderr());
    assert!(!d.pki().join("etcd/ca.crt").exists());
}

#[test]
fn help_and_completions() {
    let d = Dir::with_cluster(SMALL);
    let help = d.kbin(&["--help"]).ok().stdout();
    for cmd in ["pki", "completions"] {
        assert!(help.contains(cmd), "{help}");
    }
    let help = d.kbin(&["pki", "--help"]).ok().stdout();
    for cmd in ["init", "renew", "inspect", "check", "import"] {
        assert!(help.contains(cmd), "{help}");
    }
    let bash = d.kbin(&["completions", "bash"]).ok().stdout();
    assert!(bash.contains("complete -F") && bash.contains("kbin"), "{bash}");
    let zsh = d.kbin(&["completions", "zsh"]).ok().stdout();
    assert!(zsh.starts_with("#compdef kbin"));
}

#[test]
fn endpoint_change_moves_node_kubeconfigs_with_repoint_not_renew() {
    let no_vip = EXPANSION.replace("vip = \"192.168.0.88\"\n", "").replace("roles = [\"lb\"]", "roles = [\"node\"]");
    let d = Dir::with_cluster(&no_vip);
    d.kbin(&["pki", "init"]).ok();
    d.write_cluster(&no_vip.replace("port = 6443", "vip = \"192.168.0.88\"\nport = 6443"));
    let init = d.kbin(&["pki", "init"]).ok().stderr();
    let check = d.kbin(&["pki", "check"]).fails_with(1).stderr();
    for err in [&init, &check] {
        // the kubeconfigs the nodes use: moved by the LB and repoint-nodes, never renewed
        for id in ["bootstrap", "kube-proxy", "flannel"] {
            assert!(!err.contains(&format!("kbin pki renew kubeconfig/{id}")), "{id}: {err}");
            let block = err.split(&format!("kubeconfig/{id} (")).nth(1).unwrap_or_else(|| panic!("no kubeconfig/{id} in {err}"));
            let hint = block.lines().find(|l| l.contains("hint:")).unwrap();
            assert!(hint.contains("`kbin lb deploy`, then `kbin repoint-nodes --vip` (or `--endpoint HOST`)"), "{id}: {hint}");
        }
        // the operator's own kubeconfigs (and the masters', whose server is their own apiserver) are renewed
        for id in ["admin", "super-admin", "controller-manager", "scheduler"] {
            assert!(err.contains(&format!("kbin pki renew kubeconfig/{id}")), "{id}: {err}");
        }
    }
}

#[test]
fn check_hosts_reports_unreachable_hosts_with_exit_1_and_one_json_document() {
    let d = Dir::with_cluster(&format!("{SMALL}[ssh]\nport = 1\nconnect_timeout_secs = 1\n"));
    d.kbin(&["pki", "init"]).ok();
    let out = d.kbin(&["pki", "check", "--hosts"]).fails_with(1);
    assert!(out.stdout().starts_with("HOST") && out.stdout().contains("unreachable"), "{}", out.stdout());
    assert!(out.stderr().contains("1 certificate problem on 1 host") && out.stderr().contains("m1: unreachable") && out.stderr().contains("hint:"), "{}", out.stderr());
    let out = d.kbin(&["pki", "check", "--hosts", "--warn-days", "60", "--json"]).fails_with(1);
    let v: serde_json::Value = serde_json::from_str(&out.stdout()).expect("one JSON document on stdout");
    assert_eq!((v["ok"].as_bool(), v["warn_days"].as_i64()), (Some(false), Some(60)));
    assert_eq!(v["hosts"][0]["reachable"], false);
    assert_eq!(v["problems"][0]["status"], "unreachable");
    assert_eq!(v["error"]["exit"], 1);
}

#[test]
fn check_hosts_needs_the_local_pki() {
    let d = Dir::with_cluster(&format!("{SMALL}[ssh]\nport = 1\nconnect_timeout_secs = 1\n"));
    let out = d.kbin(&["pki", "check", "--hosts", "--json"]).fails_with(1);
    assert!(out.stderr().contains("hint: run `kbin pki init` first"), "{}", out.stderr());
    let v: serde_json::Value = serde_json::from_str(&out.stdout()).expect("one JSON document on stdout");
    assert_eq!(v["ok"], false);
}
