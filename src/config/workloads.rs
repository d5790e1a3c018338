//! What a cluster needs to run workloads: `[images.<key>]` (OCI image archives carried like
//! binaries, verified by digest), `[addons]` (cluster DNS, metrics-server) and
//! `[registries."<host>"]` (containerd registry mirrors).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::checker::{Checker, expand_home, is_dns_name};
use super::locate::Seg;
use crate::artifacts::Sha256;

/// The pod sandbox image containerd uses when the cluster file names none (Kubernetes 1.34's).
pub const DEFAULT_SANDBOX: &str = "registry.k8s.io/pause:3.10.1";
/// The CoreDNS image when `[images.coredns]` names none (Kubernetes 1.34's).
pub const DEFAULT_COREDNS: &str = "registry.k8s.io/coredns/coredns:v1.14.7";
/// The metrics-server image when `[images.metrics-server]` names none.
pub const DEFAULT_METRICS_SERVER: &str = "registry.k8s.io/metrics-server/metrics-server:v0.8.0";

/// `[images.<key>]` as written. The keys `pause`, `coredns` and `metrics-server` are the images
/// kbin itself uses; any other key is an extra image every node gets.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RawImage {
    /// The image reference the archive holds (`registry.k8s.io/pause:3.10.1`).
    #[serde(rename = "ref")]
    pub reference: String,
    /// SHA-256 of the archive file.
    pub sha256: String,
    /// Where to download the archive (http or https; checked against `sha256`).
    pub url: Option<String>,
    /// Or a local archive (relative to the cluster file).
    pub file: Option<String>,
}

/// `[addons]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RawAddons {
    /// CoreDNS at `cluster.cluster_dns` (default true).
    pub coredns: Option<bool>,
    /// metrics-server behind the aggregation layer, for `kubectl top` (default false).
    pub metrics_server: Option<bool>,
}

/// `[registries."<host>"]` as written: containerd's `hosts.toml` for that registry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RawRegistry {
    /// Mirror endpoints, tried in order before the registry itself.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// A PEM CA file the mirrors' certificates are checked against (relative to the cluster file).
    pub ca_file: Option<String>,
    /// Accept any certificate from the mirrors. Only when asked; never the default.
    #[serde(default)]
    pub skip_verify: bool,
}

pub use crate::artifacts::images::{Source as ImageSource, Spec as Image};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Addons {
    pub coredns: bool,
    pub metrics_server: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registry {
    /// The registry host as images name it (`docker.io`, `registry.k8s.io`, `10.0.0.5:5000`).
    pub host: String,
    pub mirrors: Vec<String>,
    pub ca_file: Option<std::path::PathBuf>,
    pub skip_verify: bool,
}

impl Registry {
    /// The registry's own endpoint (`server` in hosts.toml): Docker Hub's API lives elsewhere.
    pub fn server(&self) -> String {
        match self.host.as_str() {
            "docker.io" => "https://registry-1.docker.io".into(),
            h => format!("https://{h}"),
        }
    }
}

/// Images, add-ons and registries of a cluster, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workloads {
    pub images: BTreeMap<String, Image>,
    pub addons: Addons,
    pub registries: Vec<Registry>,
}

impl Workloads {
    fn image_ref(&self, key: &str, default: &str) -> String {
        self.images.get(key).map(|i| i.reference.clone()).unwrap_or_else(|| default.to_string())
    }
    /// The pod sandbox image containerd is told to use.
    pub fn sandbox_image(&self) -> String {
        self.image_ref("pause", DEFAULT_SANDBOX)
    }
    pub fn coredns_image(&self) -> String {
        self.image_ref("coredns", DEFAULT_COREDNS)
    }
    pub fn metrics_server_image(&self) -> String {
        self.image_ref("metrics-server", DEFAULT_METRICS_SERVER)
    }
}

impl Default for Workloads {
    fn default() -> Self {
        Workloads { images: BTreeMap::new(), addons: Addons { coredns: true, metrics_server: false }, registries: Vec::new() }
    }
}

fn k(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

/// Why `r` is not an image reference `[host[:port]/]path[:tag][@sha256:digest]` with a tag or a
/// digest (kbin never relies on `latest`).
pub fn reference_problem(r: &str) -> Option<&'static str> {
    if r.is_empty() || r.len() > 255 || r.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Some("is empty, too long or has spaces");
    }
    let (name, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    if let Some(d) = digest
        && Sha256::parse(d).filter(|_| d.starts_with("sha256:")).is_none()
    {
        return Some("has a digest that is not sha256:<64 hex digits>");
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    let (repo_last, tag) = match last.split_once(':') {
        Some((l, t)) => (l, Some(t)),
        None => (last, None),
    };
    if let Some(t) = tag
        && (t.is_empty() || t.len() > 128 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) || t.starts_with(['.', '-']))
    {
        return Some("has a tag with characters other than letters, digits, '_', '.' and '-'");
    }
    if tag.is_none() && digest.is_none() {
        return Some("has neither a tag nor a digest");
    }
    let path = &name[..name.len() - last.len() + repo_last.len()];
    let mut parts: Vec<&str> = path.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = host.split_once(':').unwrap_or((host, "1"));
        if !(is_dns_name(&h.to_ascii_lowercase()) || h.parse::<std::net::IpAddr>().is_ok()) || port.parse::<u16>().is_err() {
            return Some("has a registry host that is not host[:port]");
        }
    }
    let component = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')) && p.as_bytes()[0].is_ascii_alphanumeric();
    if parts.is_empty() || !parts.iter().all(component) {
        return Some("has a repository path other than lowercase letters, digits, '.', '_', '-' and '/'");
    }
    None
}

pub(super) fn check(c: &mut Checker<'_>, images: &BTreeMap<String, RawImage>, addons: &RawAddons, registries: &BTreeMap<String, RawRegistry>, state_dir: &Path) -> Workloads {
    let mut out = Workloads::default();
    for (key, raw) in images {
        let at = |f: &str| [k("images"), k(key), k(f)];
        if !is_dns_name(key) || key.contains('.') {
            c.error(&[k("images"), k(key)], format!("{key:?} is not a usable image key"), Some("use lowercase letters, digits and '-' (pause, coredns, metrics-server, or a name of yours)"));
        }
        if let Some(p) = reference_problem(&raw.reference) {
            c.error(&at("ref"), format!("{:?} {p}", raw.reference), Some("write the reference the archive holds, with its tag: registry.k8s.io/pause:3.10.1"));
        }
        let sha256 = Sha256::parse(&raw.sha256);
        if sha256.is_none() {
            c.error(&at("sha256"), format!("{:?} is not a SHA-256 digest", raw.sha256), Some("write the archive file's digest (sha256sum FILE): 64 hex digits"));
        }
        let source = match (&raw.url, &raw.file) {
            (Some(_), Some(_)) => {
                c.error(&at("file"), "both url and file are set".into(), Some("keep one: url to download the archive, file for an archive on this machine"));
                None
            }
            (Some(u), None) if !crate::artifacts::ops::is_mirror_url(u) => {
                c.error(&at("url"), format!("{:?} is not an http(s) URL", crate::output::redact_url(u)), Some("write where the archive is served, such as \"http://10.0.0.1:8080/images/pause.tar\""));
                None
            }
            (Some(u), None) => Some(ImageSource::Url(u.clone())),
            (None, Some(f)) if f.trim().is_empty() => {
                c.error(&at("file"), "empty path".into(), Some("name the archive file, relative to the cluster file"));
                None
            }
            (None, Some(f)) => Some(ImageSource::File(state_dir.join(expand_home(f)))),
            (None, None) => Some(ImageSource::Cache),
        };
        if let (Some(sha256), Some(source)) = (sha256, source) {
            out.images.insert(key.clone(), Image { key: key.clone(), reference: raw.reference.clone(), sha256, source });
        }
    }
    let refs: Vec<(&String, &String)> = images.iter().map(|(k, i)| (k, &i.reference)).collect();
    for (i, (key, r)) in refs.iter().enumerate() {
        if let Some((other, _)) = refs[..i].iter().find(|(_, o)| o == r) {
            c.error(&[k("images"), k(key), k("ref")], format!("{r:?} is also images.{other}.ref"), Some("give each archive its own image reference"));
        }
    }
    out.addons = Addons { coredns: addons.coredns.unwrap_or(true), metrics_server: addons.metrics_server.unwrap_or(false) };
    for (host, raw) in registries {
        let at = |f: &str| [k("registries"), k(host), k(f)];
        let (h, port) = host.split_once(':').unwrap_or((host, "443"));
        if !(is_dns_name(h) || h.parse::<std::net::IpAddr>().is_ok()) || port.parse::<u16>().is_err() {
            c.error(&[k("registries"), k(host)], format!("{host:?} is not a registry host"), Some("name the registry as image references do: docker.io, registry.k8s.io, 10.0.0.5:5000"));
        }
        if raw.mirrors.is_empty() {
            c.error(&at("mirrors"), "no mirror listed".into(), Some("list at least one endpoint, such as mirrors = [\"https://mirror.example:5000\"]"));
        }
        for (i, m) in raw.mirrors.iter().enumerate() {
            if !crate::artifacts::ops::is_mirror_url(m) {
                c.error(&[k("registries"), k(host), k("mirrors"), Seg::Index(i)], format!("{:?} is not an http(s) URL", crate::output::redact_url(m)), Some("write the mirror's endpoint with its scheme: \"https://mirror.example:5000\""));
            }
        }
        let ca_file = raw.ca_file.as_deref().map(|f| state_dir.join(expand_home(f)));
        if let Some(f) = &ca_file {
            match std::fs::read_to_string(f) {
                Ok(t) if t.contains("-----BEGIN CERTIFICATE-----") => {}
                Ok(_) => c.error(&at("ca_file"), format!("{} holds no PEM certificate", f.display()), Some("point ca_file at the CA certificate (PEM) that signed the mirror's certificate")),
                Err(e) => c.error(&at("ca_file"), format!("cannot read {}: {e}", f.display()), Some("the path is relative to the cluster file")),
            }
        }
        if raw.skip_verify {
            c.warn(&at("skip_verify"), format!("containerd will accept any certificate from the mirrors of {host}"), Some("prefer ca_file with the mirror's CA; keep skip_verify only for a test registry"));
        }
        out.registries.push(Registry { host: host.clone(), mirrors: raw.mirrors.clone(), ca_file, skip_verify: raw.skip_verify });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::reference_problem;

    #[test]
    fn image_references() {
        for good in ["registry.k8s.io/pause:3.10.1", "busybox:1.35.0", "docker.io/library/busybox:1.35.0", "10.0.0.5:5000/team/web:v1", "localhost/x:1", &format!("ghcr.io/a/b@sha256:{}", "a".repeat(64)), &format!("a/b:1@sha256:{}", "0".repeat(64))] {
            assert_eq!(reference_problem(good), None, "{good}");
        }
        for bad in ["", "busybox", "Busybox:1", "registry.k8s.io/pause", "a b:1", "x:", "x:-1", "reg..io/a:1", "a/b@sha256:12", "host:99999/a:1", "a//b:1"] {
            assert!(reference_problem(bad).is_some(), "{bad}");
        }
    }
}
