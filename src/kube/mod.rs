//! A Kubernetes API client over any byte stream, with mutual TLS.
//!
//! kbin reaches the apiservers the way it reaches etcd: through the SSH connection to a master (a
//! direct-tcpip channel, see [`Endpoint::through`]), so it works behind a bastion and needs no
//! kubectl anywhere. An [`Endpoint`] dials a fresh stream for every request (requests are sent
//! with `Connection: close`); [`Client`] holds the identity (CA and client certificate).
//!
//! - [`resources`]: the kinds kbin can apply and the URL of each object.
//! - [`nodes`]: Node and Lease state read from the API.
//! - [`manifests`]: the objects kbin applies to every cluster (`manifests/`), rendered and applied.
//! - [`masters`]: the apiserver endpoints of the masters and the first one that is ready.
//! - [`drain`]: cordon, the pods on a node, their eviction, and deleting the Node.

pub mod addons;
pub mod drain;
pub mod manifests;
pub mod masters;
pub mod nodes;
pub mod resources;
pub mod secrets;

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::exit::Reportable;
use crate::host::{HostError, Remote, Tunnel};
use crate::tls::{self, Identity, TlsError};

pub use nodes::NodeStatus;
pub use resources::ObjectRef;

/// The media type of a server-side apply.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";
/// How long a direct TCP connection may take to open, and a read or write to progress.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const TCP_IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a response body that is not a `Status` object goes into a message.
const BODY_EXCERPT: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot read {}", path.display())]
    Identity {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unusable client identity for the apiserver")]
    Material(#[source] TlsError),
    #[error("cannot reach the apiserver at {server}")]
    Dial {
        server: String,
        /// Dialed from this machine (`--server`) rather than through a host's SSH connection.
        direct: bool,
        #[source]
        source: Box<HostError>,
    },
    #[error("{method} {path} on the apiserver at {server} failed")]
    Transport {
        server: String,
        /// The name verified in the apiserver's certificate.
        name: String,
        method: String,
        path: String,
        #[source]
        source: Box<TlsError>,
    },
    #[error("the apiserver at {server} answered {method} {path} with HTTP {status}{}: {message}", if reason.is_empty() { String::new() } else { format!(" {reason}") })]
    Status { server: String, method: String, path: String, status: u16, reason: String, message: String },
    #[error("the apiserver at {server} answered {path} with unexpected JSON: {message}")]
    Json { server: String, path: String, message: String },
    #[error("{object}: kind {kind} of apiVersion {api_version} is not one kbin can apply")]
    UnknownKind { object: String, api_version: String, kind: String },
    #[error("{object}: {message}")]
    Invalid { object: String, message: String },
    #[error("bad apiserver URL {url:?}: {message}")]
    Url { url: String, message: String },
}

impl KubeError {
    /// The HTTP status of a refused request.
    pub fn status(&self) -> Option<u16> {
        match self {
            KubeError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl Reportable for KubeError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            KubeError::Identity { .. } => "run `kbin pki init` to issue the certificates and keys kbin uses".into(),
            KubeError::Material(_) => "run `kbin pki check`; a damaged file can be re-issued with `kbin pki renew`".into(),
            KubeError::Dial { direct: true, .. } => {
                "check the address and port given with --server, that kube-apiserver listens there, and that no firewall blocks the port".into()
            }
            KubeError::Dial { source, .. } => match source.root() {
                HostError::Ssh { op, .. } if op.starts_with("open a tunnel") => {
                    "check that kube-apiserver runs on that master (`systemctl status kube-apiserver`) and listens on apiserver.port".into()
                }
                e => return e.hint(),
            },
            KubeError::Transport { name, .. } => format!(
                "check that the apiserver's serving certificate is signed by pki/ca.crt and names {name} (`kbin pki check`); kbin always verifies it"
            ),
            KubeError::Status { status: 401, .. } => {
                "the apiserver does not accept kbin's client certificate: its --client-ca-file must be pki/ca.crt (`kbin pki check`)".into()
            }
            KubeError::Status { status: 403, .. } => "the client identity lacks the RBAC permission; kbin applies its manifests as super-admin (system:masters)".into(),
            KubeError::Status { status: 404, .. } => "the object, or the namespace it goes into, does not exist".into(),
            KubeError::Status { status: 409, .. } => "another client changed the object at the same time: run the command again".into(),
            KubeError::Status { status: 422, .. } => {
                "the change touches a field that cannot change (a binding's roleRef, a Secret's type): delete the live object, then apply again".into()
            }
            KubeError::Status { status: 500.., .. } => "the apiserver is unhealthy; `kbin etcd status` shows whether its etcd cluster is".into(),
            KubeError::Status { .. } | KubeError::Json { .. } => return None,
            KubeError::UnknownKind { .. } => format!("kinds kbin can apply: {}", resources::known_kinds()),
            KubeError::Invalid { .. } => "every object needs apiVersion, kind, metadata.name, and metadata.namespace when its kind is namespaced".into(),
            KubeError::Url { .. } => "give the apiserver as https://ADDRESS:PORT (ADDRESS must be in its certificate)".into(),
        })
    }
}


/// How to open a stream to the apiserver, once per request.
type Dial = Box<dyn Fn() -> Result<Box<dyn Tunnel>, HostError> + Send + Sync>;

/// One apiserver: the name its certificate must carry and how to open a stream to it.
pub struct Endpoint {
    /// The name verified in the apiserver's serving certificate (an address or DNS name).
    pub server_name: String,
    /// How messages name it: `master1 (192.168.0.11:6443)`, or `192.168.0.11:6443` when dialed
    /// directly.
    pub label: String,
    direct: bool,
    dial: Dial,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({})", self.label)
    }
}

/// `addr:port`, bracketing IPv6 literals.
fn host_port(addr: &str, port: u16) -> String {
    if addr.parse::<std::net::Ipv6Addr>().is_ok() { format!("[{addr}]:{port}") } else { format!("{addr}:{port}") }
}

/// `HOST`, `HOST:PORT`, `[IPV6]:PORT` or a bare IPv6 address, with `default_port` when none
/// is given.
pub fn split_host_port(s: &str, default_port: u16) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed [ in an IPv6 address")?;
        (h, after.strip_prefix(':'))
    } else if s.matches(':').count() > 1 {
        (s, None) // a bare IPv6 address
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no address");
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or("the port is not a number from 1 to 65535")?,
    };
    Ok((host.to_string(), port))
}

impl Endpoint {
    /// `addr:port` as seen from `remote`, through its SSH connection. `addr` must be in the
    /// apiserver's certificate (a master's own address is).
    pub fn through(remote: Arc<dyn Remote>, addr: &str, port: u16) -> Endpoint {
        let label = format!("{} ({})", remote.name(), host_port(addr, port));
        let a = addr.to_string();
        Endpoint { server_name: addr.to_string(), label, direct: false, dial: Box::new(move || remote.open_tcp(&a, port)) }
    }

    /// `addr:port` over plain TCP from this machine (an operator who can reach the apiserver, or
    /// a test). `addr` may be a DNS name; it must be in the apiserver's certificate.
    pub fn tcp(addr: &str, port: u16) -> Endpoint {
        let label = host_port(addr, port);
        let (a, l) = (addr.to_string(), label.clone());
        let dial: Dial = Box::new(move || {
            let fail = |source: io::Error| HostError::Connect { host: "this machine".into(), addr: l.clone(), source };
            let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
            for sa in (a.as_str(), port).to_socket_addrs().map_err(fail)? {
                match TcpStream::connect_timeout(&sa, TCP_CONNECT_TIMEOUT) {
                    Ok(s) => {
                        s.set_read_timeout(Some(TCP_IO_TIMEOUT)).map_err(fail)?;
                        s.set_write_timeout(Some(TCP_IO_TIMEOUT)).map_err(fail)?;
                        return Ok(Box::new(s) as Box<dyn Tunnel>);
                    }
                    Err(e) => last = e,
                }
            }
            Err(fail(last))
        });
        Endpoint { server_name: addr.to_string(), label, direct: true, dial }
    }

    /// An `https://ADDRESS[:PORT]` URL (port 6443 when not given) reached over plain TCP.
    pub fn from_url(url: &str) -> Result<Endpoint, KubeError> {
        let bad = |message: &str| KubeError::Url { url: url.to_string(), message: message.to_string() };
        let rest = url.strip_prefix("https://").ok_or_else(|| bad("it must start with https://"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(bad("it must not have a path"));
        }
        let (host, port) = split_host_port(rest, 6443).map_err(bad)?;
        Ok(Endpoint::tcp(&host, port))
    }

    fn open(&self) -> Result<Box<dyn Tunnel>, KubeError> {
        (self.dial)().map_err(|e| KubeError::Dial { server: self.label.clone(), direct: self.direct, source: Box::new(e) })
    }
}

/// What a server-side apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    /// The object did not exist (HTTP 201).
    Created,
    /// The object existed and is as applied: its resourceVersion did not move.
    Unchanged,
    /// The object existed and was changed.
    Configured,
}

impl ApplyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Unchanged => "unchanged",
            ApplyOutcome::Configured => "configured",
        }
    }
}

/// Classify an apply from its HTTP status and the resourceVersion before (from a GET; `None`
/// when the object did not exist) and after (from the response).
pub fn classify(status: u16, before: Option<&str>, after: Option<&str>) -> ApplyOutcome {
    match (status, before) {
        (201, _) => ApplyOutcome::Created,
        (_, Some(b)) if Some(b) == after => ApplyOutcome::Unchanged,
        _ => ApplyOutcome::Configured,
    }
}

fn resource_version(v: &Value) -> Option<String> {
    v.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string)
}

/// Percent-encode a query value (everything but RFC 3986's unreserved characters).
fn query_value(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A client for one cluster: the cluster CA and a client certificate it signed.
#[derive(Clone)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
}

impl Client {
    pub fn new(id: &Identity) -> Result<Client, KubeError> {
        Ok(Client { config: tls::client_config(id).map_err(KubeError::Material)? })
    }

    /// The identity in a PKI directory: `ca.crt` and `<name>.crt` / `<name>.key` (for example
    /// `super-admin`, the break-glass `system:masters` certificate kbin applies manifests with).
    pub fn from_pki(pki_dir: &Path, name: &str) -> Result<Client, KubeError> {
        let read = |rel: &str| {
            let path = pki_dir.join(rel);
            std::fs::read_to_string(&path).map_err(|source| KubeError::Identity { path, source })
        };
        Client::new(&Identity { ca_pem: read("ca.crt")?, client: Some((read(&format!("{name}.crt"))?, read(&format!("{name}.key"))?)) })
    }

    /// One request on a fresh stream; any HTTP status is returned.
    fn send(&self, ep: &Endpoint, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<tls::Response, KubeError> {
        let stream = ep.open()?;
        let (ct, bytes) = match body {
            Some((ct, b)) => (ct, Some(b)),
            None => ("application/json", None),
        };
        tls::request(stream, self.config.clone(), &ep.server_name, method, path, ct, bytes).map_err(|source| KubeError::Transport {
            server: ep.label.clone(),
            name: ep.server_name.clone(),
            method: method.into(),
            path: path.into(),
            source: Box::new(source),
        })
    }

    /// `/healthz`, `/readyz` or `/livez` (with `?verbose` if wanted): the HTTP status and the
    /// body (`ok` when healthy). Not an error when unhealthy: that is the answer.
    pub fn healthz(&self, ep: &Endpoint, path: &str) -> Result<(u16, String), KubeError> {
        let r = self.send(ep, "GET", path, None)?;
        Ok((r.status, r.text().trim().to_string()))
    }

    /// The apiserver's `gitVersion` (`/version`), such as `v1.34.2`.
    pub fn version(&self, ep: &Endpoint) -> Result<String, KubeError> {
        let v = self.get(ep, "/version")?;
        v.get("gitVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| KubeError::Json { server: ep.label.clone(), path: "/version".into(), message: "no gitVersion".into() })
    }

    /// `GET path` as JSON; anything but 200 is an error.
    pub fn get(&self, ep: &Endpoint, path: &str) -> Result<Value, KubeError> {
        let r = self.send(ep, "GET", path, None)?;
        match r.status {
            200 => json(ep, path, &r),
            _ => Err(status_error(ep, "GET", path, &r)),
        }
    }

    /// `GET path` as JSON, `None` on 404.
    pub fn get_opt(&self, ep: &Endpoint, path: &str) -> Result<Option<Value>, KubeError> {
        match self.get(ep, path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Server-side apply of `obj` (`PATCH` with `application/apply-patch+yaml`,
    /// `?fieldManager=<field_manager>&force=true`) to the URL its apiVersion, kind, namespace and
    /// name give. A GET first learns whether it exists and its resourceVersion, which tells
    /// [`ApplyOutcome::Unchanged`] from [`ApplyOutcome::Configured`].
    pub fn apply(&self, ep: &Endpoint, obj: &Value, field_manager: &str) -> Result<ApplyOutcome, KubeError> {
        let target = ObjectRef::of(obj)?;
        let path = target.path();
        let live = self.get_opt(ep, &path)?;
        // what the apply would set is already there: it would change nothing, so skip it
        if live.as_ref().is_some_and(|l| contains(l, obj)) {
            return Ok(ApplyOutcome::Unchanged);
        }
        let before = live.as_ref().and_then(resource_version);
        let url = format!("{path}?fieldManager={}&force=true", query_value(field_manager));
        let body = serde_json::to_vec(obj).expect("a JSON value serializes");
        let r = self.send(ep, "PATCH", &url, Some((APPLY_PATCH, &body)))?;
        if !matches!(r.status, 200 | 201) {
            return Err(status_error(ep, "PATCH", &path, &r));
        }
        let after = json(ep, &path, &r)?;
        Ok(classify(r.status, before.as_deref(), resource_version(&after).as_deref()))
    }

    /// Every Node with its Ready condition, heartbeat, version, address and pod CIDR.
    pub fn nodes(&self, ep: &Endpoint) -> Result<Vec<NodeStatus>, KubeError> {
        let p = "/api/v1/nodes";
        let v = self.get(ep, p)?;
        nodes::node_list(&v).map_err(|message| KubeError::Json { server: ep.label.clone(), path: p.into(), message })
    }

    /// `spec.renewTime` of `node`'s Lease in `kube-node-lease`: the kubelet renews it every few
    /// seconds, so it is the liveness signal (the Node's status is posted far less often).
    /// `None` when the node has no Lease (yet).
    pub fn lease_renew_time(&self, ep: &Endpoint, node: &str) -> Result<Option<String>, KubeError> {
        let lease = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": node, "namespace": "kube-node-lease"}});
        let path = ObjectRef::of(&lease)?.path();
        Ok(self.get_opt(ep, &path)?.as_ref().and_then(nodes::lease_renew_time))
    }
}

/// Whether `live` already has every field of `want` with the same value (objects recursively,
/// lists item by item). Server-side apply of `want` onto such an object changes nothing.
pub fn contains(live: &Value, want: &Value) -> bool {
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => w.iter().all(|(k, v)| l.get(k).is_some_and(|lv| contains(lv, v))),
        (Value::Array(l), Value::Array(w)) => l.len() == w.len() && l.iter().zip(w).all(|(a, b)| contains(a, b)),
        (l, w) => l == w,
    }
}

pub use crate::exit::chain;

fn json(ep: &Endpoint, path: &str, r: &tls::Response) -> Result<Value, KubeError> {
    serde_json::from_slice(&r.body).map_err(|e| KubeError::Json { server: ep.label.clone(), path: path.into(), message: e.to_string() })
}

/// The error for a refused request: the `Status` object's reason and message when the body is
/// one, else the start of the body.
fn status_error(ep: &Endpoint, method: &str, path: &str, r: &tls::Response) -> KubeError {
    let status_obj = serde_json::from_slice::<Value>(&r.body).ok().filter(|v| v.get("kind").and_then(Value::as_str) == Some("Status"));
    let (reason, message) = match status_obj {
        Some(v) => (
            v.get("reason").and_then(Value::as_str).unwrap_or("").to_string(),
            v.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
        ),
        None => {
            let text = r.text();
            let text = text.trim();
            let cut = text.char_indices().nth(BODY_EXCERPT).map(|(i, _)| i).unwrap_or(text.len());
            (String::new(), if cut < text.len() { format!("{}…", &text[..cut]) } else { text.to_string() })
        }
    };
    KubeError::Status { server: ep.label.clone(), method: method.into(), path: path.into(), status: r.status, reason, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_that_already_has_every_applied_field_needs_no_apply() {
        let live = serde_json::json!({"metadata": {"name": "x", "resourceVersion": "7", "uid": "u"}, "data": {"a": "1", "b": "2"}, "rules": [{"verbs": ["get"], "x": 1}]});
        assert!(contains(&live, &serde_json::json!({"metadata": {"name": "x"}, "data": {"a": "1"}, "rules": [{"verbs": ["get"]}]})));
        assert!(!contains(&live, &serde_json::json!({"data": {"a": "2"}})), "a changed value");
        assert!(!contains(&live, &serde_json::json!({"data": {"c": "3"}})), "a new field");
        assert!(!contains(&live, &serde_json::json!({"rules": [{"verbs": ["get"]}, {"verbs": ["list"]}]})), "a list of another length");
        assert!(!contains(&live, &serde_json::json!({"rules": [{"verbs": ["get", "list"]}]})), "a list item that differs");
    }

    #[test]
    fn apply_outcomes_from_status_and_resource_versions() {
        assert_eq!(classify(201, None, Some("7")), ApplyOutcome::Created);
        assert_eq!(classify(200, Some("7"), Some("7")), ApplyOutcome::Unchanged);
        assert_eq!(classify(200, Some("7"), Some("9")), ApplyOutcome::Configured);
        // appeared between the GET and the PATCH: changed by this apply as far as anyone knows
        assert_eq!(classify(200, None, Some("9")), ApplyOutcome::Configured);
        assert_eq!(classify(200, Some("7"), None), ApplyOutcome::Configured);
    }

    #[test]
    fn server_urls() {
        let e = Endpoint::from_url("https://10.0.0.1:6444").unwrap();
        assert_eq!((e.server_name.as_str(), e.label.as_str()), ("10.0.0.1", "10.0.0.1:6444"));
        let e = Endpoint::from_url("https://api.example.com/").unwrap();
        assert_eq!((e.server_name.as_str(), e.label.as_str()), ("api.example.com", "api.example.com:6443"));
        let e = Endpoint::from_url("https://[fd00::1]:6443").unwrap();
        assert_eq!((e.server_name.as_str(), e.label.as_str()), ("fd00::1", "[fd00::1]:6443"));
        for bad in ["http://10.0.0.1:6443", "10.0.0.1:6443", "https://10.0.0.1:x", "https://10.0.0.1:0", "https://:6443", "https://h/api", "https://[fd00::1"] {
            assert!(matches!(Endpoint::from_url(bad), Err(KubeError::Url { .. })), "{bad}");
        }
    }

    #[test]
    fn refused_requests_carry_the_status_message() {
        let ep = Endpoint::tcp("127.0.0.1", 1);
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"clusterroles.rbac.authorization.k8s.io \"x\" is forbidden: User \"u\" cannot patch","reason":"Forbidden","code":403}"#;
        let e = status_error(&ep, "PATCH", "/apis/rbac.authorization.k8s.io/v1/clusterroles/x", &tls::Response { status: 403, body: body.to_vec() });
        let text = e.to_string();
        assert!(text.contains("127.0.0.1:1") && text.contains("PATCH /apis/rbac.authorization.k8s.io/v1/clusterroles/x") && text.contains("HTTP 403 Forbidden"), "{text}");
        assert!(text.ends_with("User \"u\" cannot patch"), "{text}");
        assert!(e.hint().unwrap().contains("RBAC"));
        let long = "x".repeat(1000);
        let e = status_error(&ep, "GET", "/", &tls::Response { status: 502, body: long.into_bytes() });
        assert!(e.to_string().len() < 400, "a body that is not a Status is cut short");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("kbin"), "kbin");
        assert_eq!(query_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn a_closed_port_is_a_dial_error_naming_the_server() {
        // bind then drop: a port nobody listens on
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = Client { config: Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ) };
        let e = c.healthz(&Endpoint::tcp("127.0.0.1", port), "/readyz").unwrap_err();
        assert!(matches!(e, KubeError::Dial { direct: true, .. }), "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(e.hint().unwrap().contains("--server"));
    }
}
