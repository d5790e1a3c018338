//! What a host holds, judged against `pki/`: each certificate kbin placed, the certificate part
//! of each kubeconfig (never its key or token), and the kubelet's own client certificate. Pure:
//! the text read from the host comes in, a verdict goes out (`kbin pki check --hosts`, `kbin
//! status`). Reading the hosts is `deploy::certs`.

use std::collections::HashMap;

use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

use super::kubeconfig;
use super::profile::Profile;

/// The kubelet's client certificate from TLS bootstrapping, in its `--cert-dir`. It holds the
/// certificate and its key: only the certificate block is ever read.
pub const KUBELET_CLIENT: &str = "kubelet-client-current.pem";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A PEM file: only its `CERTIFICATE` blocks are read.
    Certificate,
    /// A kubeconfig: only its `client-certificate-data` and `certificate-authority-data` lines.
    Kubeconfig,
}

/// One file to look at on a host.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// `apiserver`, `ca`, `kubeconfig/kube-proxy`, `kubelet-client-current`.
    pub name: String,
    /// Absolute path on the host.
    pub path: String,
    pub kind: Kind,
    /// The id of the CA that must have signed it.
    pub ca: String,
    /// The bytes kbin pushes there; `None` when kbin has no copy (the kubelet's own).
    #[serde(skip)]
    pub local: Option<Vec<u8>>,
    /// The name `kbin pki renew` re-issues it by; `None` for a CA and the kubelet's own.
    #[serde(skip)]
    pub renew: Option<String>,
}

impl Target {
    /// The target for a file pushed from `pki/<rel>` to `path` on `host`, when it is a
    /// certificate or a kubeconfig (keys, tokens and `sa.pub` are not).
    pub fn of_pki_file(profile: &Profile, host: &str, rel: &str, path: &str, content: &[u8]) -> Option<Target> {
        let (name, ca, kind, renew) = if let Some(c) = profile.cas.iter().find(|c| rel == format!("{}.crt", c.file)) {
            (c.id.clone(), c.id.clone(), Kind::Certificate, None)
        } else if let Some(c) = profile.certs.iter().find(|c| rel == format!("{}.crt", c.file.replace("{host}", host))) {
            let renew = if c.per == super::profile::Per::Cluster { c.id.clone() } else { format!("{}/{host}", c.id) };
            (c.id.clone(), c.ca.clone(), Kind::Certificate, Some(renew))
        } else if let Some(k) = profile.kubeconfigs.iter().find(|k| rel == k.file) {
            // a token kubeconfig carries no certificate of its own: its CA is what expires
            (format!("kubeconfig/{}", k.id), "ca".to_string(), Kind::Kubeconfig, k.cert.clone())
        } else {
            return None;
        };
        Some(Target { name, path: path.to_string(), kind, ca, local: Some(content.to_vec()), renew })
    }
    /// The kubelet's client certificate in `cert_dir`.
    pub fn kubelet_client(cert_dir: &str) -> Target {
        Target { name: "kubelet-client-current".into(), path: format!("{cert_dir}/{KUBELET_CLIENT}"), kind: Kind::Certificate, ca: "ca".into(), local: None, renew: None }
    }
}

/// What the host answered for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Missing,
    /// It exists but could not be read.
    Unreadable,
    /// The certificate blocks of a PEM file, or the certificate lines of a kubeconfig.
    Text(String),
}

/// The verdict on one file, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Missing,
    Unreadable,
    NotSignedByCa,
    Differs,
    Expired,
    Expiring,
    Ok,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Missing => "missing",
            Status::Unreadable => "unreadable",
            Status::NotSignedByCa => "not-signed-by-ca",
            Status::Differs => "differs",
            Status::Expired => "expired",
            Status::Expiring => "expiring",
            Status::Ok => "ok",
        }
    }
}

/// How the host's certificate compares with kbin's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Local {
    Same,
    Differs,
    NoLocalCopy,
    /// Nothing to compare (missing or unreadable on the host).
    Unknown,
}

/// One thing wrong with a file, and what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub status: Status,
    pub message: String,
    pub hint: String,
}

/// One file on one host as `pki check --hosts` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub name: String,
    pub path: String,
    pub kind: Kind,
    /// The worst finding, `ok` when there is none.
    pub status: Status,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub not_after: Option<String>,
    pub days_left: Option<i64>,
    pub local: Local,
    pub findings: Vec<Finding>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The DER of the first `CERTIFICATE` block in `text`.
fn first_cert(text: &str) -> Option<Vec<u8>> {
    pem::parse_many(text).ok()?.into_iter().find(|b| b.tag() == "CERTIFICATE").map(|b| b.into_contents())
}

/// The certificate a kubeconfig's lines carry (the client certificate, else, for a token
/// kubeconfig, the CA it trusts) and the CA it trusts, as DER.
fn kubeconfig_certs(client: Option<&str>, ca: Option<&str>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let der = |b64: Option<&str>| b64.and_then(kubeconfig::decode_data).and_then(|pem| first_cert(&pem));
    let ca = der(ca);
    (der(client).or_else(|| ca.clone()), ca)
}

/// `client-certificate-data` and `certificate-authority-data` from the lines a host sent.
fn kubeconfig_lines(text: &str) -> (Option<&str>, Option<&str>) {
    let field = |k: &str| text.lines().find_map(|l| l.trim().strip_prefix(k).map(|v| v.trim().trim_matches('"')));
    (field("client-certificate-data:"), field("certificate-authority-data:"))
}

/// The certificate of a local kubeconfig, as [`kubeconfig_lines`] would give it.
fn local_kubeconfig(bytes: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    match kubeconfig::parse(&String::from_utf8_lossy(bytes)) {
        Ok(k) => kubeconfig_certs(k.users.first().and_then(|u| u.user.client_certificate_data.as_deref()), k.clusters.first().and_then(|c| c.cluster.certificate_authority_data.as_deref())),
        Err(_) => (None, None),
    }
}

/// Whether `cert` is signed by the CA `ca_der` (its name and its signature).
fn signed_by(cert: &X509Certificate<'_>, ca_der: &[u8]) -> bool {
    match x509_parser::parse_x509_certificate(ca_der) {
        Ok((_, ca)) => cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok(),
        Err(_) => false,
    }
}

/// Judge what `host` holds for `t` at `now`. `cas` holds each local CA's DER by id.
pub fn judge(t: &Target, found: &Found, cas: &HashMap<String, Vec<u8>>, now: OffsetDateTime, warn_days: i64) -> FileCheck {
    let mut c = FileCheck { name: t.name.clone(), path: t.path.clone(), kind: t.kind, status: Status::Ok, subject: None, issuer: None, not_after: None, days_left: None, local: Local::Unknown, findings: Vec::new() };
    let kubelet = t.local.is_none();
    let push_hint = if kubelet {
        "the kubelet places it itself: check `journalctl -u kubelet` on the host".to_string()
    } else {
        "`kbin hosts push` places kbin's copy again (`--dry-run` first shows what changes)".to_string()
    };
    let add = |c: &mut FileCheck, status: Status, message: String, hint: String| {
        c.status = c.status.min(status);
        c.findings.push(Finding { status, message, hint });
    };
    let text = match found {
        Found::Missing => {
            let hint = if kubelet { "the kubelet has not bootstrapped on this node: check `journalctl -u kubelet` and `kubectl get csr`".into() } else { push_hint };
            add(&mut c, Status::Missing, "missing on the host".into(), hint);
            return c;
        }
        Found::Unreadable => {
            add(&mut c, Status::Unreadable, "exists but cannot be read".into(), "check the file's type and permissions on the host".into());
            return c;
        }
        Found::Text(text) => text,
    };
    let (der, ca_data, local) = match t.kind {
        Kind::Certificate => (first_cert(text), None, t.local.as_deref().map(|b| first_cert(&String::from_utf8_lossy(b)))),
        Kind::Kubeconfig => {
            let (client, ca) = kubeconfig_lines(text);
            let (der, ca_data) = kubeconfig_certs(client, ca);
            (der, Some(ca_data), t.local.as_deref().map(|b| local_kubeconfig(b).0))
        }
    };
    let Some(der) = der else {
        add(&mut c, Status::Unreadable, "holds no certificate".into(), push_hint);
        return c;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        add(&mut c, Status::Unreadable, "holds a certificate x509 cannot parse".into(), push_hint);
        return c;
    };
    let na = cert.validity().not_after.to_datetime();
    let left = (na - now).whole_days();
    c.subject = Some(cert.subject().to_string());
    c.issuer = Some(cert.issuer().to_string());
    c.not_after = Some(rfc3339(na));
    c.days_left = Some(left);
    // signed by the cluster's CA: its name and its signature, against the local CA certificate
    match cas.get(&t.ca) {
        Some(ca) if signed_by(&cert, ca) => {}
        Some(_) => add(&mut c, Status::NotSignedByCa, format!("is not signed by the {} CA in pki/ (issuer {})", t.ca, cert.issuer()), format!("it was not issued by this cluster; {push_hint}")),
        None => add(&mut c, Status::NotSignedByCa, format!("cannot be verified: the {} CA is missing from pki/", t.ca), "restore the CA in pki/".into()),
    }
    // the same as kbin's copy
    c.local = match local {
        None => Local::NoLocalCopy,
        Some(Some(l)) if l == der => Local::Same,
        Some(_) => {
            add(&mut c, Status::Differs, "differs from kbin's copy in pki/".into(), format!("the host holds another certificate; {push_hint}"));
            Local::Differs
        }
    };
    if let Some(ca_data) = ca_data
        && t.kind == Kind::Kubeconfig
        && ca_data.as_ref() != cas.get("ca")
    {
        add(&mut c, Status::Differs, "trusts a CA other than pki/ca.crt (certificate-authority-data)".into(), push_hint.clone());
    }
    // expiry
    let renew = match (&t.renew, kubelet) {
        (_, true) => "the kubelet renews it itself (rotateCertificates) once the controller-manager signs its CSR: check `journalctl -u kubelet` and `kubectl get csr`".to_string(),
        (Some(name), false) => format!("`kbin pki renew {name}` then `kbin hosts push`"),
        (None, false) => "a CA cannot be renewed in place; plan a CA rotation".to_string(),
    };
    if na <= now {
        add(&mut c, Status::Expired, format!("expired on {}", rfc3339(na)), renew);
    } else if left < warn_days {
        add(&mut c, Status::Expiring, format!("expires in {left} days ({}), within --warn-days {warn_days}", rfc3339(na)), renew);
    }
    c
}

/// Each local CA certificate's DER by id (a missing CA is left out: what it signed then fails
/// the signature check with a hint to restore it).
pub fn local_cas(cluster: &crate::config::Cluster) -> Result<HashMap<String, Vec<u8>>, super::PkiError> {
    let store = super::Store::new(cluster.pki_dir());
    let mut out = HashMap::new();
    for ca in &Profile::builtin().cas {
        let rel = format!("{}.crt", ca.file);
        if let Some(text) = store.read(&rel)? {
            out.insert(ca.id.clone(), super::pem_to_der(&text, &store.path(&rel))?);
        }
    }
    Ok(out)
}

/// Whether what a host sent for `t` still holds the certificate `der` anywhere: as a certificate
/// block of a PEM file (a leaf, or one CA of a trust bundle), or in a kubeconfig's
/// `certificate-authority-data` or `client-certificate-data`, or signed by it.
pub fn holds(t: &Target, found: &Found, der: &[u8]) -> bool {
    let Found::Text(text) = found else { return false };
    let pems: Vec<String> = match t.kind {
        Kind::Certificate => vec![text.clone()],
        Kind::Kubeconfig => {
            let (client, ca) = kubeconfig_lines(text);
            [client, ca].into_iter().flatten().filter_map(kubeconfig::decode_data).collect()
        }
    };
    pems.iter().flat_map(|p| pem::parse_many(p).unwrap_or_default()).filter(|b| b.tag() == "CERTIFICATE").any(|b| {
        let c = b.contents();
        c == der || x509_parser::parse_x509_certificate(c).is_ok_and(|(_, cert)| cert.subject() != cert.issuer() && signed_by(&cert, der))
    })
}
