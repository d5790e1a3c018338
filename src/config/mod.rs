//! The cluster file (`cluster.toml`): its schema, parsing and validation.
//!
//! [`load`] reads a file and returns a validated [`Cluster`] or a [`ConfigError`] listing every
//! problem at once, each with its line and field. Nothing is ever written before this succeeds.

mod artifacts;
pub mod edit;
pub mod grammar;
mod checker;
mod locate;
pub mod release;
mod validate;
pub mod workloads;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use checker::{Diagnostic, Severity};

/// The default cluster file name, looked up in the current directory.
pub const DEFAULT_FILE: &str = "cluster.toml";

// ---------------------------------------------------------------------------------------------
// Raw schema: exactly what the TOML file says. Addresses and CIDRs stay strings here so that
// every malformed one can be reported (with its line) instead of stopping at the first.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RawFile {
    pub cluster: RawCluster,
    #[serde(default)]
    pub apiserver: RawApiserver,
    #[serde(default)]
    pub network: RawNetwork,
    #[serde(default)]
    pub ssh: RawSsh,
    #[serde(default)]
    pub pki: RawPki,
    #[serde(default)]
    pub layout: Layout,
    #[serde(default)]
    pub lb: RawLb,
    #[serde(default)]
    pub hosts: Vec<RawHost>,
    #[serde(default)]
    pub artifacts: RawArtifacts,
    /// Fields merged into the kubelet's KubeletConfiguration (`kubelet-config.yaml`).
    #[serde(default)]
    pub kubelet: ComponentConfig,
    /// Fields merged into kube-proxy's KubeProxyConfiguration (`kube-proxy-config.yaml`).
    #[serde(default)]
    pub kube_proxy: ComponentConfig,
    /// Tables merged into containerd's `config.toml` (config version 3).
    #[serde(default)]
    pub containerd: ComponentConfig,
    /// OCI image archives the nodes get, by key (`pause`, `coredns`, `metrics-server`, extras).
    #[serde(default)]
    pub images: std::collections::BTreeMap<String, workloads::RawImage>,
    #[serde(default)]
    pub addons: workloads::RawAddons,
    /// containerd registry mirrors, by registry host.
    #[serde(default)]
    pub registries: std::collections::BTreeMap<String, workloads::RawRegistry>,
}

/// `[kubelet]` / `[kube_proxy]` / `[containerd]`: `config` is a table of the component's own
/// configuration fields (as upstream spells them: camelCase for the kubelet and kube-proxy,
/// containerd's TOML tables), merged over what kbin renders: tables merge key by key, any other
/// value replaces kbin's. For settings a host needs that kbin cannot know (a node inside a
/// container: `conntrack = { maxPerCore = 0 }` for kube-proxy; containerd's
/// `restrict_oom_score_adj` where kbin runs without CAP_SYS_RESOURCE).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ComponentConfig {
    #[serde(default)]
    pub config: toml::Table,
}

/// Where release artifacts come from (see docs/artifacts.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RawArtifacts {
    /// Base URL of a mirror for every component (`<mirror>/<component>/<version>/<file>`).
    pub mirror: Option<String>,
    /// Per-component mirrors (`<url>/<version>/<file>`), e.g. `etcd = "http://10.0.0.1:8080/etcd"`.
    #[serde(default)]
    pub mirrors: std::collections::BTreeMap<String, String>,
    /// CPU architecture of the hosts: `amd64` (default) or `arm64`.
    pub arch: Option<String>,
    /// Override of the artifact cache directory.
    pub cache_dir: Option<String>,
    /// Versions of components the `[cluster]` table has no field for (containerd, runc, ...).
    #[serde(default)]
    pub versions: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RawCluster {
    pub name: String,
    #[serde(default = "defaults::kubernetes_version")]
    pub kubernetes_version: String,
    #[serde(default = "defaults::etcd_version")]
    pub etcd_version: String,
    #[serde(default = "defaults::flannel_version")]
    pub flannel_version: String,
    #[serde(default = "defaults::service_cidr")]
    pub service_cidr: String,
    #[serde(default = "defaults::pod_cidr")]
    pub pod_cidr: String,
    /// Defaults to the tenth address of the service CIDR.
    pub cluster_dns: Option<String>,
    #[serde(default = "defaults::cluster_domain")]
    pub cluster_domain: String,
    /// kube-proxy mode: `iptables` (default), `nftables`, or `ipvs` (deprecated upstream).
    #[serde(default = "defaults::proxy_mode")]
    pub proxy_mode: String,
    /// Also give kube-apiserver the static `token.csv` (`--token-auth-file`), for clusters that
    /// authenticate kubelet bootstrap that way.
    #[serde(default)]
    pub token_auth_file: bool,
    /// A directory (relative to the cluster file) whose `<name>.hbs` files override kbin's
    /// built-in templates.
    pub templates_dir: Option<String>,
}

/// `[network]`: the pod network.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RawNetwork {
    /// `flannel` (default: kbin installs flanneld and its CNI config) or `none` (bring your own
    /// CNI: the nodes stay NotReady until one is applied).
    #[serde(default = "defaults::network_plugin")]
    pub plugin: String,
}

impl Default for RawNetwork {
    fn default() -> Self {
        RawNetwork { plugin: defaults::network_plugin() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RawApiserver {
    /// The virtual IP held by the LB pair (keepalived). Optional.
    pub vip: Option<String>,
    /// The address every kubeconfig points at (an address or DNS name, no port). Default: the
    /// VIP, else the first of `lb_names`, else the first master. A cluster that grows from one
    /// master keeps its nodes on that master's address until `kbin repoint-nodes` moves them.
    pub endpoint: Option<String>,
    /// DNS names of an external load balancer in front of the apiservers.
    #[serde(default)]
    pub lb_names: Vec<String>,
    #[serde(default = "defaults::apiserver_port")]
    pub port: u16,
    /// Extra SANs (names or addresses) for every apiserver cert.
    #[serde(default)]
    pub extra_sans: Vec<String>,
}

impl Default for RawApiserver {
    /// What an absent `[apiserver]` table means: the same defaults as its absent keys.
    fn default() -> Self {
        RawApiserver { vip: None, endpoint: None, lb_names: Vec::new(), port: defaults::apiserver_port(), extra_sans: Vec::new() }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RawSsh {
    /// Default SSH user for every host.
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Default private key file; the ssh-agent is tried first when unset.
    pub key: Option<String>,
    /// An optional jump host in front of private hosts.
    pub bastion: Option<RawBastion>,
    /// How many hosts kbin works on at once (default 10).
    pub concurrency: Option<usize>,
    /// Seconds allowed for TCP connect, SSH handshake and login (default 10).
    pub connect_timeout_secs: Option<u64>,
    /// Seconds a remote command may run (default 300).
    pub command_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RawBastion {
    pub address: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RawPki {
    #[serde(default = "defaults::key_algorithm")]
    pub key_algorithm: String,
    #[serde(default = "defaults::ca_validity_days")]
    pub ca_validity_days: u32,
    #[serde(default = "defaults::leaf_validity_days")]
    pub leaf_validity_days: u32,
    #[serde(default = "defaults::renew_before_days")]
    pub renew_before_days: u32,
}

impl Default for RawPki {
    fn default() -> Self {
        RawPki {
            key_algorithm: defaults::key_algorithm(),
            ca_validity_days: defaults::ca_validity_days(),
            leaf_validity_days: defaults::leaf_validity_days(),
            renew_before_days: defaults::renew_before_days(),
        }
    }
}

/// Where things go on the hosts. Defaults follow the common binary layout.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Layout {
    pub etcd_bin: String,
    pub etcd_cfg: String,
    pub etcd_ssl: String,
    pub etcd_data: String,
    pub k8s_bin: String,
    /// Each Kubernetes release side by side (`<k8s_releases>/<version>/<binary>`); `k8s_bin` holds
    /// symlinks into the one in use, switched atomically by an upgrade or a rollback.
    pub k8s_releases: String,
    pub k8s_cfg: String,
    pub k8s_ssl: String,
    pub k8s_logs: String,
    pub units: String,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            etcd_bin: "/opt/etcd/bin".into(),
            etcd_cfg: "/opt/etcd/cfg".into(),
            etcd_ssl: "/opt/etcd/ssl".into(),
            etcd_data: "/var/lib/etcd/default.etcd".into(),
            k8s_bin: "/opt/kubernetes/bin".into(),
            k8s_releases: "/opt/kubernetes/releases".into(),
            k8s_cfg: "/opt/kubernetes/cfg".into(),
            k8s_ssl: "/opt/kubernetes/ssl".into(),
            k8s_logs: "/opt/kubernetes/logs".into(),
            units: "/usr/lib/systemd/system".into(),
        }
    }
}

/// Settings of the nginx + keepalived pair holding the VIP.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawLb {
    /// Network interface the VIP is added to (per host override: `hosts.lb_interface`).
    pub interface: String,
    /// VRRP virtual router id (1-255), unique on the LAN.
    pub virtual_router_id: u8,
    /// Use unicast VRRP peers instead of multicast (clouds without multicast).
    pub unicast: bool,
}

impl Default for RawLb {
    fn default() -> Self {
        RawLb { interface: "eth0".into(), virtual_router_id: 51, unicast: false }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RawHost {
    pub name: String,
    pub address: String,
    pub roles: Vec<String>,
    /// Per-host SSH overrides.
    pub ssh_user: Option<String>,
    pub ssh_port: Option<u16>,
    pub ssh_key: Option<String>,
    /// Per-host overrides of cluster-wide settings.
    pub lb_interface: Option<String>,
    /// keepalived priority; defaults to 100 for the first LB host, 90, 80, ... after it.
    pub lb_priority: Option<u8>,
    /// Extra node labels (`key=value`).
    #[serde(default)]
    pub labels: Vec<String>,
}

/// Default versions and settings (public so the artifact catalog's tests can check them).
pub mod defaults {
    pub fn kubernetes_version() -> String {
        "v1.37.2".into()
    }
    pub fn etcd_version() -> String {
        "v3.6.17".into()
    }
    pub fn flannel_version() -> String {
        "v0.28.11".into()
    }
    pub fn network_plugin() -> String {
        "flannel".into()
    }
    pub fn service_cidr() -> String {
        "10.96.0.0/12".into()
    }
    pub fn pod_cidr() -> String {
        "10.244.0.0/16".into()
    }
    pub fn cluster_domain() -> String {
        "cluster.local".into()
    }
    pub fn proxy_mode() -> String {
        "iptables".into()
    }
    pub fn apiserver_port() -> u16 {
        6443
    }
    pub fn key_algorithm() -> String {
        "ecdsa-p256".into()
    }
    pub fn ca_validity_days() -> u32 {
        3650
    }
    pub fn leaf_validity_days() -> u32 {
        365
    }
    pub fn renew_before_days() -> u32 {
        30
    }
}

// ---------------------------------------------------------------------------------------------
// Validated model: what the rest of kbin works with.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Etcd,
    Master,
    Node,
    Lb,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Etcd, Role::Master, Role::Node, Role::Lb];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Etcd => "etcd",
            Role::Master => "master",
            Role::Node => "node",
            Role::Lb => "lb",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyAlgorithm {
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 4] =
        [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048, KeyAlgorithm::Rsa3072, KeyAlgorithm::Rsa4096];
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
        }
    }
    pub fn parse(s: &str) -> Option<KeyAlgorithm> {
        KeyAlgorithm::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SshTarget {
    pub user: String,
    pub port: u16,
    /// Private key file; `None` means use the ssh-agent.
    pub key: Option<PathBuf>,
}

/// Connection settings shared by every host (`[ssh]`).
#[derive(Debug, Clone, Serialize)]
pub struct SshSettings {
    /// User, port and key of a host that sets none of its own.
    pub default: SshTarget,
    pub concurrency: usize,
    pub connect_timeout_secs: u64,
    pub command_timeout_secs: u64,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings { default: SshTarget { user: "root".into(), port: 22, key: None }, concurrency: 10, connect_timeout_secs: 10, command_timeout_secs: 300 }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Bastion {
    pub address: String,
    pub ssh: SshTarget,
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    pub address: IpAddr,
    pub roles: Vec<Role>,
    pub ssh: SshTarget,
    pub lb_interface: String,
    pub lb_priority: u8,
    pub labels: Vec<String>,
}

impl Host {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Apiserver {
    pub vip: Option<IpAddr>,
    /// `apiserver.endpoint`, when the file sets it.
    pub endpoint: Option<String>,
    pub lb_names: Vec<String>,
    pub port: u16,
    pub extra_sans: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pki {
    pub key_algorithm: KeyAlgorithm,
    pub ca_validity_days: u32,
    pub leaf_validity_days: u32,
    /// A deploy (`up`, `master add`, `node add`) re-issues every kbin-issued leaf with fewer days
    /// left than this (0: never), and its rollout places them.
    pub renew_before_days: u32,
}

/// Validated `[artifacts]` settings (the default is what an absent `[artifacts]` table means).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Artifacts {
    pub mirror: Option<String>,
    pub mirrors: std::collections::BTreeMap<String, String>,
    pub arch: crate::artifacts::Arch,
    pub cache_dir: Option<PathBuf>,
    pub versions: std::collections::BTreeMap<String, String>,
}

/// kube-proxy's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    Iptables,
    /// GA since Kubernetes 1.33; flannel is told to write nftables rules too.
    Nftables,
    /// Deprecated upstream (1.37 says it is off by default from 1.40); accepted with a warning.
    Ipvs,
}

impl ProxyMode {
    pub const ALL: [ProxyMode; 3] = [ProxyMode::Iptables, ProxyMode::Nftables, ProxyMode::Ipvs];
    pub fn parse(s: &str) -> Option<ProxyMode> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
    /// As KubeProxyConfiguration's `mode` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Iptables => "iptables",
            ProxyMode::Nftables => "nftables",
            ProxyMode::Ipvs => "ipvs",
        }
    }
}

/// `[network] plugin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkPlugin {
    /// flanneld (vxlan) and its CNI config on every node.
    Flannel,
    /// No CNI from kbin: the user applies one; nodes stay NotReady until then.
    None,
}

impl NetworkPlugin {
    pub fn parse(s: &str) -> Option<NetworkPlugin> {
        match s {
            "flannel" => Some(NetworkPlugin::Flannel),
            "none" => Some(NetworkPlugin::None),
            _ => None,
        }
    }
}

/// The services a node runs, in start order: the runtime before the kubelet; flanneld only when
/// kbin installs the pod network.
pub fn node_units(cluster: &Cluster) -> Vec<&'static str> {
    match cluster.network {
        NetworkPlugin::Flannel => vec!["containerd", "flanneld", "kubelet", "kube-proxy"],
        NetworkPlugin::None => vec!["containerd", "kubelet", "kube-proxy"],
    }
}

/// A validated cluster file.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// The cluster file this came from.
    pub file: PathBuf,
    /// The directory holding kbin's local state (`pki/`, `kbin.lock`, `known_hosts`).
    pub state_dir: PathBuf,
    pub name: String,
    pub kubernetes_version: String,
    pub etcd_version: String,
    pub flannel_version: String,
    pub service_cidr: IpNet,
    pub pod_cidr: IpNet,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    pub proxy_mode: ProxyMode,
    /// The pod network kbin installs, if any.
    pub network: NetworkPlugin,
    pub token_auth_file: bool,
    pub templates_dir: Option<PathBuf>,
    pub apiserver: Apiserver,
    pub bastion: Option<Bastion>,
    pub ssh: SshSettings,
    pub pki: Pki,
    pub layout: Layout,
    pub lb: RawLb,
    pub hosts: Vec<Host>,
    pub artifacts: Artifacts,
    pub kubelet: ComponentConfig,
    pub kube_proxy: ComponentConfig,
    pub containerd: ComponentConfig,
    /// Images, add-ons and registry mirrors.
    pub workloads: workloads::Workloads,
    /// Non-fatal findings (e.g. an even number of etcd members).
    pub warnings: Vec<Diagnostic>,
}

impl Cluster {
    pub fn hosts_with(&self, role: Role) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.has(role))
    }
    pub fn host(&self, name_or_address: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name_or_address || h.address.to_string() == name_or_address)
    }
    /// The first address of the service CIDR: the `kubernetes` Service's cluster IP.
    pub fn service_ip(&self) -> IpAddr {
        nth_addr(&self.service_cidr, 1).expect("validated: service CIDR has room")
    }
    /// Where clients reach the apiserver: `apiserver.endpoint`, else the VIP, else the first LB
    /// name, else the first master.
    pub fn endpoint_host(&self) -> String {
        if let Some(e) = &self.apiserver.endpoint {
            return e.clone();
        }
        if let Some(vip) = self.apiserver.vip {
            return vip.to_string();
        }
        if let Some(n) = self.apiserver.lb_names.first() {
            return n.clone();
        }
        self.hosts_with(Role::Master).next().map(|h| h.address.to_string()).expect("validated: a master exists")
    }
    /// `https://<endpoint>:<port>`, with brackets around an IPv6 address.
    pub fn endpoint_url(&self) -> String {
        url_for(&self.endpoint_host(), self.apiserver.port)
    }
    pub fn pki_dir(&self) -> PathBuf {
        self.state_dir.join("pki")
    }
}

/// `https://host:port`, bracketing IPv6 literals.
pub fn url_for(host: &str, port: u16) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// The n-th address of a network (0 is the network address itself).
pub fn nth_addr(net: &IpNet, n: u128) -> Option<IpAddr> {
    match net {
        IpNet::V4(v4) => {
            let base = u32::from(v4.network()) as u128;
            let size = 1u128 << (32 - v4.prefix_len());
            (n < size).then(|| IpAddr::V4(std::net::Ipv4Addr::from((base + n) as u32)))
        }
        IpNet::V6(v6) => {
            let base = u128::from(v6.network());
            let bits = 128 - v6.prefix_len() as u32;
            (bits >= 128 || n < (1u128 << bits)).then(|| IpAddr::V6(std::net::Ipv6Addr::from(base + n)))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read cluster file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: not UTF-8 text (invalid byte at column {column})", path.display())]
    Encoding { path: PathBuf, line: usize, column: usize },
    #[error("{}:{}: {message}", path.display(), line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
    Syntax { path: PathBuf, line: Option<usize>, message: String },
    #[error("{} has {} problem{}", path.display(), diagnostics.len(), if diagnostics.len() == 1 { "" } else { "s" })]
    Invalid { path: PathBuf, diagnostics: Vec<Diagnostic> },
}

impl ConfigError {
    pub fn details(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { path, diagnostics } => diagnostics.iter().map(|d| d.render(path)).collect(),
            _ => Vec::new(),
        }
    }
}

impl crate::exit::Reportable for ConfigError {
    fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Read { path, source } if source.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "create {} (see examples/ in the kbin repository) or pass another file with -c FILE",
                path.display()
            )),
            ConfigError::Read { path, .. } => Some(format!("make {} a readable file, or pass another file with -c FILE", path.display())),
            ConfigError::Encoding { .. } => Some("save the cluster file as UTF-8 (for example: iconv -f LATIN1 -t UTF-8 FILE)".into()),
            ConfigError::Syntax { .. } => Some("fix the TOML syntax at that line; every value needs quotes unless it is a number, a boolean or a list".into()),
            ConfigError::Invalid { .. } => Some("fix the fields listed above; nothing was written".into()),
        }
    }
    fn exit(&self) -> crate::exit::Exit {
        crate::exit::Exit::BadConfig
    }
}

/// Read and validate a cluster file.
pub fn load(path: &Path) -> Result<Cluster, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
        ConfigError::Encoding { path: path.to_path_buf(), line: good.iter().filter(|b| **b == b'\n').count() + 1, column }
    })?;
    parse(path, &text)
}

/// Validate cluster file text; `path` is used for messages and to find the state directory.
pub fn parse(path: &Path, text: &str) -> Result<Cluster, ConfigError> {
    validate::parse_and_validate(path, text)
}
