//! What the manifest templates see: the cluster's name, the kubelet bootstrap token, the
//! add-ons and metrics-server's serving certificate, read from the cluster file and `pki/`.
//! Nothing secret is ever shown by `Debug`.

use std::fmt;
use std::path::Path;

use serde_json::{Value, json};

use super::ManifestError;
use crate::config::Cluster;
use crate::kube::addons::Addons;
use crate::pki::{self, profile::Profile};

/// The kubelet bootstrap token, `<id>.<secret>`. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    secret: String,
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken {{ id: {:?}, secret: <redacted> }}", self.id)
    }
}

impl BootstrapToken {
    /// Parse `[a-z0-9]{6}.[a-z0-9]{16}` (the format the bootstrap token authenticator accepts).
    /// The message never repeats the text.
    pub fn parse(text: &str) -> Result<BootstrapToken, String> {
        let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        match text.trim().split_once('.') {
            Some((id, secret)) if ok(id, 6) && ok(secret, 16) => Ok(BootstrapToken { id: id.into(), secret: secret.into() }),
            _ => Err("expected `<6 chars>.<16 chars>` of lowercase letters and digits".into()),
        }
    }

    /// `pki/bootstrap-token` of a PKI directory.
    pub fn read(pki_dir: &Path) -> Result<BootstrapToken, ManifestError> {
        let path = pki_dir.join(pki::BOOTSTRAP_TOKEN);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::TokenRead { path: path.clone(), source })?;
        BootstrapToken::parse(&text).map_err(|message| ManifestError::TokenBad { path, message })
    }
}

/// metrics-server's serving pair and the CA bundle the aggregation layer checks it against
/// (`pki/metrics-server.*`, the whole `pki/ca.crt`: old + new while the CA rotates). `Debug`
/// never shows the key.
#[derive(Clone)]
pub struct ServingTls {
    pub cert: String,
    pub key: String,
    pub ca_bundle: String,
}

impl fmt::Debug for ServingTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServingTls {{ cert: {} bytes, key: <redacted>, ca_bundle: {} bytes }}", self.cert.len(), self.ca_bundle.len())
    }
}

impl ServingTls {
    /// metrics-server's, from a PKI directory.
    pub fn metrics_server(pki_dir: &Path) -> Result<ServingTls, ManifestError> {
        let read = |f: &str| {
            let path = pki_dir.join(f);
            std::fs::read_to_string(&path).map_err(|source| ManifestError::PkiRead { path, source })
        };
        Ok(ServingTls { cert: read("metrics-server.crt")?, key: read("metrics-server.key")?, ca_bundle: read("ca.crt")? })
    }
}

/// Everything the templates see.
#[derive(Debug, Clone)]
pub struct Vars {
    pub cluster_name: String,
    pub token: BootstrapToken,
    pub addons: Addons,
    /// metrics-server's serving certificate, when the add-on is on.
    pub metrics_tls: Option<ServingTls>,
}


impl Vars {
    /// The cluster's variables: its name and the token in its PKI directory.
    pub fn for_cluster(cluster: &Cluster) -> Result<Vars, ManifestError> {
        let addons = Addons::of(cluster);
        let metrics_tls = match addons.metrics_server {
            Some(_) => Some(ServingTls::metrics_server(&cluster.pki_dir())?),
            None => None,
        };
        Ok(Vars { cluster_name: cluster.name.clone(), token: BootstrapToken::read(&cluster.pki_dir())?, addons, metrics_tls })
    }

    /// The template context. Subject names come from the certificate table, so the RBAC always
    /// names who the certificates say.
    pub(super) fn context(&self) -> Value {
        let profile = Profile::builtin();
        let cn = |id: &str| profile.cert(id).map(|c| c.cn.clone()).expect("the certificate table has this row (tested)");
        let admin_group = profile.cert("admin").and_then(|c| c.o.first().cloned()).expect("the admin certificate has an organisation (tested)");
        json!({
            "cluster": { "name": self.cluster_name },
            "token": { "id": self.token.id, "secret": self.token.secret },
            "users": { "apiserver_kubelet_client": cn("apiserver-kubelet-client"), "flannel": cn("flannel") },
            "groups": { "cluster_admins": admin_group },
            "addons": self.addons,
            "metrics_tls": self.metrics_tls.as_ref().map(|t| json!({ "cert": t.cert, "key": t.key, "ca_bundle": t.ca_bundle })),
        })
    }
}
