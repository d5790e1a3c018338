//! Reading certificates back with x509-parser: `kbin pki inspect` and `kbin pki check`.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

use super::plan;
use super::profile::Profile;
use super::{PkiError, Store, cert_sans, keys, kubeconfig_problem, pem_to_der, san_problem};
use crate::config::Cluster;

/// What `pki inspect` shows of one certificate.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CertInfo {
    pub name: String,
    pub file: String,
    /// `ok`, or `missing` when the file does not exist.
    pub status: String,
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<String>,
    pub key: String,
    pub is_ca: bool,
    pub extended_key_usages: Vec<String>,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub days_left: i64,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn ekus(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Some(e)) = cert.extended_key_usage() {
        let e = e.value;
        if e.server_auth {
            out.push("serverAuth".to_string());
        }
        if e.client_auth {
            out.push("clientAuth".to_string());
        }
        if e.code_signing {
            out.push("codeSigning".to_string());
        }
        out.extend(e.other.iter().map(|o| o.to_id_string()));
    }
    out
}

/// Describe the certificate in `path` (PEM).
pub fn read_cert_info(name: &str, rel: &str, path: &Path) -> Result<CertInfo, PkiError> {
    let text = std::fs::read_to_string(path).map_err(|source| PkiError::Read { path: path.to_path_buf(), source })?;
    let der = pem_to_der(&text, path)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::BadFile { path: path.to_path_buf(), message: format!("not an X.509 certificate: {e}") })?;
    let not_after = cert.validity().not_after.to_datetime();
    Ok(CertInfo {
        name: name.to_string(),
        file: rel.to_string(),
        status: "ok".into(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans: cert_sans(&cert).iter().map(|s| s.to_string()).collect(),
        key: keys::describe_spki(cert.public_key()),
        is_ca: cert.is_ca(),
        extended_key_usages: ekus(&cert),
        serial: cert.raw_serial_as_string(),
        not_before: rfc3339(cert.validity().not_before.to_datetime()),
        not_after: rfc3339(not_after),
        days_left: (not_after - OffsetDateTime::now_utc()).whole_days(),
    })
}

/// Every certificate the cluster file implies, read from disk (missing ones are listed as such).
pub fn inspect(cluster: &Cluster) -> Result<Vec<CertInfo>, PkiError> {
    let profile = Profile::builtin();
    let store = Store::new(cluster.pki_dir());
    let mut out = Vec::new();
    for inst in plan::plan(cluster, &profile) {
        let rel = inst.cert_path();
        let path = store.path(&rel);
        if path.exists() {
            out.push(read_cert_info(&inst.name, &rel, &path)?);
        } else {
            out.push(CertInfo { name: inst.name.clone(), file: rel, status: "missing".into(), is_ca: inst.is_ca(), ..CertInfo::default() });
        }
    }
    Ok(out)
}

/// The kbin-issued leaves (not CAs) with fewer than `within_days` days left, by name (what
/// [`super::renew`] takes). The kubelet client certificates are not among them: the kubelets
/// renew those themselves.
pub fn expiring(cluster: &Cluster, within_days: u32) -> Result<Vec<CertInfo>, PkiError> {
    Ok(inspect(cluster)?.into_iter().filter(|c| !c.is_ca && c.status == "ok" && c.days_left < i64::from(within_days)).collect())
}

/// One thing `pki check` found wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub name: String,
    pub file: String,
    pub message: String,
    pub hint: String,
}

/// Check every certificate, key and kubeconfig against its CA, its key and the cluster file.
pub fn check(cluster: &Cluster, warn_days: i64) -> Result<Vec<Problem>, PkiError> {
    let profile = Profile::builtin();
    let store = Store::new(cluster.pki_dir());
    let instances = plan::plan(cluster, &profile);
    let mut problems = Vec::new();
    let mut push = |name: &str, file: String, message: String, hint: String| {
        problems.push(Problem { name: name.to_string(), file, message, hint });
    };
    let now = OffsetDateTime::now_utc();
    // the CAs' DER, by id, as they are read (CAs come first in the plan)
    let mut loaded: HashMap<String, Vec<u8>> = HashMap::new();
    for inst in &instances {
        let (crt, key) = (inst.cert_path(), inst.key_path());
        let Some(text) = store.read(&crt)? else {
            push(&inst.name, crt, "missing".into(), "run `kbin pki init`".into());
            continue;
        };
        let path = store.path(&crt);
        let der = match pem_to_der(&text, &path) {
            Ok(d) => d,
            Err(e) => {
                push(&inst.name, crt, e.to_string(), format!("re-issue it with `kbin pki renew {}`", inst.name));
                continue;
            }
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
            push(&inst.name, crt, "is not an X.509 certificate".into(), format!("re-issue it with `kbin pki renew {}`", inst.name));
            continue;
        };
        let renew_hint = if inst.is_ca() {
            "a CA cannot be renewed in place; plan a CA rotation".to_string()
        } else {
            format!("re-issue it with `kbin pki renew {}`", inst.name)
        };
        // key matches
        match store.read(&key)? {
            None => push(&inst.name, key.clone(), "private key missing".into(), "restore it from a backup".into()),
            Some(k) => match keys::load_pem(&k) {
                Ok(kp) if keys::matches_spki(&kp, cert.public_key().raw) => {}
                Ok(_) => push(&inst.name, key.clone(), format!("does not match {crt}"), renew_hint.clone()),
                Err(e) => push(&inst.name, key.clone(), format!("unusable private key: {e}"), renew_hint.clone()),
            },
        }
        // chain
        if inst.is_ca() {
            // what a verifier checks on a CA (the validity window is checked below for all)
            for f in super::cacheck::structure(&cert) {
                push(&inst.name, crt.clone(), f.to_string(), "certificates it signs are rejected; `kbin pki import` a CA that passes these checks into a new cluster directory".into());
            }
        } else if let Some(ca) = loaded.get(inst.ca_id()) {
            let (_, ca_cert) = x509_parser::parse_x509_certificate(ca).expect("parsed before");
            if cert.issuer() != ca_cert.subject() || cert.verify_signature(Some(ca_cert.public_key())).is_err() {
                push(&inst.name, crt.clone(), format!("is not signed by the {} CA", inst.ca_id()), renew_hint.clone());
            }
        } else {
            push(&inst.name, crt.clone(), format!("cannot be verified: the {} CA is missing or unreadable", inst.ca_id()), "restore the CA".into());
        }
        // SANs
        if !inst.is_ca()
            && let Some(p) = san_problem(&cert_sans(&cert), &inst.sans)
        {
            push(&inst.name, crt.clone(), p, renew_hint.clone());
        }
        // validity
        let (nb, na) = (cert.validity().not_before.to_datetime(), cert.validity().not_after.to_datetime());
        let left = (na - now).whole_days();
        if na <= now {
            push(&inst.name, crt.clone(), format!("expired on {}", rfc3339(na)), renew_hint.clone());
        } else if left < warn_days {
            push(&inst.name, crt.clone(), format!("expires in {left} days ({}), within --warn-days {warn_days}", rfc3339(na)), renew_hint.clone());
        }
        if nb > now {
            push(&inst.name, crt.clone(), format!("is not valid before {}", rfc3339(nb)), "check the operator machine's clock".into());
        }
        drop(cert);
        if inst.is_ca() {
            loaded.insert(inst.id.to_string(), der);
        }
    }
    // service-account keys
    match (store.read(super::SA_KEY)?, store.read(super::SA_PUB)?) {
        (Some(k), Some(p)) => match keys::load_pem(&k) {
            // during a key rotation sa.pub holds two keys, the signing one first
            Ok(kp) if super::rotate::public_keys(&p).first().map(|f| f.trim()) == super::rotate::public_keys(&kp.public_key_pem()).first().map(|f| f.trim()) => {}
            Ok(_) => push("sa", super::SA_PUB.into(), "does not match sa.key".into(), "restore the pair from a backup".into()),
            Err(e) => push("sa", super::SA_KEY.into(), format!("unusable private key: {e}"), "restore it from a backup".into()),
        },
        _ => push("sa", super::SA_KEY.into(), "service-account key pair missing".into(), "run `kbin pki init`".into()),
    }
    // kubeconfigs
    let token = store.read(super::BOOTSTRAP_TOKEN)?.map(|t| t.trim().to_string());
    let batch = super::Batch { store: &store, files: Vec::new() };
    for row in &profile.kubeconfigs {
        let kc = format!("kubeconfig/{}", row.id);
        match store.read(&row.file)? {
            None => push(&kc, row.file.clone(), "missing".into(), "run `kbin pki init`".into()),
            Some(existing) => {
                let expected = super::render_kubeconfig(cluster, &profile, row, &batch, token.as_deref().unwrap_or(""))?;
                if let Some((p, moved)) = kubeconfig_problem(&existing, &expected) {
                    push(&kc, row.file.clone(), p, super::kubeconfig_hint(row, moved));
                }
            }
        }
    }
    Ok(problems)
}
