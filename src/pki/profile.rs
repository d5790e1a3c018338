//! The certificate and kubeconfig tables from `pki-profiles/`, embedded in the binary.

use serde::Deserialize;

use crate::config::Role;

pub const CERTS_TOML: &str = include_str!("../../pki-profiles/certs.toml");
pub const KUBECONFIGS_TOML: &str = include_str!("../../pki-profiles/kubeconfigs.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaRow {
    pub id: String,
    pub file: String,
    pub cn: String,
    pub about: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Usage {
    #[serde(rename = "server")]
    Server,
    #[serde(rename = "client")]
    Client,
    #[serde(rename = "server+client")]
    ServerClient,
}

impl Usage {
    pub fn server(self) -> bool {
        matches!(self, Usage::Server | Usage::ServerClient)
    }
    pub fn client(self) -> bool {
        matches!(self, Usage::Client | Usage::ServerClient)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SanSource {
    Host,
    Endpoint,
    Loopback,
    Localhost,
    ServiceIp,
    KubernetesService,
    MetricsServerService,
    Extra,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    Cluster,
    Etcd,
    Master,
    Node,
    Lb,
}

impl Per {
    pub fn role(self) -> Option<Role> {
        match self {
            Per::Cluster => None,
            Per::Etcd => Some(Role::Etcd),
            Per::Master => Some(Role::Master),
            Per::Node => Some(Role::Node),
            Per::Lb => Some(Role::Lb),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertRow {
    pub id: String,
    pub file: String,
    pub per: Per,
    pub ca: String,
    pub cn: String,
    #[serde(default)]
    pub o: Vec<String>,
    pub usage: Usage,
    #[serde(default)]
    pub sans: Vec<SanSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeconfigRow {
    pub id: String,
    pub file: String,
    pub user: String,
    pub cert: Option<String>,
    pub token: Option<String>,
    pub server: String,
    /// Pushed to every node as it is (its `server:` included): moved by `repoint-nodes`.
    #[serde(default)]
    pub nodes: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertsFile {
    ca: Vec<CaRow>,
    cert: Vec<CertRow>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubeconfigsFile {
    kubeconfig: Vec<KubeconfigRow>,
}

/// The whole table.
#[derive(Debug, Clone)]
pub struct Profile {
    pub cas: Vec<CaRow>,
    pub certs: Vec<CertRow>,
    pub kubeconfigs: Vec<KubeconfigRow>,
}

impl Profile {
    /// The table built into this binary. It is checked by tests, so parsing cannot fail at run time.
    pub fn builtin() -> Profile {
        Profile::parse(CERTS_TOML, KUBECONFIGS_TOML).expect("pki-profiles/ is valid (checked by tests)")
    }

    pub fn parse(certs: &str, kubeconfigs: &str) -> Result<Profile, String> {
        let c: CertsFile = toml::from_str(certs).map_err(|e| format!("certs.toml: {e}"))?;
        let k: KubeconfigsFile = toml::from_str(kubeconfigs).map_err(|e| format!("kubeconfigs.toml: {e}"))?;
        let p = Profile { cas: c.ca, certs: c.cert, kubeconfigs: k.kubeconfig };
        p.check()?;
        Ok(p)
    }

    pub fn ca(&self, id: &str) -> Option<&CaRow> {
        self.cas.iter().find(|c| c.id == id)
    }
    pub fn cert(&self, id: &str) -> Option<&CertRow> {
        self.certs.iter().find(|c| c.id == id)
    }

    /// Consistency of the table itself.
    pub fn check(&self) -> Result<(), String> {
        let mut ids = std::collections::HashSet::new();
        let mut files = std::collections::HashSet::new();
        for ca in &self.cas {
            if !ids.insert(ca.id.as_str()) {
                return Err(format!("duplicate id {:?}", ca.id));
            }
            if !files.insert(ca.file.as_str()) {
                return Err(format!("two rows write {:?}", ca.file));
            }
        }
        for c in &self.certs {
            if !ids.insert(c.id.as_str()) {
                return Err(format!("duplicate id {:?}", c.id));
            }
            if !files.insert(c.file.as_str()) {
                return Err(format!("two rows write {:?}", c.file));
            }
            if self.ca(&c.ca).is_none() {
                return Err(format!("{:?} names CA {:?}, which is not a [[ca]] row", c.id, c.ca));
            }
            let per_host = c.per != Per::Cluster;
            if per_host != c.file.contains("{host}") {
                return Err(format!("{:?}: a per-host row must have {{host}} in its file, and only such a row", c.id));
            }
            if c.usage.server() && c.sans.is_empty() {
                return Err(format!("{:?} is a serving certificate without SANs", c.id));
            }
            if !per_host && c.sans.contains(&SanSource::Host) {
                return Err(format!("{:?} takes host SANs but is not per host", c.id));
            }
        }
        for k in &self.kubeconfigs {
            if !files.insert(k.file.as_str()) {
                return Err(format!("two rows write {:?}", k.file));
            }
            match (&k.cert, &k.token) {
                (Some(cert), None) => {
                    let row = self.cert(cert).ok_or_else(|| format!("kubeconfig {:?} names unknown cert {cert:?}", k.id))?;
                    if row.per != Per::Cluster || !row.usage.client() {
                        return Err(format!("kubeconfig {:?}: {cert:?} is not a cluster-wide client certificate", k.id));
                    }
                }
                (None, Some(t)) if t == "bootstrap" => {}
                _ => return Err(format!("kubeconfig {:?} needs exactly one of cert or token = \"bootstrap\"", k.id)),
            }
            if k.server != "endpoint" {
                return Err(format!("kubeconfig {:?}: unknown server {:?}", k.id, k.server));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_is_consistent() {
        let p = Profile::parse(CERTS_TOML, KUBECONFIGS_TOML).unwrap();
        assert_eq!(p.cas.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["ca", "etcd-ca", "front-proxy-ca"]);
        // every client a binary install needs is in the table
        for id in [
            "apiserver", "etcd-server", "etcd-peer", "admin", "super-admin", "controller-manager", "scheduler",
            "kube-proxy", "flannel", "apiserver-kubelet-client", "apiserver-etcd-client", "etcd-healthcheck-client",
            "front-proxy-client",
        ] {
            assert!(p.cert(id).is_some(), "{id} missing from certs.toml");
        }
        assert_eq!(p.cert("apiserver-etcd-client").unwrap().ca, "etcd-ca");
        assert_eq!(p.cert("front-proxy-client").unwrap().ca, "front-proxy-ca");
        assert_eq!(p.cert("super-admin").unwrap().o, ["system:masters"]);
    }

    #[test]
    fn table_check_catches_mistakes() {
        let bad_ca = CERTS_TOML.replace("ca = \"front-proxy-ca\"", "ca = \"nope\"");
        assert!(Profile::parse(&bad_ca, KUBECONFIGS_TOML).unwrap_err().contains("\"nope\""));
        let dup_file = CERTS_TOML.replace("file = \"scheduler\"", "file = \"controller-manager\"");
        assert!(Profile::parse(&dup_file, KUBECONFIGS_TOML).unwrap_err().contains("two rows write"));
        let no_host = CERTS_TOML.replace("file = \"hosts/{host}/kubelet\"", "file = \"kubelet\"");
        assert!(Profile::parse(&no_host, KUBECONFIGS_TOML).is_err());
        let bad_kc = KUBECONFIGS_TOML.replace("cert = \"admin\"", "cert = \"apiserver\"");
        assert!(Profile::parse(CERTS_TOML, &bad_kc).unwrap_err().contains("not a cluster-wide client"));
        let unknown_field = CERTS_TOML.replace("usage = \"client\"\n", "usage = \"client\"\ncolour = 1\n");
        assert!(Profile::parse(&unknown_field, KUBECONFIGS_TOML).is_err());
    }
}
