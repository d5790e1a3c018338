//! Parse the cluster file and check it as a whole, collecting every problem before reporting.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use toml_edit::Document;

use super::checker::{Checker, expand_home};
use super::locate::{self, Seg};
use super::*;

fn k(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

pub use super::checker::is_dns_name;


fn ignored_path(p: &serde_ignored::Path<'_>, out: &mut Vec<Seg>) {
    use serde_ignored::Path as P;
    match p {
        P::Root => {}
        P::Seq { parent, index } => {
            ignored_path(parent, out);
            out.push(Seg::Index(*index));
        }
        P::Map { parent, key } => {
            ignored_path(parent, out);
            out.push(Seg::Key(key.clone()));
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => ignored_path(parent, out),
    }
}

pub(super) fn parse_and_validate(path: &Path, text: &str) -> Result<Cluster, ConfigError> {
    let doc = Document::parse(text.to_string()).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: e.span().map(|s| locate::line_of(text, s.start)),
        message: e.message().trim().to_string(),
    })?;
    let mut c = Checker { text, doc: &doc, out: Vec::new() };

    // Deserialize, collecting every unknown key instead of stopping at the first.
    let mut unknown: Vec<Vec<Seg>> = Vec::new();
    let de = toml::de::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: e.span().map(|s| locate::line_of(text, s.start)),
        message: e.message().trim().to_string(),
    })?;
    let raw: Result<RawFile, _> = serde_ignored::deserialize(de, |p| {
        let mut segs = Vec::new();
        ignored_path(&p, &mut segs);
        unknown.push(segs);
    });
    for segs in &unknown {
        c.error(segs, "unknown key".into(), Some("remove it or check its spelling against the cluster file reference in README.md"));
    }
    let raw = match raw {
        Ok(r) => r,
        Err(e) => {
            let line = e.span().map(|s| locate::line_of(text, s.start));
            let field = e.span().map(|s| locate::display(&locate::path_at(&doc, s))).unwrap_or_default();
            c.out.push(Diagnostic {
                severity: Severity::Error,
                field,
                line,
                message: e.message().trim().to_string(),
                hint: Some("check the value's type: strings need quotes, ports are numbers, roles a list".into()),
            });
            return Err(ConfigError::Invalid { path: path.to_path_buf(), diagnostics: c.out });
        }
    };

    let cluster = check(&mut c, path, raw);
    let (errors, warnings): (Vec<_>, Vec<_>) = c.out.into_iter().partition(|d| d.severity == Severity::Error);
    match cluster {
        Some(mut cl) if errors.is_empty() => {
            cl.warnings = warnings;
            Ok(cl)
        }
        _ => {
            let mut all = errors;
            all.extend(warnings);
            all.sort_by_key(|d| (d.line.unwrap_or(0), d.severity == Severity::Warning));
            Err(ConfigError::Invalid { path: path.to_path_buf(), diagnostics: all })
        }
    }
}

fn state_dir_for(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn check(c: &mut Checker<'_>, path: &Path, raw: RawFile) -> Option<Cluster> {
    let cl = &raw.cluster;
    if !is_dns_name(&cl.name) {
        c.error(&[k("cluster"), k("name")], format!("{:?} is not a valid cluster name", cl.name), Some("use lowercase letters, digits and '-', such as \"prod-1\""));
    }
    super::grammar::check(c, &raw);
    let svc = c.cidr(&[k("cluster"), k("service_cidr")], &cl.service_cidr);
    let pod = c.cidr(&[k("cluster"), k("pod_cidr")], &cl.pod_cidr);
    if let Some(svc) = svc {
        let (max_bits, host_bits) = (svc.max_prefix_len(), svc.max_prefix_len() - svc.prefix_len());
        if host_bits < 4 {
            c.error(&[k("cluster"), k("service_cidr")], format!("{svc} is too small: it leaves no room for Services"), Some("use at least a /28 (a /24 or larger is usual, such as 10.96.0.0/12)"));
        } else if host_bits > 20 {
            c.error(&[k("cluster"), k("service_cidr")], format!("{svc} is too large: kube-apiserver accepts at most 20 host bits"), Some(&format!("use a /{} or smaller network", max_bits - 20)));
        }
    }
    if let Some(pod) = pod {
        if pod.max_prefix_len() - pod.prefix_len() < 8 {
            c.error(&[k("cluster"), k("pod_cidr")], format!("{pod} is too small: each node gets a /24 of it"), Some("use a /16 such as 10.244.0.0/16"));
        }
    }
    if let (Some(s), Some(p)) = (svc, pod) {
        if s.contains(&p.network()) || p.contains(&s.network()) {
            c.error(&[k("cluster"), k("pod_cidr")], format!("pod CIDR {p} overlaps the service CIDR {s}"), Some("pick two disjoint networks, such as 10.96.0.0/12 and 10.244.0.0/16"));
        }
    }
    let dns = match &cl.cluster_dns {
        Some(s) => c.ip(&[k("cluster"), k("cluster_dns")], s),
        None => svc.and_then(|s| nth_addr(&s, 10)),
    };
    if let (Some(d), Some(s)) = (dns, svc) {
        if !s.contains(&d) {
            c.error(&[k("cluster"), k("cluster_dns")], format!("{d} is outside the service CIDR {s}"), Some(&match nth_addr(&s, 10) {
                Some(a) => format!("pick an address inside {s}, usually its tenth: {a}"),
                None => format!("pick an address inside {s}"),
            }));
        } else if Some(d) == nth_addr(&s, 1) || d == s.network() || d == s.broadcast() {
            c.error(&[k("cluster"), k("cluster_dns")], format!("{d} is reserved in the service CIDR (network, broadcast or the kubernetes Service's address)"), Some("use another address of the service CIDR, usually its tenth"));
        }
    }
    if !is_dns_name(&cl.cluster_domain) {
        c.error(&[k("cluster"), k("cluster_domain")], format!("{:?} is not a DNS domain", cl.cluster_domain), Some("the usual value is \"cluster.local\""));
    }
    let proxy_mode = super::ProxyMode::parse(&cl.proxy_mode);
    match proxy_mode {
        None => c.error(&[k("cluster"), k("proxy_mode")], format!("unknown kube-proxy mode {:?}", cl.proxy_mode), Some("use \"iptables\", \"nftables\" or \"ipvs\"")),
        Some(super::ProxyMode::Ipvs) => c.warn(
            &[k("cluster"), k("proxy_mode")],
            "kube-proxy's ipvs mode is deprecated upstream (Kubernetes 1.37 says it is off by default from 1.40)".into(),
            Some("move to \"nftables\" (GA, the successor upstream names) or \"iptables\""),
        ),
        Some(_) => {}
    }
    let network = super::NetworkPlugin::parse(&raw.network.plugin);
    if network.is_none() {
        c.error(&[k("network"), k("plugin")], format!("unknown pod network plugin {:?}", raw.network.plugin), Some("use \"flannel\" (kbin installs it) or \"none\" (you apply your own CNI)"));
    }

    // apiserver endpoint
    let api = &raw.apiserver;
    let vip = api.vip.as_deref().and_then(|v| c.ip(&[k("apiserver"), k("vip")], v));
    for (i, n) in api.lb_names.iter().enumerate() {
        if !is_dns_name(n) {
            c.error(&[k("apiserver"), k("lb_names"), Seg::Index(i)], format!("{n:?} is not a DNS name"), Some("write a lowercase host name such as \"k8s-api.example.com\""));
        }
    }
    for (i, n) in api.extra_sans.iter().enumerate() {
        if n.parse::<IpAddr>().is_err() && !is_dns_name(n) {
            c.error(&[k("apiserver"), k("extra_sans"), Seg::Index(i)], format!("{n:?} is neither an IP address nor a DNS name"), Some("each extra SAN is an address or a lowercase host name"));
        }
    }
    if let Some(v) = vip {
        for (net, field) in [(svc, "service_cidr"), (pod, "pod_cidr")] {
            if net.is_some_and(|n| n.contains(&v)) {
                c.error(&[k("apiserver"), k("vip")], format!("VIP {v} lies inside cluster.{field} {}", net.unwrap()), Some("the VIP must be a free address on the hosts' own network"));
            }
        }
    }

    // ssh defaults and bastion
    let ssh_default = SshTarget {
        user: raw.ssh.user.clone().unwrap_or_else(|| "root".into()),
        port: raw.ssh.port.unwrap_or(22),
        key: raw.ssh.key.as_deref().map(expand_home),
    };
    let bastion = raw.ssh.bastion.as_ref().map(|b| {
        if b.address.parse::<IpAddr>().is_err() && !is_dns_name(&b.address) {
            c.error(&[k("ssh"), k("bastion"), k("address")], format!("{:?} is neither an IP address nor a DNS name", b.address), Some("write the bastion's public address or host name"));
        }
        Bastion {
            address: b.address.clone(),
            ssh: SshTarget {
                user: b.user.clone().unwrap_or_else(|| ssh_default.user.clone()),
                port: b.port.unwrap_or(22),
                key: b.key.as_deref().map(expand_home).or_else(|| ssh_default.key.clone()),
            },
        }
    });

    let d = SshSettings::default();
    let ssh_settings = SshSettings {
        default: ssh_default.clone(),
        concurrency: raw.ssh.concurrency.unwrap_or(d.concurrency),
        connect_timeout_secs: raw.ssh.connect_timeout_secs.unwrap_or(d.connect_timeout_secs),
        command_timeout_secs: raw.ssh.command_timeout_secs.unwrap_or(d.command_timeout_secs),
    };

    // pki
    let algo = KeyAlgorithm::parse(&raw.pki.key_algorithm);
    if algo.is_none() {
        c.error(
            &[k("pki"), k("key_algorithm")],
            format!("unknown key algorithm {:?}", raw.pki.key_algorithm),
            Some("use one of ecdsa-p256 (default), rsa-2048, rsa-3072, rsa-4096"),
        );
    }
    if raw.pki.renew_before_days > 0 && raw.pki.renew_before_days >= raw.pki.leaf_validity_days {
        c.error(&[k("pki"), k("renew_before_days")], format!("{} days is not less than leaf_validity_days ({})", raw.pki.renew_before_days, raw.pki.leaf_validity_days), Some("every deploy would re-issue every certificate; keep it well below leaf_validity_days (default 30), or 0 to never renew on a deploy"));
    }
    if raw.pki.leaf_validity_days > 0 && raw.pki.leaf_validity_days > raw.pki.ca_validity_days {
        c.error(&[k("pki"), k("leaf_validity_days")], format!("{} days is longer than the CA's {} days", raw.pki.leaf_validity_days, raw.pki.ca_validity_days), Some("a certificate cannot outlive its CA; shorten leaf_validity_days"));
    }

    // hosts
    let mut hosts = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut by_addr: HashMap<IpAddr, usize> = HashMap::new();
    let mut lb_count = 0u8;
    if raw.hosts.is_empty() {
        c.error(&[k("hosts")], "no hosts".into(), Some("add [[hosts]] tables with name, address and roles"));
    }
    for (i, h) in raw.hosts.iter().enumerate() {
        let at = |f: &str| vec![k("hosts"), Seg::Index(i), k(f)];
        if !is_dns_name(&h.name) {
            c.error(&at("name"), format!("{:?} is not a valid host name", h.name), Some("Kubernetes node names are lowercase letters, digits, '-' and '.'"));
        }
        if let Some(prev) = by_name.insert(&h.name, i) {
            c.error(&at("name"), format!("duplicate host name {:?} (also hosts[{prev}])", h.name), Some("every host needs its own name"));
        }
        let addr = c.ip(&at("address"), &h.address);
        if let Some(a) = addr {
            if let Some(prev) = by_addr.insert(a, i) {
                c.error(&at("address"), format!("duplicate address {a} (also hosts[{prev}])"), Some("every host needs its own address; give a host several roles instead of listing it twice"));
            }
            if Some(a) == vip {
                c.error(&at("address"), format!("{a} is the apiserver VIP"), Some("the VIP must be an address no host owns; keepalived moves it between the LB hosts"));
            }
            for (net, field) in [(svc, "service_cidr"), (pod, "pod_cidr")] {
                if let Some(n) = net.filter(|n| n.contains(&a)) {
                    c.error(&at("address"), format!("{a} lies inside cluster.{field} {n}: host and cluster networks overlap"), Some(&format!("change cluster.{field} to a network the hosts do not use")));
                }
            }
        }
        let mut roles = Vec::new();
        if h.roles.is_empty() {
            c.error(&at("roles"), "no roles".into(), Some("give each host one or more of etcd, master, node, lb"));
        }
        for (j, r) in h.roles.iter().enumerate() {
            match Role::parse(r) {
                Some(role) if roles.contains(&role) => c.error(&[k("hosts"), Seg::Index(i), k("roles"), Seg::Index(j)], format!("role {r:?} listed twice"), Some("list each role once")),
                Some(role) => roles.push(role),
                None => c.error(&[k("hosts"), Seg::Index(i), k("roles"), Seg::Index(j)], format!("unknown role {r:?}"), Some("roles are etcd, master, node and lb")),
            }
        }
        roles.sort();
        let lb_priority = if roles.contains(&Role::Lb) {
            // 100, 90, ... 10, then 1 (0 is not a keepalived priority)
            let p = h.lb_priority.unwrap_or(100u8.saturating_sub(lb_count.saturating_mul(10)).max(1));
            lb_count += 1;
            p
        } else {
            h.lb_priority.unwrap_or(0)
        };
        if roles.contains(&Role::Lb) && roles.contains(&Role::Master) {
            c.error(&at("roles"), format!("{} has both the lb and master roles: nginx and kube-apiserver would both listen on port {}", h.name, api.port), Some("put the LB pair on hosts without the master role"));
        }
        if let Some(a) = addr {
            hosts.push(Host {
                name: h.name.clone(),
                address: a,
                roles,
                ssh: SshTarget {
                    user: h.ssh_user.clone().unwrap_or_else(|| ssh_default.user.clone()),
                    port: h.ssh_port.unwrap_or(ssh_default.port),
                    key: h.ssh_key.as_deref().map(expand_home).or_else(|| ssh_default.key.clone()),
                },
                lb_interface: h.lb_interface.clone().unwrap_or_else(|| raw.lb.interface.clone()),
                lb_priority,
                labels: h.labels.clone(),
            });
        }
    }
    let count = |r: Role| raw.hosts.iter().filter(|h| h.roles.iter().any(|x| x == r.as_str())).count();
    if !raw.hosts.is_empty() {
        if count(Role::Etcd) == 0 {
            c.error(&[k("hosts")], "no host has the etcd role".into(), Some("add \"etcd\" to the roles of one or three hosts"));
        } else if count(Role::Etcd) % 2 == 0 {
            c.warn(&[k("hosts")], format!("{} etcd members: an even number tolerates no more failures than one fewer", count(Role::Etcd)), Some("use an odd number of etcd members (1, 3 or 5)"));
        }
        if count(Role::Master) == 0 {
            c.error(&[k("hosts")], "no host has the master role".into(), Some("add \"master\" to the roles of at least one host"));
        }
        if count(Role::Lb) > 0 && vip.is_none() && api.vip.is_none() {
            c.error(&[k("apiserver"), k("vip")], "hosts have the lb role but no VIP is set".into(), Some("set apiserver.vip to a free address on the hosts' network"));
        }
        if vip.is_some() && count(Role::Lb) == 0 {
            c.warn(&[k("apiserver"), k("vip")], "a VIP is set but no host has the lb role: kbin will not manage the VIP".into(), Some("add the lb role to two hosts, or make sure something else holds the VIP"));
        }
        if let Some(e) = &api.endpoint {
            let ip = e.parse::<IpAddr>().ok();
            let known = ip.is_some_and(|ip| vip == Some(ip) || hosts.iter().any(|h| h.has(Role::Master) && h.address == ip))
                || api.lb_names.iter().any(|n| n == e)
                || api.extra_sans.iter().any(|n| n == e);
            if ip.is_none() && !is_dns_name(e) {
                c.error(&[k("apiserver"), k("endpoint")], format!("{e:?} is neither an IP address nor a DNS name"), Some("write the address or name only, without scheme or port (the port is apiserver.port)"));
            } else if !known {
                c.error(&[k("apiserver"), k("endpoint")], format!("{e} is not in the apiserver certificates: it is not the VIP, a master's address, one of lb_names or of extra_sans"), Some("use the VIP, an LB name or a master's address, or add it to apiserver.extra_sans"));
            }
        }
        let mut prios: BTreeMap<u8, &str> = BTreeMap::new();
        for h in hosts.iter().filter(|h| h.has(Role::Lb)) {
            if let Some(other) = prios.insert(h.lb_priority, &h.name) {
                let i = raw.hosts.iter().position(|r| r.name == h.name).unwrap_or(0);
                c.warn(&[k("hosts"), Seg::Index(i), k("lb_priority")], format!("LB hosts {other} and {} share priority {}", h.name, h.lb_priority), Some("give each LB host its own lb_priority so the VIP has one clear holder"));
            }
        }
    }

    let artifacts = super::artifacts::check(c, &raw.artifacts, &state_dir_for(path));
    let workloads = super::workloads::check(c, &raw.images, &raw.addons, &raw.registries, &state_dir_for(path));

    let (Some(svc), Some(pod), Some(dns), Some(algo), Some(artifacts), Some(proxy_mode), Some(network)) = (svc, pod, dns, algo, artifacts, proxy_mode, network) else { return None };
    let file = path.to_path_buf();
    let state_dir = state_dir_for(path);
    Some(Cluster {
        file,
        state_dir,
        name: cl.name.clone(),
        kubernetes_version: cl.kubernetes_version.clone(),
        etcd_version: cl.etcd_version.clone(),
        flannel_version: cl.flannel_version.clone(),
        service_cidr: svc,
        pod_cidr: pod,
        cluster_dns: dns,
        cluster_domain: cl.cluster_domain.clone(),
        proxy_mode,
        network,
        token_auth_file: cl.token_auth_file,
        templates_dir: cl.templates_dir.as_ref().map(|d| state_dir_for(path).join(d)),
        apiserver: Apiserver { vip, endpoint: api.endpoint.clone(), lb_names: api.lb_names.clone(), port: api.port, extra_sans: api.extra_sans.clone() },
        bastion,
        ssh: ssh_settings,
        pki: Pki { key_algorithm: algo, ca_validity_days: raw.pki.ca_validity_days, leaf_validity_days: raw.pki.leaf_validity_days, renew_before_days: raw.pki.renew_before_days },
        layout: raw.layout,
        lb: raw.lb,
        hosts,
        artifacts,
        kubelet: raw.kubelet,
        kube_proxy: raw.kube_proxy,
        containerd: raw.containerd,
        workloads,
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[cluster]
name = "t"
service_cidr = "10.96.0.0/12"
pod_cidr = "10.244.0.0/16"

[apiserver]
vip = "192.168.0.88"

[[hosts]]
name = "m1"
address = "192.168.0.11"
roles = ["master", "etcd", "node"]

[[hosts]]
name = "lb1"
address = "192.168.0.15"
roles = ["lb"]
"#;

    fn diags(text: &str) -> Vec<Diagnostic> {
        match parse_and_validate(Path::new("cluster.toml"), text) {
            Ok(c) => c.warnings,
            Err(ConfigError::Invalid { diagnostics, .. }) => diagnostics,
            Err(e) => panic!("unexpected {e}"),
        }
    }

    /// The one error for `field`, asserting it exists.
    fn error_for(text: &str, field: &str) -> Diagnostic {
        let d = diags(text);
        d.iter()
            .find(|d| d.field == field && d.severity == Severity::Error)
            .unwrap_or_else(|| panic!("no error for {field} in {d:#?}"))
            .clone()
    }

    #[test]
    fn good_file_has_defaults() {
        let c = parse_and_validate(Path::new("x/cluster.toml"), GOOD).unwrap();
        assert_eq!(c.cluster_dns.to_string(), "10.96.0.10");
        assert_eq!(c.service_ip().to_string(), "10.96.0.1");
        assert_eq!(c.layout.k8s_cfg, "/opt/kubernetes/cfg");
        assert_eq!(c.layout.etcd_ssl, "/opt/etcd/ssl");
        assert_eq!(c.state_dir, PathBuf::from("x"));
        assert_eq!(c.endpoint_url(), "https://192.168.0.88:6443");
        assert_eq!(c.hosts[0].ssh.user, "root");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn unknown_keys_are_all_reported_with_lines() {
        let text = GOOD.replace("[apiserver]", "colour = 1\n[apiserver]\nflavour = 2").replace("roles = [\"lb\"]", "roles = [\"lb\"]\nsshport = 2");
        let d = diags(&text);
        let unknown: Vec<_> = d.iter().filter(|d| d.message == "unknown key").map(|d| (d.field.as_str(), d.line)).collect();
        assert_eq!(unknown, [("cluster.colour", Some(7)), ("apiserver.flavour", Some(9)), ("hosts[1].sshport", Some(21))]);
    }

    #[test]
    fn malformed_addresses_and_cidrs() {
        assert!(error_for(&GOOD.replace("192.168.0.11", "192.168.0.300"), "hosts[0].address").message.contains("not an IP address"));
        assert_eq!(error_for(&GOOD.replace("192.168.0.11", "192.168.0.300"), "hosts[0].address").line, Some(12));
        assert!(error_for(&GOOD.replace("10.96.0.0/12", "10.96.0.0/40"), "cluster.service_cidr").message.contains("not a CIDR"));
        let d = error_for(&GOOD.replace("10.244.0.0/16", "10.244.1.0/16"), "cluster.pod_cidr");
        assert_eq!(d.hint.as_deref(), Some("write the network address: 10.244.0.0/16"));
        assert!(error_for(&GOOD.replace("\"192.168.0.88\"", "\"vip\""), "apiserver.vip").message.contains("not an IP"));
    }

    #[test]
    fn overlapping_networks() {
        let d = error_for(&GOOD.replace("10.244.0.0/16", "10.100.0.0/16"), "cluster.pod_cidr");
        assert!(d.message.contains("overlaps the service CIDR"), "{d:?}");
        let d = error_for(&GOOD.replace("10.244.0.0/16", "192.168.0.0/16"), "hosts[0].address");
        assert!(d.message.contains("inside cluster.pod_cidr"), "{d:?}");
        let d = error_for(&GOOD.replace("10.96.0.0/12", "192.168.0.0/20"), "hosts[1].address");
        assert!(d.message.contains("inside cluster.service_cidr"), "{d:?}");
    }

    #[test]
    fn vip_equal_to_host_address() {
        let d = error_for(&GOOD.replace("192.168.0.15", "192.168.0.88"), "hosts[1].address");
        assert!(d.message.contains("is the apiserver VIP"));
    }

    #[test]
    fn duplicate_names_and_addresses() {
        let d = error_for(&GOOD.replace("\"lb1\"", "\"m1\""), "hosts[1].name");
        assert!(d.message.contains("duplicate host name"));
        let d = error_for(&GOOD.replace("192.168.0.15", "192.168.0.11"), "hosts[1].address");
        assert!(d.message.contains("duplicate address"));
    }

    #[test]
    fn roles_required() {
        let no_etcd = GOOD.replace("[\"master\", \"etcd\", \"node\"]", "[\"master\", \"node\"]");
        assert!(error_for(&no_etcd, "hosts").message.contains("etcd role"));
        let no_master = GOOD.replace("[\"master\", \"etcd\", \"node\"]", "[\"etcd\", \"node\"]");
        assert!(error_for(&no_master, "hosts").message.contains("master role"));
        assert!(error_for(&GOOD.replace("\"node\"]", "\"nod\"]"), "hosts[0].roles[2]").message.contains("unknown role"));
    }

    #[test]
    fn mirror_for_a_component_taken_out_of_a_tarball_warns_without_the_tarballs_mirror() {
        let text = format!("{GOOD}\n[artifacts.mirrors]\nkube-apiserver = \"http://10.0.0.1/kube-apiserver\"\n");
        let c = parse_and_validate(Path::new("cluster.toml"), &text).expect("a warning does not fail");
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert_eq!(c.warnings[0].field, "artifacts.mirrors.kube-apiserver");
        assert!(c.warnings[0].message.contains("comes out of the kubernetes-server tarball"), "{:?}", c.warnings[0]);
        assert!(c.warnings[0].hint.as_deref().unwrap_or_default().contains("artifacts.mirrors.kubernetes-server"));
        let both = format!("{text}kubernetes-server = \"http://10.0.0.1/kubernetes-server\"\n");
        assert!(parse_and_validate(Path::new("cluster.toml"), &both).unwrap().warnings.is_empty());
    }

    #[test]
    fn even_etcd_members_is_a_warning() {
        let text = GOOD.replace("roles = [\"lb\"]", "roles = [\"lb\", \"etcd\"]");
        let c = parse_and_validate(Path::new("cluster.toml"), &text).expect("a warning does not fail");
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].message.contains("2 etcd members"));
    }

    #[test]
    fn service_cidr_size_and_dns_ip() {
        assert!(error_for(&GOOD.replace("10.96.0.0/12", "10.96.0.0/29"), "cluster.service_cidr").message.contains("too small"));
        assert!(error_for(&GOOD.replace("10.96.0.0/12", "10.0.0.0/8"), "cluster.service_cidr").message.contains("too large"));
        let text = GOOD.replace("pod_cidr = \"10.244.0.0/16\"", "pod_cidr = \"10.244.0.0/16\"\ncluster_dns = \"10.200.0.10\"");
        let d = error_for(&text, "cluster.cluster_dns");
        assert!(d.message.contains("outside the service CIDR"), "{d:?}");
        let text = GOOD.replace("pod_cidr = \"10.244.0.0/16\"", "pod_cidr = \"10.244.0.0/16\"\ncluster_dns = \"10.96.0.1\"");
        assert!(error_for(&text, "cluster.cluster_dns").message.contains("reserved"));
    }

    #[test]
    fn unknown_key_algorithm() {
        let text = GOOD.replace("[apiserver]", "[pki]\nkey_algorithm = \"dsa-1024\"\n[apiserver]");
        let d = error_for(&text, "pki.key_algorithm");
        assert!(d.hint.unwrap().contains("ecdsa-p256"));
    }

    #[test]
    fn every_problem_at_once() {
        let text = GOOD
            .replace("192.168.0.11", "192.168.0.300")
            .replace("10.244.0.0/16", "10.96.0.0/16")
            .replace("[apiserver]", "[pki]\nkey_algorithm = \"x\"\n[apiserver]");
        let d = diags(&text);
        for f in ["hosts[0].address", "cluster.pod_cidr", "pki.key_algorithm"] {
            assert!(d.iter().any(|d| d.field == f), "{f} missing from {d:#?}");
        }
    }

    #[test]
    fn endpoint_must_be_a_name_the_apiserver_certs_carry() {
        let with = |e: &str| GOOD.replace("vip = \"192.168.0.88\"", &format!("vip = \"192.168.0.88\"\nendpoint = \"{e}\""));
        let c = parse_and_validate(Path::new("cluster.toml"), &with("192.168.0.11")).unwrap();
        assert_eq!(c.endpoint_url(), "https://192.168.0.11:6443", "the explicit endpoint wins over the VIP");
        assert!(error_for(&with("192.168.0.99"), "apiserver.endpoint").message.contains("not in the apiserver certificates"));
        assert!(error_for(&with("https://x:6443"), "apiserver.endpoint").message.contains("neither an IP address nor a DNS name"));
        assert_eq!(parse_and_validate(Path::new("cluster.toml"), GOOD).unwrap().endpoint_url(), "https://192.168.0.88:6443");
    }

    #[test]
    fn type_errors_and_syntax_errors_have_lines() {
        let d = diags(&GOOD.replace("vip = \"192.168.0.88\"", "vip = \"192.168.0.88\"\nport = \"6443\""));
        assert_eq!(d[0].line, Some(9), "{d:?}");
        match parse_and_validate(Path::new("c.toml"), "[cluster\nname = 1") {
            Err(ConfigError::Syntax { line, .. }) => assert_eq!(line, Some(1)),
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod regression {
    use super::*;

    /// A file without an `[apiserver]` table got port 0 from `Default` instead of 6443.
    #[test]
    fn absent_apiserver_table_means_port_6443() {
        let text = "[cluster]\nname = \"a\"\n[[hosts]]\nname = \"m\"\naddress = \"10.1.2.3\"\nroles = [\"master\", \"etcd\"]\n";
        let c = parse_and_validate(Path::new("cluster.toml"), text).unwrap();
        assert_eq!(c.apiserver.port, 6443);
        assert_eq!(c.endpoint_url(), "https://10.1.2.3:6443");
    }
}
