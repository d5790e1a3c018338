//! Rendering: snapshots of every template, `systemd-analyze verify` of every unit, parse-back of
//! every config file, strict mode and template overrides.

mod common;

use std::path::Path;

use common::*;

/// Render `host` into `out` with the real binary; returns the list printed as JSON.
fn render(d: &Dir, host: &str, out: &Path) -> serde_json::Value {
    let o = d.kbin(&["render", "--host", host, "--out", out.to_str().unwrap(), "--json"]).ok();
    serde_json::from_str(&o.stdout()).unwrap()
}

fn read(out: &Path, p: &str) -> String {
    std::fs::read_to_string(out.join(p.trim_start_matches('/'))).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn snapshots_of_every_template() {
    for (example, text, hosts) in [
        ("expansion", EXPANSION, &["master1", "node1", "lb1", "lb2"][..]),
        ("private-ha", PRIVATE_HA, &["cp1", "worker2"][..]),
    ] {
        let d = Dir::with_cluster(text);
        d.kbin(&["pki", "init"]).ok();
        for host in hosts {
            let out = d.path().join(format!("out-{host}"));
            let list = render(&d, host, &out);
            for f in list["files"].as_array().unwrap() {
                let source = f["source"].as_str().unwrap();
                let Some(template) = source.strip_prefix("template ") else { continue };
                let content = read(&out, f["path"].as_str().unwrap());
                insta::assert_snapshot!(format!("{example}-{host}-{template}"), content);
            }
        }
    }
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    let d = Dir::with_cluster(EXPANSION);
    d.kbin(&["pki", "init"]).ok();
    let root = d.path().join("root");
    let list = render(&d, "master1", &root);
    let units_dir = root.join("usr/lib/systemd/system");
    // the root needs systemd's own units and the programs the units name
    let cp = std::process::Command::new("cp").args(["-rn", "/lib/systemd/system/.", units_dir.to_str().unwrap()]).status().unwrap();
    assert!(cp.success());
    for bin in ["opt/kubernetes/bin/kube-apiserver", "opt/kubernetes/bin/kube-controller-manager", "opt/kubernetes/bin/kube-scheduler", "opt/kubernetes/bin/kubelet", "opt/kubernetes/bin/kube-proxy", "opt/kubernetes/bin/flanneld", "opt/etcd/bin/etcd", "usr/local/bin/containerd", "bin/mkdir", "bin/sh"] {
        let p = root.join(bin);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&p).unwrap().permissions(), 0o755);
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let units: Vec<String> = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .filter(|p| p.ends_with(".service"))
        .collect();
    assert_eq!(units.len(), 8, "{units:?}");
    let mut cmd = std::process::Command::new("systemd-analyze");
    cmd.args(["verify", "--man=no", "--generators=no", &format!("--root={}", root.display())]);
    for u in &units {
        cmd.arg(root.join(u.trim_start_matches('/')));
    }
    let out = cmd.output().expect("systemd-analyze must be installed (apt-get install systemd)");
    assert!(out.status.success(), "systemd-analyze verify failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn config_files_parse_and_carry_the_cluster_settings() {
    let d = Dir::with_cluster(EXPANSION);
    d.kbin(&["pki", "init"]).ok();
    let out = d.path().join("o");
    render(&d, "master1", &out);
    let etcd: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(&out, "/opt/etcd/cfg/etcd.yml")).unwrap();
    assert_eq!(etcd["name"].as_str(), Some("master1"));
    assert_eq!(etcd["initial-cluster"].as_str(), Some("master1=https://192.168.0.11:2380,node1=https://192.168.0.12:2380,node2=https://192.168.0.13:2380"));
    assert_eq!(etcd["client-transport-security"]["client-cert-auth"].as_bool(), Some(true));
    assert_eq!(etcd["peer-transport-security"]["client-cert-auth"].as_bool(), Some(true));
    let kubelet: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(&out, "/opt/kubernetes/cfg/kubelet-config.yaml")).unwrap();
    assert_eq!(kubelet["kind"].as_str(), Some("KubeletConfiguration"));
    assert_eq!(kubelet["clusterDNS"][0].as_str(), Some("10.0.0.2"));
    assert_eq!(kubelet["cgroupDriver"].as_str(), Some("systemd"));
    assert_eq!(kubelet["rotateCertificates"].as_bool(), Some(true));
    assert_eq!(kubelet["authentication"]["anonymous"]["enabled"].as_bool(), Some(false));
    let proxy: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(&out, "/opt/kubernetes/cfg/kube-proxy-config.yaml")).unwrap();
    assert_eq!(proxy["mode"].as_str(), Some("iptables"));
    assert_eq!(proxy["clusterCIDR"].as_str(), Some("10.244.0.0/16"));
    let net: serde_json::Value = serde_json::from_str(&read(&out, "/opt/kubernetes/cfg/flannel-net-conf.json")).unwrap();
    assert_eq!(net["Network"], "10.244.0.0/16");
    let cni: serde_json::Value = serde_json::from_str(&read(&out, "/etc/cni/net.d/10-flannel.conflist")).unwrap();
    assert_eq!(cni["plugins"][0]["type"], "flannel");
    let containerd: toml::Value = toml::from_str(&read(&out, "/etc/containerd/config.toml")).unwrap();
    assert_eq!(containerd["version"].as_integer(), Some(3));
    // pushed certs and kubeconfigs are the pki files, with private modes
    assert_eq!(std::fs::read(out.join("opt/kubernetes/ssl/apiserver.crt")).unwrap(), std::fs::read(d.pki().join("hosts/master1/apiserver.crt")).unwrap());
    for secret in ["opt/kubernetes/ssl/apiserver.key", "opt/etcd/ssl/server.key", "opt/kubernetes/cfg/bootstrap.kubeconfig", "opt/kubernetes/ssl/sa.key"] {
        assert_eq!(std::fs::metadata(out.join(secret)).unwrap().permissions().mode() & 0o777, 0o600, "{secret}");
    }
    // a master's controller-manager and scheduler talk to the apiserver next to them; the
    // nodes' kubeconfigs point at the cluster endpoint (the VIP here)
    for k in ["kube-controller-manager", "kube-scheduler"] {
        let kc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(&out, &format!("/opt/kubernetes/cfg/{k}.kubeconfig"))).unwrap();
        assert_eq!(kc["clusters"][0]["cluster"]["server"].as_str(), Some("https://127.0.0.1:6443"), "{k}");
        assert!(kc["users"][0]["user"]["client-key-data"].as_str().is_some(), "{k} keeps its credentials");
    }
    let kc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(&out, "/opt/kubernetes/cfg/kube-proxy.kubeconfig")).unwrap();
    assert_eq!(kc["clusters"][0]["cluster"]["server"].as_str(), Some("https://192.168.0.88:6443"));
    // etcd hosts get the etcd CA certificate, never a CA key
    assert!(!out.join("opt/etcd/ssl/ca.key").exists());
    let node = d.path().join("n");
    let list = render(&d, "node1", &node);
    assert!(list["files"].as_array().unwrap().iter().all(|f| !f["path"].as_str().unwrap().ends_with("ca.key")), "a worker never gets a CA key");
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn flags_are_valid_for_current_kubernetes() {
    let d = Dir::with_cluster(EXPANSION);
    d.kbin(&["pki", "init"]).ok();
    let out = d.path().join("o");
    render(&d, "master1", &out);
    let mut all = String::new();
    for u in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"] {
        all.push_str(&read(&out, &format!("/usr/lib/systemd/system/{u}.service")));
    }
    // flags upstream removed: the insecure port, dockershim, and kubelet flags moved to the config file
    for removed in ["--insecure-port", "--insecure-bind-address", "--container-runtime=", "--network-plugin", "--cni-bin-dir", "--docker", "--pod-infra-container-image", "--experimental", "--port=0", "--kubelet-https", "--address="] {
        assert!(!all.contains(removed), "rendered units use removed flag {removed}");
    }
}

#[test]
fn ipvs_mode_loads_ipvs_modules() {
    let d = Dir::with_cluster(PRIVATE_HA);
    d.kbin(&["pki", "init"]).ok();
    let out = d.path().join("o");
    render(&d, "worker1", &out);
    assert!(read(&out, "/etc/modules-load.d/kubernetes.conf").contains("ip_vs_rr"));
    assert!(read(&out, "/opt/kubernetes/cfg/kube-proxy-config.yaml").contains("mode: ipvs"));
    assert!(read(&out, "/usr/lib/systemd/system/kubelet.service").contains("--node-labels=pool=general"));
}

#[test]
fn nftables_mode_is_rendered_for_kube_proxy_and_flannel() {
    let d = Dir::with_cluster(&SMALL.replace("pod_cidr = \"10.244.0.0/16\"", "pod_cidr = \"10.244.0.0/16\"\nproxy_mode = \"nftables\""));
    d.kbin(&["pki", "init"]).ok();
    let out = d.path().join("o");
    render(&d, "m1", &out);
    assert!(read(&out, "/opt/kubernetes/cfg/kube-proxy-config.yaml").contains("mode: nftables"));
    let net: serde_json::Value = serde_json::from_str(&read(&out, "/opt/kubernetes/cfg/flannel-net-conf.json")).unwrap();
    assert_eq!(net["EnableNFTables"], true, "flannel writes nftables rules beside kube-proxy's");
    assert!(!read(&out, "/etc/modules-load.d/kubernetes.conf").contains("ip_vs"));
    // iptables mode keeps flannel on iptables
    let d = Dir::with_cluster(SMALL);
    d.kbin(&["pki", "init"]).ok();
    render(&d, "m1", &d.path().join("o"));
    let net: serde_json::Value = serde_json::from_str(&read(&d.path().join("o"), "/opt/kubernetes/cfg/flannel-net-conf.json")).unwrap();
    assert_eq!(net["EnableNFTables"], false);
}

#[test]
fn ipvs_mode_is_accepted_with_a_deprecation_warning_and_an_unknown_mode_is_refused() {
    let d = Dir::with_cluster(&SMALL.replace("pod_cidr = \"10.244.0.0/16\"", "pod_cidr = \"10.244.0.0/16\"\nproxy_mode = \"ipvs\""));
    let o = d.kbin(&["pki", "init"]).ok();
    assert!(o.stderr().contains("ipvs mode is deprecated upstream") && o.stderr().contains("nftables"), "{}", o.stderr());
    let d = Dir::with_cluster(&SMALL.replace("pod_cidr = \"10.244.0.0/16\"", "pod_cidr = \"10.244.0.0/16\"\nproxy_mode = \"userspace\""));
    let o = d.kbin(&["pki", "init"]).fails_with(3);
    assert!(o.stderr().contains("unknown kube-proxy mode \"userspace\"") && o.stderr().contains("\"nftables\""), "{}", o.stderr());
}

#[test]
fn without_kbins_pod_network_a_node_gets_no_flannel_file_binary_or_unit() {
    let d = Dir::with_cluster(&format!("{SMALL}\n[network]\nplugin = \"none\"\n"));
    d.kbin(&["pki", "init"]).ok();
    let out = d.path().join("o");
    let list = render(&d, "m1", &out).to_string();
    for gone in ["flannel", "10-flannel.conflist", "flanneld.service"] {
        assert!(!list.contains(gone), "{gone} in {list}");
    }
    assert!(!out.join("etc/cni/net.d/10-flannel.conflist").exists());
    assert!(out.join("usr/lib/systemd/system/kubelet.service").exists() && out.join("usr/lib/systemd/system/kube-proxy.service").exists());
    let c = kbin::config::load(&d.path().join("cluster.toml")).unwrap();
    assert_eq!(kbin::config::node_units(&c), ["containerd", "kubelet", "kube-proxy"]);
    let bins: Vec<String> = kbin::render::binaries(&c, c.host("m1").unwrap()).into_iter().map(|b| b.component.to_string()).collect();
    assert!(!bins.iter().any(|b| b.starts_with("flannel")), "{bins:?}");
    assert!(bins.iter().any(|b| b == "cni-plugins"), "the standard plugins stay for the user's CNI: {bins:?}");
    // a misspelled plugin is refused naming the field
    let bad = Dir::with_cluster(&format!("{SMALL}\n[network]\nplugin = \"calico\"\n"));
    let o = bad.kbin(&["pki", "init"]).fails_with(3);
    assert!(o.stderr().contains("network.plugin") && o.stderr().contains("unknown pod network plugin \"calico\""), "{}", o.stderr());
}

#[test]
fn flannel_conflist_speaks_a_cni_version_every_flannel_plugin_accepts() {
    // regression: "1.0.0" is refused by the flannel CNI plugin releases before v1.0 (they speak
    // 0.1.0-0.4.0: "incompatible CNI versions"); flannel's own kube-flannel.yml says 0.3.1, which
    // every flannel plugin and the standard plugins v1.x (portmap, bridge) accept
    let d = Dir::with_cluster(SMALL);
    d.kbin(&["pki", "init"]).ok();
    let out = d.path().join("o");
    render(&d, "m1", &out);
    let conf: serde_json::Value = serde_json::from_str(&read(&out, "/etc/cni/net.d/10-flannel.conflist")).unwrap();
    assert_eq!(conf["cniVersion"], "0.3.1");
    assert_eq!(conf["plugins"][0]["type"], "flannel");
}

#[test]
fn component_config_overrides_merge_into_the_rendered_yaml() {
    // a node inside a container cannot write the kernel-wide conntrack limit: the operator turns
    // kube-proxy's conntrack sizing off; kubelet gets a field kbin does not render
    let text = format!(
        "{SMALL}\n[kube_proxy.config]\nconntrack = {{ maxPerCore = 0 }}\nmetricsBindAddress = \"0.0.0.0:10249\"\n\n[kubelet.config]\nfailCgroupV1 = false\nauthentication = {{ anonymous = {{ enabled = true }} }}\n"
    );
    let d = Dir::with_cluster(&text);
    d.kbin(&["pki", "init"]).ok();
    let out = d.path().join("o");
    render(&d, "m1", &out);
    let proxy: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(&out, "/opt/kubernetes/cfg/kube-proxy-config.yaml")).unwrap();
    assert_eq!(proxy["conntrack"]["maxPerCore"], serde_yaml_ng::Value::from(0), "{proxy:?}");
    assert_eq!(proxy["metricsBindAddress"].as_str(), Some("0.0.0.0:10249"), "a scalar replaces kbin's");
    assert_eq!(proxy["kind"].as_str(), Some("KubeProxyConfiguration"), "kbin's fields stay");
    let kubelet: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(&out, "/opt/kubernetes/cfg/kubelet-config.yaml")).unwrap();
    assert_eq!(kubelet["failCgroupV1"].as_bool(), Some(false));
    assert_eq!(kubelet["authentication"]["anonymous"]["enabled"].as_bool(), Some(true));
    assert_eq!(kubelet["authentication"]["webhook"]["enabled"].as_bool(), Some(true), "tables merge key by key");
    // without overrides the file is the template's text, byte for byte
    let plain = Dir::with_cluster(SMALL);
    plain.kbin(&["pki", "init"]).ok();
    let out2 = plain.path().join("o");
    render(&plain, "m1", &out2);
    assert!(!read(&out2, "/opt/kubernetes/cfg/kubelet-config.yaml").contains("overrides merged"));
    // an unknown key next to `config` is reported like any other
    let bad = Dir::with_cluster(&format!("{SMALL}\n[kubelet]\nconfg = {{ failCgroupV1 = false }}\n"));
    let o = bad.kbin(&["render", "--host", "m1"]).fails_with(3);
    assert!(o.stderr().contains("kubelet.confg"), "{}", o.stderr());
}

#[test]
fn templates_can_be_overridden_and_are_strict() {
    let d = Dir::with_cluster(&SMALL.replace("name = \"small\"", "name = \"small\"\ntemplates_dir = \"my-templates\""));
    d.kbin(&["pki", "init"]).ok();
    std::fs::create_dir(d.path().join("my-templates")).unwrap();
    std::fs::write(d.path().join("my-templates/etcd.yml.hbs"), "name: {{host.name}} # custom & <kept>\n").unwrap();
    let out = d.path().join("o");
    render(&d, "m1", &out);
    assert_eq!(read(&out, "/opt/etcd/cfg/etcd.yml"), "name: m1 # custom & <kept>\n", "override used, no HTML escaping");
    std::fs::write(d.path().join("my-templates/etcd.yml.hbs"), "name: {{host.nmae}}\n").unwrap();
    let o = d.kbin(&["render", "--host", "m1"]).fails_with(1);
    assert!(o.stderr().contains("etcd.yml") && o.stderr().contains("nmae") && o.stderr().contains("hint:"), "{}", o.stderr());
    std::fs::write(d.path().join("my-templates/etcd.yml.hbs"), "name: {{#if}}\n").unwrap();
    let o = d.kbin(&["render", "--host", "m1"]).fails_with(1);
    assert!(o.stderr().contains("my-templates/etcd.yml.hbs"), "{}", o.stderr());
}

#[test]
fn render_needs_pki_and_a_known_host() {
    let d = Dir::with_cluster(SMALL);
    let o = d.kbin(&["render", "--host", "m1"]).fails_with(1);
    assert!(o.stderr().contains("is missing: m1 needs it") && o.stderr().contains("kbin pki init"), "{}", o.stderr());
    d.kbin(&["pki", "init"]).ok();
    let o = d.kbin(&["render", "--host", "nope"]).fails_with(1);
    assert!(o.stderr().contains("no host named \"nope\""), "{}", o.stderr());
    // by address works too
    let o = d.kbin(&["render", "--host", "10.213.0.11"]).ok();
    assert!(o.stdout().contains("/opt/etcd/cfg/etcd.yml"));
    assert!(!o.stdout().contains("PRIVATE KEY"), "secrets are never printed");
}

#[test]
fn containerd_gets_the_sandbox_image_registry_mirrors_and_overrides_of_the_cluster_file() {
    let d = Dir::with_cluster(SMALL);
    d.kbin(&["pki", "init"]).ok();
    let extra = format!(
        "{SMALL}\n[images.pause]\nref = \"registry.example/pause:9.9\"\nsha256 = \"{}\"\nurl = \"http://10.0.0.1/pause.tar\"\n\n\
         [registries.\"docker.io\"]\nmirrors = [\"https://mirror.example:5000\", \"https://second.example\"]\nca_file = \"pki/ca.crt\"\n\n\
         [registries.\"10.0.0.5:5000\"]\nmirrors = [\"http://10.0.0.5:5000\"]\nskip_verify = true\n\n\
         [containerd.config.plugins.\"io.containerd.cri.v1.runtime\"]\nrestrict_oom_score_adj = true\n",
        "ab".repeat(32)
    );
    std::fs::write(d.path().join("cluster.toml"), extra).unwrap();
    let out = d.path().join("o");
    render(&d, "m1", &out);
    let conf: toml::Table = toml::from_str(&read(&out, "/etc/containerd/config.toml")).unwrap();
    let images = &conf["plugins"]["io.containerd.cri.v1.images"];
    assert_eq!(images["pinned_images"]["sandbox"].as_str(), Some("registry.example/pause:9.9"));
    assert_eq!(images["registry"]["config_path"].as_str(), Some("/etc/containerd/certs.d"));
    let runtime = &conf["plugins"]["io.containerd.cri.v1.runtime"];
    assert_eq!(runtime["restrict_oom_score_adj"].as_bool(), Some(true), "the override is merged in");
    assert_eq!(runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"].as_bool(), Some(true), "kbin's settings stay");
    assert_eq!(conf["version"].as_integer(), Some(3));

    let hub: toml::Table = toml::from_str(&read(&out, "/etc/containerd/certs.d/docker.io/hosts.toml")).unwrap();
    assert_eq!(hub["server"].as_str(), Some("https://registry-1.docker.io"));
    let hosts = hub["host"].as_table().unwrap();
    assert_eq!(hosts.keys().collect::<Vec<_>>(), ["https://mirror.example:5000", "https://second.example"]);
    for h in hosts.values() {
        assert_eq!(h["ca"].as_str(), Some("/etc/containerd/certs.d/docker.io/ca.crt"));
        assert_eq!(h["capabilities"].as_array().unwrap().len(), 2);
        assert!(h.get("skip_verify").is_none(), "never unless asked");
    }
    assert_eq!(read(&out, "/etc/containerd/certs.d/docker.io/ca.crt"), std::fs::read_to_string(d.pki().join("ca.crt")).unwrap());
    let local: toml::Table = toml::from_str(&read(&out, "/etc/containerd/certs.d/10.0.0.5:5000/hosts.toml")).unwrap();
    assert_eq!(local["server"].as_str(), Some("https://10.0.0.5:5000"));
    assert_eq!(local["host"]["http://10.0.0.5:5000"]["skip_verify"].as_bool(), Some(true));
}
