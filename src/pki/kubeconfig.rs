//! Kubeconfig files: one serde model, one renderer, and a parser for reading them back.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub clusters: Vec<NamedCluster>,
    pub contexts: Vec<NamedContext>,
    pub current_context: String,
    #[serde(default)]
    pub preferences: serde_yaml_ng::Mapping,
    pub users: Vec<NamedUser>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: ClusterEntry,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterEntry {
    pub certificate_authority_data: Option<String>,
    pub server: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: ContextEntry,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextEntry {
    pub cluster: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: UserEntry,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UserEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// How the user authenticates.
pub enum Credential<'a> {
    /// PEM certificate and PEM private key.
    Cert { cert_pem: &'a str, key_pem: &'a str },
    Token(&'a str),
}

/// Build a single-cluster, single-user kubeconfig.
pub fn build(cluster_name: &str, server: &str, ca_pem: &str, user: &str, cred: Credential<'_>) -> Kubeconfig {
    let ctx = format!("{user}@{cluster_name}");
    let user_entry = match cred {
        Credential::Cert { cert_pem, key_pem } => UserEntry {
            client_certificate_data: Some(B64.encode(cert_pem)),
            client_key_data: Some(B64.encode(key_pem)),
            token: None,
        },
        Credential::Token(t) => UserEntry { token: Some(t.to_string()), ..Default::default() },
    };
    Kubeconfig {
        api_version: "v1".into(),
        kind: "Config".into(),
        clusters: vec![NamedCluster {
            name: cluster_name.into(),
            cluster: ClusterEntry { certificate_authority_data: Some(B64.encode(ca_pem)), server: server.into() },
        }],
        contexts: vec![NamedContext { name: ctx.clone(), context: ContextEntry { cluster: cluster_name.into(), user: user.into() } }],
        current_context: ctx,
        preferences: Default::default(),
        users: vec![NamedUser { name: user.into(), user: user_entry }],
    }
}

pub fn render(k: &Kubeconfig) -> String {
    serde_yaml_ng::to_string(k).expect("a kubeconfig always serializes")
}

pub fn parse(text: &str) -> Result<Kubeconfig, serde_yaml_ng::Error> {
    serde_yaml_ng::from_str(text)
}

/// Decode a `*-data` field back to its PEM text.
pub fn decode_data(b64: &str) -> Option<String> {
    B64.decode(b64.trim()).ok().and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses_back() {
        let k = build("c1", "https://192.168.0.88:6443", "CA PEM", "kubelet-bootstrap", Credential::Token("abcdef.0123456789abcdef"));
        let text = render(&k);
        assert!(text.contains("server: https://192.168.0.88:6443"), "{text}");
        assert!(text.contains("current-context: kubelet-bootstrap@c1"));
        assert_eq!(parse(&text).unwrap(), k);
    }
}
