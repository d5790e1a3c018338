//! Every file kbin writes on a host, rendered from the Handlebars templates in `unit-templates/`.
//!
//! Templates are embedded in the binary and can be overridden, one by one, from the directory named
//! by `cluster.templates_dir`. Rendering is strict (an unknown variable is an error) and never
//! HTML-escapes. [`host_files`] is the single list of what goes where on a host; `kbin render`
//! writes exactly that list, and the deploy phases push exactly that list.

use std::path::{Path, PathBuf};

use handlebars::Handlebars;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Cluster, Host, Role, url_for};
use crate::exit::Reportable;
use crate::pki::{self, profile::Profile};

/// The built-in templates: (name, text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("etcd.service", include_str!("../unit-templates/etcd.service.hbs")),
    ("etcd.yml", include_str!("../unit-templates/etcd.yml.hbs")),
    ("kube-apiserver.service", include_str!("../unit-templates/kube-apiserver.service.hbs")),
    ("kube-controller-manager.service", include_str!("../unit-templates/kube-controller-manager.service.hbs")),
    ("kube-scheduler.service", include_str!("../unit-templates/kube-scheduler.service.hbs")),
    ("kubelet.service", include_str!("../unit-templates/kubelet.service.hbs")),
    ("kubelet-config.yaml", include_str!("../unit-templates/kubelet-config.yaml.hbs")),
    ("kube-proxy.service", include_str!("../unit-templates/kube-proxy.service.hbs")),
    ("kube-proxy-config.yaml", include_str!("../unit-templates/kube-proxy-config.yaml.hbs")),
    ("flanneld.service", include_str!("../unit-templates/flanneld.service.hbs")),
    ("flannel-net-conf.json", include_str!("../unit-templates/flannel-net-conf.json.hbs")),
    ("flanneld-pre.sh", include_str!("../unit-templates/flanneld-pre.sh.hbs")),
    ("10-flannel.conflist", include_str!("../unit-templates/10-flannel.conflist.hbs")),
    ("containerd.service", include_str!("../unit-templates/containerd.service.hbs")),
    ("containerd-config.toml", include_str!("../unit-templates/containerd-config.toml.hbs")),
    ("containerd-hosts.toml", include_str!("../unit-templates/containerd-hosts.toml.hbs")),
    ("audit-policy.yaml", include_str!("../unit-templates/audit-policy.yaml.hbs")),
    ("nginx.conf", include_str!("../unit-templates/nginx.conf.hbs")),
    ("keepalived.conf", include_str!("../unit-templates/keepalived.conf.hbs")),
    ("check_nginx.sh", include_str!("../unit-templates/check_nginx.sh.hbs")),
    ("kbin-k8s-sysctl.conf", include_str!("../unit-templates/kbin-k8s-sysctl.conf.hbs")),
    ("kbin-k8s-modules.conf", include_str!("../unit-templates/kbin-k8s-modules.conf.hbs")),
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {name} ({}) is invalid: {message}", origin.display())]
    Template { name: String, origin: PathBuf, message: String },
    #[error("rendering {name} for {host} failed: {message}")]
    Render { name: String, host: String, message: String },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is missing: {host} needs it", path.display())]
    MissingPki { host: String, path: PathBuf },
    #[error("no host named {0:?} in the cluster file")]
    UnknownHost(String),
    /// A file in pki/ that is a link or not a regular file.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Reportable for RenderError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            RenderError::Template { .. } => "fix the template; variables are listed in README.md (Templates)".into(),
            RenderError::Render { .. } => "an overriding template uses a variable kbin does not provide; compare it with the built-in one".into(),
            RenderError::Read { .. } => "check templates_dir in the cluster file".into(),
            RenderError::MissingPki { .. } => "run `kbin pki init` first".into(),
            RenderError::UnknownHost(_) => "use a host name or address from the cluster file".into(),
            RenderError::Write { .. } => "check that the output directory is writable".into(),
            RenderError::Pki(e) => return e.hint(),
        })
    }
    fn exit(&self) -> crate::exit::Exit {
        match self {
            RenderError::Pki(e) => e.exit(),
            _ => crate::exit::Exit::Failure,
        }
    }
}

/// The template registry: built-ins, overridden by `templates_dir`.
pub struct Templates {
    hb: Handlebars<'static>,
}

impl Templates {
    pub fn load(cluster: &Cluster) -> Result<Templates, RenderError> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        for (name, text) in BUILTIN {
            let (text, origin) = match &cluster.templates_dir {
                Some(dir) => {
                    let path = dir.join(format!("{name}.hbs"));
                    match std::fs::read_to_string(&path) {
                        Ok(t) => (t, path),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (text.to_string(), PathBuf::from(format!("unit-templates/{name}.hbs"))),
                        Err(source) => return Err(RenderError::Read { path, source }),
                    }
                }
                None => (text.to_string(), PathBuf::from(format!("unit-templates/{name}.hbs"))),
            };
            hb.register_template_string(name, text)
                .map_err(|e| RenderError::Template { name: name.to_string(), origin, message: e.to_string() })?;
        }
        Ok(Templates { hb })
    }

    pub fn render(&self, name: &str, host: &str, ctx: &Value) -> Result<String, RenderError> {
        self.hb.render(name, ctx).map_err(|e| RenderError::Render { name: name.to_string(), host: host.to_string(), message: e.to_string() })
    }
}

/// Per-run inputs that are not in the cluster file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `existing` when the member joins a running etcd cluster (`kbin etcd add`); `new` otherwise.
    pub etcd_existing: bool,
}

/// The variables `containerd-hosts.toml` sees besides [`context`]'s: one registry of
/// `[registries]`, and where its CA file (`ca`, empty for none) is placed.
pub fn registry_context(r: &crate::config::workloads::Registry, ca: &str) -> Value {
    json!({"registry": {"host": r.host, "server": r.server(), "mirrors": r.mirrors, "ca": ca, "skip_verify": r.skip_verify}})
}

/// containerd's registry configuration directory (`hosts.toml` per registry host).
pub const CERTS_DIR: &str = "/etc/containerd/certs.d";

/// The variables every template sees.
pub fn context(cluster: &Cluster, host: &Host, opts: &Options) -> Value {
    let etcd: Vec<&Host> = cluster.hosts_with(Role::Etcd).collect();
    let addr = |h: &Host| {
        let a = h.address.to_string();
        if h.address.is_ipv6() { format!("[{a}]") } else { a }
    };
    let initial_cluster = etcd.iter().map(|h| format!("{}=https://{}:2380", h.name, addr(h))).collect::<Vec<_>>().join(",");
    let client_urls = etcd.iter().map(|h| format!("https://{}:2379", addr(h))).collect::<Vec<_>>().join(",");
    let lbs: Vec<&Host> = cluster.hosts_with(Role::Lb).collect();
    let top = lbs.iter().map(|h| h.lb_priority).max().unwrap_or(0);
    json!({
        "cluster": {
            "name": cluster.name,
            "service_cidr": cluster.service_cidr.to_string(),
            "pod_cidr": cluster.pod_cidr.to_string(),
            "cluster_dns": cluster.cluster_dns.to_string(),
            "domain": cluster.cluster_domain,
            "service_ip": cluster.service_ip().to_string(),
            "proxy_mode": cluster.proxy_mode.as_str(),
            "ipvs": cluster.proxy_mode == crate::config::ProxyMode::Ipvs,
            "nftables": cluster.proxy_mode == crate::config::ProxyMode::Nftables,
            "apiserver_port": cluster.apiserver.port,
            "endpoint_url": cluster.endpoint_url(),
            "token_auth_file": cluster.token_auth_file,
            "kubernetes_version": cluster.kubernetes_version,
        },
        "host": {
            "name": host.name,
            "address": host.address.to_string(),
            "address_url": addr(host),
            "labels": host.labels.join(","),
        },
        "layout": cluster.layout,
        "containerd": {
            "sandbox_image": cluster.workloads.sandbox_image(),
            "certs_dir": CERTS_DIR,
        },
        "etcd": {
            "initial_cluster": initial_cluster,
            "client_urls": client_urls,
            "token": format!("etcd-{}", cluster.name),
            "state": if opts.etcd_existing { "existing" } else { "new" },
        },
        "lb": {
            "vip": cluster.apiserver.vip.map(|v| v.to_string()).unwrap_or_default(),
            "interface": host.lb_interface,
            "priority": host.lb_priority,
            "state": if host.lb_priority == top { "MASTER" } else { "BACKUP" },
            "router_id": cluster.lb.virtual_router_id,
            "unicast": cluster.lb.unicast,
            "peers": lbs.iter().filter(|h| h.name != host.name).map(|h| h.address.to_string()).collect::<Vec<_>>(),
            "upstreams": cluster.hosts_with(Role::Master).map(|h| json!({"name": h.name, "address": addr(h), "port": cluster.apiserver.port})).collect::<Vec<_>>(),
        },
    })
}

/// Which part of the cluster a file belongs to (the deploy command that pushes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Etcd,
    Master,
    Node,
    Lb,
}

/// One file on a host.
#[derive(Debug, Clone, Serialize)]
pub struct HostFile {
    /// Absolute path on the host.
    pub path: String,
    pub mode: u32,
    #[serde(skip)]
    pub content: Vec<u8>,
    /// Private key, token or kubeconfig: never printed.
    pub secret: bool,
    pub component: Component,
    /// Services to restart when this file changes.
    pub restarts: Vec<String>,
    /// Where the content comes from (a template name or a pki file), for people.
    pub source: String,
}

struct Builder<'a> {
    host: &'a Host,
    templates: &'a Templates,
    ctx: Value,
    store: pki::Store,
    files: Vec<HostFile>,
}

impl Builder<'_> {
    fn template(&mut self, component: Component, name: &str, path: String, mode: u32, restarts: &[&str]) -> Result<(), RenderError> {
        self.template_with(component, name, path, mode, restarts, Value::Null)
    }
    /// [`Builder::template`] with `extra` merged into the variables (one file of many: a registry).
    fn template_with(&mut self, component: Component, name: &str, path: String, mode: u32, restarts: &[&str], extra: Value) -> Result<(), RenderError> {
        let text = if extra.is_null() {
            self.templates.render(name, &self.host.name, &self.ctx)?
        } else {
            let mut ctx = self.ctx.clone();
            merge(&mut ctx, extra);
            self.templates.render(name, &self.host.name, &ctx)?
        };
        self.files.push(HostFile { path, mode, content: text.into_bytes(), secret: false, component, restarts: restarts.iter().map(|s| s.to_string()).collect(), source: format!("template {name}") });
        Ok(())
    }
    /// A YAML configuration from a template, with the cluster file's `overrides` merged over it
    /// (`[kubelet] config`, `[kube_proxy] config`). Without overrides the text is the template's.
    fn yaml_with(&mut self, component: Component, name: &str, path: String, restarts: &[&str], overrides: &toml::Table) -> Result<(), RenderError> {
        self.merged(component, name, path, restarts, overrides, false)
    }
    /// A configuration from a template (YAML, or TOML with `toml`), with the cluster file's
    /// `overrides` merged over it. Without overrides the text is the template's.
    fn merged(&mut self, component: Component, name: &str, path: String, restarts: &[&str], overrides: &toml::Table, toml: bool) -> Result<(), RenderError> {
        self.template(component, name, path, 0o644, restarts)?;
        if overrides.is_empty() {
            return Ok(());
        }
        let f = self.files.last_mut().expect("just pushed");
        let text = String::from_utf8_lossy(&f.content).into_owned();
        let err = |message: String| RenderError::Render { name: name.to_string(), host: self.host.name.clone(), message };
        let mut doc: Value = if toml {
            toml::from_str::<toml::Table>(&text).map_err(|e| err(format!("the rendered file is not TOML: {e}"))).and_then(|t| serde_json::to_value(t).map_err(|e| err(e.to_string())))?
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| err(format!("the rendered file is not YAML: {e}")))?
        };
        let over = serde_json::to_value(overrides).map_err(|e| err(e.to_string()))?;
        merge(&mut doc, over);
        let header: String = text.lines().take_while(|l| l.starts_with('#')).map(|l| format!("{l}\n")).collect();
        let body = if toml {
            toml::to_string(&doc).map_err(|e| err(e.to_string()))?
        } else {
            serde_yaml_ng::to_string(&doc).map_err(|e| err(e.to_string()))?
        };
        f.content = format!("{header}# with the cluster file's overrides merged in\n{body}").into_bytes();
        f.source = format!("template {name} + cluster file overrides");
        Ok(())
    }
    fn pki(&mut self, component: Component, rel: &str, path: String, restarts: &[&str]) -> Result<(), RenderError> {
        let local = self.store.path(rel);
        // what goes to a host comes from a regular file inside pki/, never through a link
        if !self.store.present(rel)? {
            return Err(RenderError::MissingPki { host: self.host.name.clone(), path: local });
        }
        let content = match std::fs::read(&local) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RenderError::MissingPki { host: self.host.name.clone(), path: local }),
            Err(source) => return Err(RenderError::Read { path: local, source }),
        };
        let secret = rel.ends_with(".key") || rel.ends_with(".kubeconfig") || rel == pki::TOKEN_CSV || rel == pki::encryption::ENCRYPTION_CONFIG;
        self.files.push(HostFile { path, mode: if secret { 0o600 } else { 0o644 }, content, secret, component, restarts: restarts.iter().map(|s| s.to_string()).collect(), source: format!("pki/{rel}") });
        Ok(())
    }
    /// The first certificate of a CA file in the pki: the one that matches the CA's key. During
    /// a CA rotation `<ca>.crt` holds two (the trust bundle); what signs with the key (the
    /// controller-manager's `--cluster-signing-cert-file`) must hold exactly the one that matches.
    fn pki_signer(&mut self, component: Component, rel: &str, path: String, restarts: &[&str]) -> Result<(), RenderError> {
        self.pki(component, rel, path, restarts)?;
        let f = self.files.last_mut().expect("just pushed");
        let text = String::from_utf8_lossy(&f.content).into_owned();
        let first = pki::rotate::blocks(&text).into_iter().next().map(|(pem, _)| pem).ok_or_else(|| RenderError::Render { name: rel.to_string(), host: self.host.name.clone(), message: "holds no certificate".into() })?;
        f.content = first.into_bytes();
        f.source = format!("pki/{rel} (its first certificate)");
        Ok(())
    }
    /// A kubeconfig from the pki, with every cluster's `server:` set to `server` (a master's
    /// controller-manager and scheduler talk to the apiserver next to them, so they keep working
    /// whichever other master or LB is down).
    fn kubeconfig_with_server(&mut self, component: Component, rel: &str, path: String, restarts: &[&str], server: &str) -> Result<(), RenderError> {
        self.pki(component, rel, path, restarts)?;
        let f = self.files.last_mut().expect("just pushed");
        let text = String::from_utf8_lossy(&f.content).into_owned();
        let mut k = pki::kubeconfig::parse(&text).map_err(|e| RenderError::Render { name: rel.to_string(), host: self.host.name.clone(), message: format!("not a kubeconfig: {e}") })?;
        for c in &mut k.clusters {
            c.cluster.server = server.to_string();
        }
        f.content = pki::kubeconfig::render(&k).into_bytes();
        f.source = format!("pki/{rel} (server {server})");
        Ok(())
    }
}

/// Merges `over` into `base`: objects key by key (recursively), anything else replaces.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Every file kbin writes on `host` (binaries excepted: see [`binaries`]).
pub fn host_files(cluster: &Cluster, host: &Host, templates: &Templates, opts: &Options) -> Result<Vec<HostFile>, RenderError> {
    let profile = Profile::builtin();
    let file_of = |id: &str| -> String {
        profile.cert(id).map(|r| r.file.replace("{host}", &host.name)).or_else(|| profile.ca(id).map(|r| r.file.clone())).expect("id from the table")
    };
    let kubeconfig_of = |id: &str| -> String { profile.kubeconfigs.iter().find(|k| k.id == id).expect("id from the table").file.clone() };
    let l = &cluster.layout;
    let mut b = Builder { host, templates, ctx: context(cluster, host, opts), store: pki::Store::new(cluster.pki_dir()), files: Vec::new() };
    use Component::*;

    if host.has(Role::Etcd) {
        let r = &["etcd"];
        b.template(Etcd, "etcd.yml", format!("{}/etcd.yml", l.etcd_cfg), 0o644, r)?;
        b.template(Etcd, "etcd.service", format!("{}/etcd.service", l.units), 0o644, r)?;
        b.pki(Etcd, &format!("{}.crt", file_of("etcd-ca")), format!("{}/ca.crt", l.etcd_ssl), r)?;
        for (id, name) in [("etcd-server", "server"), ("etcd-peer", "peer")] {
            b.pki(Etcd, &format!("{}.crt", file_of(id)), format!("{}/{name}.crt", l.etcd_ssl), r)?;
            b.pki(Etcd, &format!("{}.key", file_of(id)), format!("{}/{name}.key", l.etcd_ssl), r)?;
        }
    }
    if host.has(Role::Master) {
        let api = &["kube-apiserver"];
        let cm = &["kube-controller-manager"];
        let all = &["kube-apiserver", "kube-controller-manager", "kube-scheduler"];
        b.pki(Master, &format!("{}.crt", file_of("ca")), format!("{}/ca.crt", l.k8s_ssl), all)?;
        b.pki(Master, &format!("{}.key", file_of("ca")), format!("{}/ca.key", l.k8s_ssl), cm)?;
        b.pki_signer(Master, &format!("{}.crt", file_of("ca")), format!("{}/ca-signer.crt", l.k8s_ssl), cm)?;
        b.pki(Master, &format!("{}.crt", file_of("etcd-ca")), format!("{}/etcd-ca.crt", l.k8s_ssl), api)?;
        b.pki(Master, &format!("{}.crt", file_of("front-proxy-ca")), format!("{}/front-proxy-ca.crt", l.k8s_ssl), &["kube-apiserver", "kube-controller-manager"])?;
        for (id, name) in [
            ("apiserver", "apiserver"),
            ("apiserver-kubelet-client", "apiserver-kubelet-client"),
            ("apiserver-etcd-client", "apiserver-etcd-client"),
            ("front-proxy-client", "front-proxy-client"),
        ] {
            b.pki(Master, &format!("{}.crt", file_of(id)), format!("{}/{name}.crt", l.k8s_ssl), api)?;
            b.pki(Master, &format!("{}.key", file_of(id)), format!("{}/{name}.key", l.k8s_ssl), api)?;
        }
        b.pki(Master, pki::SA_KEY, format!("{}/sa.key", l.k8s_ssl), &["kube-apiserver", "kube-controller-manager"])?;
        b.pki(Master, pki::SA_PUB, format!("{}/sa.pub", l.k8s_ssl), api)?;
        let local = url_for("127.0.0.1", cluster.apiserver.port);
        b.kubeconfig_with_server(Master, &kubeconfig_of("controller-manager"), format!("{}/kube-controller-manager.kubeconfig", l.k8s_cfg), cm, &local)?;
        b.kubeconfig_with_server(Master, &kubeconfig_of("scheduler"), format!("{}/kube-scheduler.kubeconfig", l.k8s_cfg), &["kube-scheduler"], &local)?;
        if cluster.token_auth_file {
            b.pki(Master, pki::TOKEN_CSV, format!("{}/token.csv", l.k8s_cfg), api)?;
        }
        b.pki(Master, pki::encryption::ENCRYPTION_CONFIG, format!("{}/encryption-config.yaml", l.k8s_cfg), api)?;
        b.template(Master, "audit-policy.yaml", format!("{}/audit-policy.yaml", l.k8s_cfg), 0o644, api)?;
        for unit in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
            b.template(Master, &format!("{unit}.service"), format!("{}/{unit}.service", l.units), 0o644, &[unit])?;
        }
    }
    if host.has(Role::Node) {
        let kubelet = &["kubelet"];
        let proxy = &["kube-proxy"];
        let flannel = &["flanneld"];
        b.pki(Node, &format!("{}.crt", file_of("ca")), format!("{}/ca.crt", l.k8s_ssl), kubelet)?;
        b.pki(Node, &format!("{}.crt", file_of("kubelet")), format!("{}/kubelet.crt", l.k8s_ssl), kubelet)?;
        b.pki(Node, &format!("{}.key", file_of("kubelet")), format!("{}/kubelet.key", l.k8s_ssl), kubelet)?;
        b.pki(Node, &kubeconfig_of("bootstrap"), format!("{}/bootstrap.kubeconfig", l.k8s_cfg), kubelet)?;
        b.pki(Node, &kubeconfig_of("kube-proxy"), format!("{}/kube-proxy.kubeconfig", l.k8s_cfg), proxy)?;
        let flannel_net = cluster.network == crate::config::NetworkPlugin::Flannel;
        if flannel_net {
            b.pki(Node, &kubeconfig_of("flannel"), format!("{}/flannel.kubeconfig", l.k8s_cfg), flannel)?;
        }
        b.yaml_with(Node, "kubelet-config.yaml", format!("{}/kubelet-config.yaml", l.k8s_cfg), kubelet, &cluster.kubelet.config)?;
        b.yaml_with(Node, "kube-proxy-config.yaml", format!("{}/kube-proxy-config.yaml", l.k8s_cfg), proxy, &cluster.kube_proxy.config)?;
        if flannel_net {
            b.template(Node, "flannel-net-conf.json", format!("{}/flannel-net-conf.json", l.k8s_cfg), 0o644, flannel)?;
            b.template(Node, "flanneld-pre.sh", format!("{}/flanneld-pre.sh", l.k8s_cfg), 0o755, flannel)?;
            b.template(Node, "10-flannel.conflist", "/etc/cni/net.d/10-flannel.conflist".into(), 0o644, &[])?;
        }
        b.merged(Node, "containerd-config.toml", "/etc/containerd/config.toml".into(), &["containerd"], &cluster.containerd.config, true)?;
        // containerd reads hosts.toml at each pull: a change needs no restart
        for r in &cluster.workloads.registries {
            let dir = format!("{CERTS_DIR}/{}", r.host);
            let ca = match &r.ca_file {
                Some(f) => {
                    let content = std::fs::read(f).map_err(|source| RenderError::Read { path: f.clone(), source })?;
                    b.files.push(HostFile { path: format!("{dir}/ca.crt"), mode: 0o644, content, secret: false, component: Node, restarts: Vec::new(), source: f.display().to_string() });
                    format!("{dir}/ca.crt")
                }
                None => String::new(),
            };
            b.template_with(Node, "containerd-hosts.toml", format!("{dir}/hosts.toml"), 0o644, &[], registry_context(r, &ca))?;
        }
        b.template(Node, "kbin-k8s-sysctl.conf", "/etc/sysctl.d/99-kubernetes.conf".into(), 0o644, &[])?;
        b.template(Node, "kbin-k8s-modules.conf", "/etc/modules-load.d/kubernetes.conf".into(), 0o644, &[])?;
        for unit in crate::config::node_units(cluster) {
            b.template(Node, &format!("{unit}.service"), format!("{}/{unit}.service", l.units), 0o644, &[unit])?;
        }
    }
    if host.has(Role::Lb) {
        b.template(Lb, "nginx.conf", "/etc/nginx/nginx.conf".into(), 0o644, &["nginx"])?;
        b.template(Lb, "keepalived.conf", "/etc/keepalived/keepalived.conf".into(), 0o644, &["keepalived"])?;
        b.template(Lb, "check_nginx.sh", "/etc/keepalived/check_nginx.sh".into(), 0o755, &[])?;
    }
    // A host with several roles gets shared files (ca.crt) once.
    let mut seen = std::collections::HashSet::new();
    b.files.retain(|f| seen.insert(f.path.clone()));
    Ok(b.files)
}

/// A release binary a host needs: the artifact-catalog component it comes from, the file's name
/// as that artifact ships it, and the absolute path on the host.
#[derive(Debug, Clone, Serialize)]
pub struct Binary {
    pub component: &'static str,
    pub name: String,
    /// Where the units run it from.
    pub path: String,
    /// Where the file itself lives when `path` is a symlink to it: the Kubernetes binaries of
    /// each release side by side (`<k8s_releases>/<version>/<name>`), so an upgrade switches by
    /// a symlink swap and the previous release stays on the host.
    pub release: Option<String>,
    /// Which part of the cluster installs it.
    pub part: Component,
}

/// The release binaries `host` needs.
pub fn binaries(cluster: &Cluster, host: &Host) -> Vec<Binary> {
    let l = &cluster.layout;
    let arch = cluster.artifacts.arch.as_str();
    let mut out = Vec::new();
    let kv = &cluster.kubernetes_version;
    let mut add = |part: Component, component: &'static str, name: &str, path: String| {
        let release = component.starts_with("kube").then(|| format!("{}/{kv}/{name}", l.k8s_releases));
        out.push(Binary { component, name: name.to_string(), path, release, part })
    };
    if host.has(Role::Etcd) {
        add(Component::Etcd, "etcd", "etcd", format!("{}/etcd", l.etcd_bin));
        add(Component::Etcd, "etcd", "etcdctl", format!("{}/etcdctl", l.etcd_bin));
        // the offline tool: `snapshot restore` (etcd 3.6 removed it from etcdctl) and `check v2store`
        add(Component::Etcd, "etcd", "etcdutl", format!("{}/etcdutl", l.etcd_bin));
    }
    if host.has(Role::Master) {
        for n in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"] {
            add(Component::Master, n, n, format!("{}/{n}", l.k8s_bin));
        }
    }
    if host.has(Role::Node) {
        add(Component::Node, "kubelet", "kubelet", format!("{}/kubelet", l.k8s_bin));
        add(Component::Node, "kube-proxy", "kube-proxy", format!("{}/kube-proxy", l.k8s_bin));
        let flannel = cluster.network == crate::config::NetworkPlugin::Flannel;
        if flannel {
            add(Component::Node, "flanneld", "flanneld", format!("{}/flanneld", l.k8s_bin));
        }
        for n in ["containerd", "containerd-shim-runc-v2", "ctr"] {
            add(Component::Node, "containerd", n, format!("/usr/local/bin/{n}"));
        }
        add(Component::Node, "runc", "runc", "/usr/local/sbin/runc".into());
        add(Component::Node, "crictl", "crictl", "/usr/local/bin/crictl".into());
        for n in ["bridge", "host-local", "loopback", "portmap"] {
            add(Component::Node, "cni-plugins", n, format!("/opt/cni/bin/{n}"));
        }
        if flannel {
            add(Component::Node, "flannel-cni-plugin", &format!("flannel-{arch}"), "/opt/cni/bin/flannel".into());
        }
    }
    out
}

/// Resolve `name_or_address` to a host of the cluster.
pub fn find_host<'c>(cluster: &'c Cluster, name_or_address: &str) -> Result<&'c Host, RenderError> {
    cluster.host(name_or_address).ok_or_else(|| RenderError::UnknownHost(name_or_address.to_string()))
}

/// Write `files` under `out` as they would be on the host (`out/opt/etcd/cfg/etcd.yml`).
pub fn write_tree(out: &Path, files: &[HostFile]) -> Result<(), RenderError> {
    for f in files {
        let path = out.join(f.path.trim_start_matches('/'));
        if let Some(dir) = path.parent() {
            // 0755 whatever the umask: the tree mirrors a host's, where these are root's 0755 dirs
            crate::fsutil::create_dirs(dir, 0o755).map_err(|source| RenderError::Write { path: dir.to_path_buf(), source })?;
        }
        crate::fsutil::write_atomic(&path, &f.content, f.mode).map_err(|source| RenderError::Write { path, source })?;
    }
    Ok(())
}

