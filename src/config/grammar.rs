//! The grammar of every place a cluster-file value lands, and the range of every number.
//!
//! A string from the cluster file ends up in systemd units (`ExecStart=` arguments, where
//! whitespace splits words and `%`, `$`, `\` and quotes mean something), YAML and JSON files,
//! keepalived and nginx configurations (whitespace-separated tokens, `"`, `#`, `!` and braces),
//! kubelet flags (`--node-labels=k=v,k=v`) and remote paths. Instead of escaping for each of those
//! contexts, every value is held to a grammar that is plain text in all of them: a value either
//! matches it or the file is refused (exit 3) with the line and the field. Numbers are bounded to
//! what they can mean (ports, timeouts a clock can add, validity periods a certificate can hold).

use std::net::IpAddr;

use super::locate::Seg;
use super::checker::Checker;
use super::{RawFile, RawHost, Role};

fn k(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

/// The longest validity kbin issues: 100 years (and never past 9999-12-31, see `pki::issue`).
pub const MAX_VALIDITY_DAYS: u32 = 36_500;
/// Most hosts worked on at once (each is a thread and an SSH connection).
pub const MAX_CONCURRENCY: usize = 512;
/// Longest connect timeout: an hour.
pub const MAX_CONNECT_TIMEOUT_SECS: u64 = 3_600;
/// Longest command timeout: a day.
pub const MAX_COMMAND_TIMEOUT_SECS: u64 = 86_400;
/// The ports kbin's components listen on, by role: (role, port, what listens, the unit kbin
/// installs for it). The apiserver, and the LB's nginx in front of it, listen on `apiserver.port`.
pub const PORTS: &[(Role, u16, &str, &str)] = &[
    (Role::Etcd, 2379, "etcd client", "etcd"),
    (Role::Etcd, 2380, "etcd peer", "etcd"),
    (Role::Node, 10248, "kubelet healthz", "kubelet"),
    (Role::Node, 10249, "kube-proxy metrics", "kube-proxy"),
    (Role::Node, 10250, "kubelet", "kubelet"),
    (Role::Node, 10256, "kube-proxy healthz", "kube-proxy"),
    (Role::Master, 10257, "kube-controller-manager", "kube-controller-manager"),
    (Role::Master, 10259, "kube-scheduler", "kube-scheduler"),
];

/// The ports `role` needs free on a host: (port, what listens, its unit).
pub fn role_ports(apiserver_port: u16, role: Role) -> Vec<(u16, &'static str, &'static str)> {
    let api = match role {
        Role::Master => Some((apiserver_port, "kube-apiserver", "kube-apiserver")),
        Role::Lb => Some((apiserver_port, "load balancer (nginx)", "nginx")),
        _ => None,
    };
    api.into_iter().chain(PORTS.iter().filter(|p| p.0 == role).map(|p| (p.1, p.2, p.3))).collect()
}

/// Why `p` is not a remote directory kbin can write into every file format as plain text:
/// absolute, `[A-Za-z0-9._+-]` path components, no `.`, `..` or empty component.
pub fn remote_dir_problem(p: &str) -> Option<String> {
    if !p.starts_with('/') {
        return Some("is not an absolute path".into());
    }
    if p.len() > 1024 {
        return Some("is longer than 1024 bytes".into());
    }
    if let Some(c) = p.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+'))) {
        return Some(format!("contains {c:?}: remote paths land unquoted in systemd units and YAML, so they may hold only letters, digits and . _ - + /"));
    }
    let parts: Vec<&str> = p[1..].split('/').collect();
    if p == "/" || parts.iter().any(|s| s.is_empty()) {
        return Some("has an empty component (a trailing or double '/')".into());
    }
    if parts.iter().any(|s| *s == "." || *s == "..") {
        return Some("has a '.' or '..' component".into());
    }
    None
}

/// Why `name` is not a Linux network interface name keepalived can take as one token.
pub fn interface_problem(name: &str) -> Option<String> {
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Some(format!("contains {c:?}: interface names are letters, digits, '.', '_' and '-'"));
    }
    if name.is_empty() || name.len() > 15 {
        return Some("must be 1 to 15 characters (the kernel's IFNAMSIZ)".into());
    }
    if name == "." || name == ".." {
        return Some("is not an interface name".into());
    }
    None
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Label keys under kubernetes.io / k8s.io a kubelet may set on its own Node
/// (the NodeRestriction rules kubelet enforces on `--node-labels`).
fn kubelet_may_set(prefix: &str, key: &str) -> bool {
    const KEYS: &[&str] = &[
        "kubernetes.io/hostname",
        "kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.kubernetes.io/zone",
        "failure-domain.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "node.kubernetes.io/instance-type",
    ];
    let ns = |p: &str, d: &str| p == d || p.ends_with(&format!(".{d}"));
    KEYS.contains(&key)
        || ns(prefix, "kubelet.kubernetes.io")
        || ns(prefix, "node.kubernetes.io")
}

/// Why `label` is not a `key=value` node label kubelet accepts in `--node-labels`.
pub fn label_problem(label: &str) -> Option<String> {
    let Some((key, value)) = label.split_once('=') else {
        return Some("is not key=value".into());
    };
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !super::checker::is_dns_name(p)
    {
        return Some(format!("key prefix {p:?} is not a DNS subdomain"));
    }
    if !is_label_name(name) {
        return Some(format!("key name {name:?} must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"));
    }
    if !value.is_empty() && !is_label_name(value) {
        return Some(format!("value {value:?} must be empty or 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"));
    }
    if let Some(p) = prefix
        && ["kubernetes.io", "k8s.io"].iter().any(|d| p == *d || p.ends_with(&format!(".{d}")))
        && !kubelet_may_set(p, key)
    {
        return Some(format!("kubelet may not set labels under {p}/ on its own Node (NodeRestriction); use another prefix or node.kubernetes.io/"));
    }
    None
}

/// A release version (`v3.5.1`, `v1.8.0-flannel1`): the check lives with the artifacts, which
/// use versions in URLs and cache paths; the cluster file holds them to the same grammar.
pub use crate::artifacts::version_problem;

/// Why `a` cannot be a host's (or the VIP's) address.
pub fn address_problem(a: IpAddr) -> Option<&'static str> {
    if a.is_unspecified() {
        return Some("is the unspecified address (it means \"any\", no host has it)");
    }
    if a.is_multicast() {
        return Some("is a multicast address (a group, not a host)");
    }
    if let IpAddr::V4(v4) = a
        && v4.is_broadcast()
    {
        return Some("is the broadcast address (every host on the link, not one)");
    }
    None
}

/// Why a local path from the cluster file (a key file, a directory) cannot be used.
fn local_path_problem(p: &str) -> Option<&'static str> {
    if p.trim().is_empty() {
        return Some("is empty");
    }
    if p.chars().any(|c| c.is_control()) {
        return Some("contains a control character (a newline, a tab, NUL)");
    }
    None
}

/// Why `u` cannot be a mirror URL as written (whitespace and control characters would be dropped
/// or encoded silently by the URL parser).
fn url_text_problem(u: &str) -> Option<&'static str> {
    u.chars().any(|c| c.is_whitespace() || c.is_control()).then_some("contains whitespace or a control character")
}

/// Why `u` is not a POSIX user name (what sshd and sudo accept portably).
fn user_problem(u: &str) -> Option<&'static str> {
    let b = u.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().enumerate().all(|(i, c)| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.') || (*c == b'$' && i == b.len() - 1));
    (!ok).then_some("is not a user name (letters, digits, '_', '-', '.', at most 32, not starting with a digit or '-')")
}

/// Check every string against the grammar of where it lands and every number against its range.
pub(super) fn check(c: &mut Checker<'_>, raw: &RawFile) {
    for (f, v) in [("kubernetes_version", &raw.cluster.kubernetes_version), ("etcd_version", &raw.cluster.etcd_version), ("flannel_version", &raw.cluster.flannel_version)] {
        if let Some(p) = version_problem(v) {
            c.error(&[k("cluster"), k(f)], format!("{v:?} is not a release version: it {p}"), Some("write a release tag such as \"v1.34.2\""));
        }
    }
    for (name, v) in &raw.artifacts.versions {
        if let Some(p) = version_problem(v) {
            c.error(&[k("artifacts"), k("versions"), k(name)], format!("{v:?} is not a release version: it {p}"), Some("write a release tag such as \"v2.1.5\""));
        }
    }
    let l = &raw.layout;
    for (f, v) in [
        ("etcd_bin", &l.etcd_bin),
        ("etcd_cfg", &l.etcd_cfg),
        ("etcd_ssl", &l.etcd_ssl),
        ("etcd_data", &l.etcd_data),
        ("k8s_bin", &l.k8s_bin),
        ("k8s_releases", &l.k8s_releases),
        ("k8s_cfg", &l.k8s_cfg),
        ("k8s_ssl", &l.k8s_ssl),
        ("k8s_logs", &l.k8s_logs),
        ("units", &l.units),
    ] {
        if let Some(p) = remote_dir_problem(v) {
            c.error(&[k("layout"), k(f)], format!("{v:?} {p}"), Some("remote directories are absolute paths such as /opt/kubernetes/bin"));
        }
    }
    if let Some(p) = interface_problem(&raw.lb.interface) {
        c.error(&[k("lb"), k("interface")], format!("{:?} {p}", raw.lb.interface), Some("write the interface name as `ip link` shows it, such as \"eth0\""));
    }
    if raw.lb.virtual_router_id == 0 {
        c.error(&[k("lb"), k("virtual_router_id")], "0 is not a VRRP router id".into(), Some("use 1-255, unique on the network"));
    }
    check_numbers(c, raw);
    check_ssh(c, raw);
    for (i, h) in raw.hosts.iter().enumerate() {
        check_host(c, i, h);
    }
    if let Some(v) = raw.apiserver.vip.as_deref().and_then(|v| v.trim().parse::<IpAddr>().ok())
        && let Some(p) = address_problem(v)
    {
        c.error(&[k("apiserver"), k("vip")], format!("{v} {p}"), Some("the VIP is one free unicast address on the LB hosts' network"));
    }
    for (i, s) in raw.apiserver.extra_sans.iter().enumerate() {
        if let Ok(a) = s.parse::<IpAddr>()
            && let Some(p) = address_problem(a)
        {
            c.error(&[k("apiserver"), k("extra_sans"), Seg::Index(i)], format!("{a} {p}"), Some("list addresses clients really use to reach the apiserver"));
        }
    }
    let a = &raw.artifacts;
    for (path, u) in a.mirror.iter().map(|m| (vec![k("artifacts"), k("mirror")], m)).chain(a.mirrors.iter().map(|(n, m)| (vec![k("artifacts"), k("mirrors"), k(n)], m))) {
        // (one that is no http(s) URL at all is reported as such by the [artifacts] checks)
        if let Some(p) = url_text_problem(u).filter(|_| crate::artifacts::ops::is_mirror_url(u)) {
            c.error(&path, format!("{:?} {p}", crate::output::redact_url(u)), Some("write the URL without spaces; percent-encode what needs it"));
        }
    }
    for (path, v) in [
        (vec![k("artifacts"), k("cache_dir")], a.cache_dir.as_deref()),
        (vec![k("cluster"), k("templates_dir")], raw.cluster.templates_dir.as_deref()),
        (vec![k("ssh"), k("key")], raw.ssh.key.as_deref()),
    ] {
        if let Some(p) = v.and_then(local_path_problem) {
            c.error(&path, format!("path {p}"), Some("write a path on this machine, or remove the key for the default"));
        }
    }
}

fn check_numbers(c: &mut Checker<'_>, raw: &RawFile) {
    let pki = &raw.pki;
    for (f, v, usual) in [("ca_validity_days", pki.ca_validity_days, 3650), ("leaf_validity_days", pki.leaf_validity_days, 365)] {
        if v == 0 {
            c.error(&[k("pki"), k(f)], "must be at least 1 day".into(), Some(&format!("the usual value is {usual} days")));
        } else if v > MAX_VALIDITY_DAYS {
            c.error(&[k("pki"), k(f)], format!("{v} days is more than {MAX_VALIDITY_DAYS} (100 years)"), Some(&format!("the usual value is {usual} days; certificates cannot be valid past the year 9999")));
        }
    }
    let port = raw.apiserver.port;
    if port == 0 {
        c.error(&[k("apiserver"), k("port")], "port 0 is not a port".into(), Some("the usual apiserver port is 6443"));
    } else if let Some((_, _, what, _)) = PORTS.iter().find(|p| p.1 == port) {
        c.error(&[k("apiserver"), k("port")], format!("port {port} is the {what} port on the same hosts"), Some("the usual apiserver port is 6443"));
    }
    let ssh = &raw.ssh;
    if ssh.concurrency.is_some_and(|n| n == 0 || n > MAX_CONCURRENCY) {
        c.error(&[k("ssh"), k("concurrency")], format!("{} hosts at a time is not between 1 and {MAX_CONCURRENCY}", ssh.concurrency.unwrap_or(0)), Some("use 1 or more (default 10)"));
    }
    for (f, v, max, usual) in [
        ("connect_timeout_secs", ssh.connect_timeout_secs, MAX_CONNECT_TIMEOUT_SECS, 10),
        ("command_timeout_secs", ssh.command_timeout_secs, MAX_COMMAND_TIMEOUT_SECS, 300),
    ] {
        match v {
            Some(0) => c.error(&[k("ssh"), k(f)], "a timeout of 0 seconds leaves no time at all".into(), Some(&format!("use a number of seconds, such as {usual}"))),
            Some(n) if n > max => c.error(&[k("ssh"), k(f)], format!("{n} seconds is more than {max}"), Some(&format!("use a number of seconds up to {max}, such as {usual}"))),
            _ => {}
        }
    }
}

/// An SSH login's port, user and key file (`[ssh]`, its bastion, a host's own): `at` gives the
/// path of each of the three fields.
fn check_login(c: &mut Checker<'_>, at: &dyn Fn(&str) -> Vec<Seg>, port: Option<u16>, user: Option<&str>, key: Option<&str>, user_hint: &str) {
    if port == Some(0) {
        c.error(&at("port"), "port 0 is not a port".into(), Some("the usual SSH port is 22"));
    }
    if let Some(p) = user.and_then(user_problem) {
        c.error(&at("user"), format!("{:?} {p}", user.unwrap_or_default()), Some(user_hint));
    }
    if let Some(p) = key.and_then(local_path_problem) {
        c.error(&at("key"), format!("path {p}"), Some("write the path of the private key file on this machine"));
    }
}

fn check_ssh(c: &mut Checker<'_>, raw: &RawFile) {
    let ssh = &raw.ssh;
    // ssh.key is checked with the other local paths
    check_login(c, &|f| vec![k("ssh"), k(f)], ssh.port, ssh.user.as_deref(), None, "write the login name, such as \"root\" or \"ubuntu\"");
    if let Some(b) = &ssh.bastion {
        check_login(c, &|f| vec![k("ssh"), k("bastion"), k(f)], b.port, b.user.as_deref(), b.key.as_deref(), "write the login name on the bastion");
        if let Ok(a) = b.address.parse::<IpAddr>()
            && let Some(p) = address_problem(a)
        {
            c.error(&[k("ssh"), k("bastion"), k("address")], format!("{a} {p}"), Some("write the bastion's own address"));
        }
    }
}

fn check_host(c: &mut Checker<'_>, i: usize, h: &RawHost) {
    let at = |f: &str| vec![k("hosts"), Seg::Index(i), k(f)];
    if let Ok(a) = h.address.trim().parse::<IpAddr>()
        && let Some(p) = address_problem(a)
    {
        c.error(&at("address"), format!("{a} {p}"), Some("write the host's own unicast address, the one kbin reaches it at over SSH"));
    }
    check_login(c, &|f| at(&format!("ssh_{f}")), h.ssh_port, h.ssh_user.as_deref(), h.ssh_key.as_deref(), "write the login name, such as \"root\" or \"ubuntu\"");
    if let Some(iface) = &h.lb_interface
        && let Some(p) = interface_problem(iface)
    {
        c.error(&at("lb_interface"), format!("{iface:?} {p}"), Some("write the interface name as `ip link` shows it, such as \"eth0\""));
    }
    if let Some(p) = h.lb_priority.filter(|p| *p == 0 || *p == 255) {
        c.error(&at("lb_priority"), format!("{p} is not a keepalived priority"), Some("use 1-254 (255 is reserved for the address owner); the highest holds the VIP"));
    }
    let mut keys = std::collections::BTreeSet::new();
    for (j, l) in h.labels.iter().enumerate() {
        let path = [k("hosts"), Seg::Index(i), k("labels"), Seg::Index(j)];
        if let Some(p) = label_problem(l) {
            c.error(&path, format!("{l:?} {p}"), Some("write labels as \"key=value\", such as \"zone=a\" or \"example.com/rack=r1\""));
        } else if let Some((key, _)) = l.split_once('=')
            && !keys.insert(key)
        {
            c.error(&path, format!("label {key:?} is set twice"), Some("give each label key one value"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_dirs() {
        assert_eq!(remote_dir_problem("/opt/kubernetes/bin"), None);
        assert_eq!(remote_dir_problem("/opt/k8s-1.34_x+y/bin"), None);
        for bad in ["opt/bin", "/opt/k8s bin", "/opt/%n", "/opt/$HOME", "/opt/a\"b", "/opt/", "/opt//bin", "/opt/../etc", "/", "/opt/a\nb", "/opt/a;b", "/opt/a\\b"] {
            assert!(remote_dir_problem(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn labels() {
        for ok in ["zone=a", "example.com/rack=r1", "a=", "node.kubernetes.io/exclude-from-external-load-balancers=true", "topology.kubernetes.io/zone=z1"] {
            assert_eq!(label_problem(ok), None, "{ok}");
        }
        for bad in ["zone", "=a", "a=b,c=d", "a=b\nExecStartPre=/bin/true", "a b=c", "a=-b", "Example.com/x=y", "node-role.kubernetes.io/master=", "x=y=z", "a=b c"] {
            assert!(label_problem(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn interfaces() {
        assert_eq!(interface_problem("eth0"), None);
        assert_eq!(interface_problem("br-lan.10"), None);
        for bad in ["", "averyveryverylongname", "eth0\n notify_master", "eth\"0", "eth 0", "..", "eth0{", "a#b"] {
            assert!(interface_problem(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn versions() {
        for ok in ["v1.34.2", "v1.9.1-flannel1", "v2.0.0-rc.1+build.5"] {
            assert_eq!(version_problem(ok), None, "{ok}");
        }
        for bad in ["1.34.2", "v1.34", "v1.34.2-", "v1.34.2-a b", "v1.34.2-x\ny", "v1.34.2-../../x", "v1.34.2/x"] {
            assert!(version_problem(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn users() {
        for ok in ["root", "ubuntu", "_svc", "ops.admin", "deploy-1", "machine$"] {
            assert_eq!(user_problem(ok), None, "{ok}");
        }
        for bad in ["", "-oProxyCommand=x", "1abc", "a b", "a\nb", "a$b", &"x".repeat(33)] {
            assert!(user_problem(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn addresses() {
        for bad in ["0.0.0.0", "255.255.255.255", "224.0.0.18", "::", "ff02::1"] {
            assert!(address_problem(bad.parse().unwrap()).is_some(), "{bad}");
        }
        for ok in ["192.168.0.11", "127.0.0.1", "fd00::1"] {
            assert!(address_problem(ok.parse().unwrap()).is_none(), "{ok}");
        }
    }
}
