//! Adopting an existing CA (for example one made with cfssl) as one of kbin's three CAs.

use std::path::Path;

use serde::Serialize;

use super::profile::Profile;
use super::{PkiError, Store, keys, pem_to_der};
use crate::config::Cluster;

#[derive(Debug, Serialize)]
pub struct ImportReport {
    pub ca: String,
    pub subject: String,
    pub key: String,
    pub not_after: String,
    pub written: Vec<String>,
}

/// Import `cert` + `key` as the CA with table id `ca_id` (`ca`, `etcd-ca`, `front-proxy-ca`).
/// Refuses if that CA exists, if the certificate is not a CA, if the key does not belong to it,
/// or if it has expired. The key is stored as PKCS#8 with mode 0600.
pub fn import(cluster: &Cluster, ca_id: &str, cert: &Path, key: &Path) -> Result<ImportReport, PkiError> {
    let profile = Profile::builtin();
    let row = profile.ca(ca_id).ok_or_else(|| PkiError::UnknownName {
        name: ca_id.to_string(),
        known: profile.cas.iter().map(|c| c.id.clone()).collect(),
    })?;
    let store = Store::new(cluster.pki_dir());
    let (crt_rel, key_rel) = (format!("{}.crt", row.file), format!("{}.key", row.file));
    for rel in [&crt_rel, &key_rel] {
        if store.exists(rel) {
            return Err(PkiError::CaExists { path: store.path(rel) });
        }
    }
    let bad = |path: &Path, message: String| PkiError::Import { path: path.to_path_buf(), message };
    let cert_text = std::fs::read_to_string(cert).map_err(|source| PkiError::Read { path: cert.to_path_buf(), source })?;
    let key_text = std::fs::read_to_string(key).map_err(|source| PkiError::Read { path: key.to_path_buf(), source })?;
    let der = pem_to_der(&cert_text, cert)?;
    let (_, x) = x509_parser::parse_x509_certificate(&der).map_err(|e| bad(cert, format!("not an X.509 certificate: {e}")))?;
    if !x.is_ca() {
        return Err(bad(cert, "is not a CA certificate (basicConstraints CA:FALSE or absent)".into()));
    }
    if x.verify_signature(None).is_err() {
        return Err(bad(cert, "is not self-signed: import the root CA, not an intermediate".into()));
    }
    let not_after = x.validity().not_after.to_datetime();
    if not_after <= time::OffsetDateTime::now_utc() {
        return Err(bad(cert, format!("expired on {not_after}")));
    }
    let kp = keys::load_pem(&key_text).map_err(|e| bad(key, e.to_string()))?;
    if !keys::matches_spki(&kp, x.public_key().raw) {
        return Err(bad(key, format!("is not the private key of {}", cert.display())));
    }
    let report = ImportReport {
        ca: ca_id.to_string(),
        subject: x.subject().to_string(),
        key: keys::describe_spki(x.public_key()),
        not_after: not_after.to_string(),
        written: vec![key_rel.clone(), crt_rel.clone()],
    };
    let files = [
        super::Pending::key(key_rel, kp.serialize_pem()),
        super::Pending::public(crt_rel, pem::encode(&pem::Pem::new("CERTIFICATE", der.clone()))),
    ];
    crate::fsutil::private_dir(&store.dir).map_err(|source| PkiError::Write { path: store.dir.clone(), source })?;
    store.write_new_files(&files)?;
    Ok(report)
}
