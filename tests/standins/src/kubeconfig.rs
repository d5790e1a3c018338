//! Kubeconfig files, as client-go reads them: the current context's cluster (server,
//! certificate-authority[-data]) and user (client-certificate[-data] + client-key[-data], token,
//! tokenFile). Relative file paths are relative to the kubeconfig's directory.

use base64::Engine;
use serde_json::Value;

use crate::net::{Auth, Client};

pub struct Kubeconfig {
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub auth: Auth,
}

fn b64(v: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD.decode(v.trim()).map_err(|e| format!("bad base64: {e}"))
}

pub fn load(path: &str) -> Result<Kubeconfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read kubeconfig {path}: {e}"))?;
    let doc: Value = serde_yaml_ng::from_str(&text).map_err(|e| format!("kubeconfig {path}: {e}"))?;
    let dir = std::path::Path::new(path).parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let file = |p: &str| -> Result<Vec<u8>, String> {
        let full = if p.starts_with('/') { std::path::PathBuf::from(p) } else { dir.join(p) };
        std::fs::read(&full).map_err(|e| format!("kubeconfig {path}: cannot read {}: {e}", full.display()))
    };
    let named = |list: &str, name: &str, inner: &str| -> Option<Value> {
        doc.get(list)?.as_array()?.iter().find(|e| e.get("name").and_then(Value::as_str) == Some(name)).and_then(|e| e.get(inner)).cloned()
    };
    let current = doc.get("current-context").and_then(Value::as_str).ok_or_else(|| format!("kubeconfig {path}: no current-context"))?;
    let ctx = named("contexts", current, "context").ok_or_else(|| format!("kubeconfig {path}: context {current:?} not found"))?;
    let cluster_name = ctx.get("cluster").and_then(Value::as_str).unwrap_or("");
    let user_name = ctx.get("user").and_then(Value::as_str).unwrap_or("");
    let cluster = named("clusters", cluster_name, "cluster").ok_or_else(|| format!("kubeconfig {path}: cluster {cluster_name:?} not found"))?;
    let user = named("users", user_name, "user").unwrap_or(Value::Null);
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let server = s(&cluster, "server").ok_or_else(|| format!("kubeconfig {path}: cluster {cluster_name:?} has no server"))?;
    let ca_pem = match (s(&cluster, "certificate-authority-data"), s(&cluster, "certificate-authority")) {
        (Some(d), _) => b64(&d)?,
        (None, Some(f)) => file(&f)?,
        _ => return Err(format!("kubeconfig {path}: cluster {cluster_name:?} has no certificate authority (the stand-ins never skip TLS verification)")),
    };
    let cert = match (s(&user, "client-certificate-data"), s(&user, "client-certificate")) {
        (Some(d), _) => Some(b64(&d)?),
        (None, Some(f)) => Some(file(&f)?),
        _ => None,
    };
    let key = match (s(&user, "client-key-data"), s(&user, "client-key")) {
        (Some(d), _) => Some(b64(&d)?),
        (None, Some(f)) => Some(file(&f)?),
        _ => None,
    };
    let token = match (s(&user, "token"), s(&user, "tokenFile")) {
        (Some(t), _) => Some(t),
        (None, Some(f)) => Some(String::from_utf8_lossy(&file(&f)?).trim().to_string()),
        _ => None,
    };
    let auth = match (cert, key, token) {
        (Some(c), Some(k), _) => Auth::Cert { cert_pem: c, key_pem: k },
        (_, _, Some(t)) => Auth::Token(t),
        _ => Auth::None,
    };
    Ok(Kubeconfig { server, ca_pem, auth })
}

impl Kubeconfig {
    pub fn client(&self) -> Result<Client, String> {
        Client::new(&self.server, &self.ca_pem, self.auth.clone())
    }
}

/// A client from a kubeconfig, retried until it loads: upstream components also keep retrying.
pub fn client_or_retry(path: &str) -> Client {
    loop {
        match load(path).and_then(|k| k.client()) {
            Ok(c) => return c,
            Err(e) => {
                crate::log!("{e}; retrying");
                crate::util::sleep(std::time::Duration::from_secs(2));
            }
        }
    }
}
