//! Adopting an existing CA (for example one made with cfssl) as one of kbin's three CAs.

use std::path::Path;

use rcgen::KeyPair;
use serde::Serialize;
use time::OffsetDateTime;

use super::profile::Profile;
use super::{PkiError, Store, cacheck, keys};
use crate::config::Cluster;

#[derive(Debug, Serialize)]
pub struct ImportReport {
    pub ca: String,
    pub subject: String,
    pub key: String,
    pub not_after: String,
    pub written: Vec<String>,
}

/// A CA certificate and its key that passed every check.
pub struct Material {
    pub der: Vec<u8>,
    pub key: KeyPair,
    pub subject: String,
    pub key_description: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Which of the two inputs a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Cert,
    Key,
    /// A valid key, but not the certificate's.
    OtherKey,
}

/// Why material was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub part: Part,
    pub message: String,
}

fn refused(part: Part, message: impl Into<String>) -> Refused {
    Refused { part, message: message.into() }
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.iter().position(|b| !b.is_ascii_whitespace()).is_some_and(|i| bytes[i..].starts_with(b"-----BEGIN"))
}

/// Check a CA certificate and its private key (each PEM or DER) the way a verifier would, at
/// `now`. Nothing is written.
pub fn check_material(cert: &[u8], key: &[u8], now: OffsetDateTime) -> Result<Material, Refused> {
    let der = if is_pem(cert) {
        let block = pem::parse(cert).map_err(|e| refused(Part::Cert, format!("not PEM: {e}")))?;
        if block.tag() != "CERTIFICATE" {
            return Err(refused(Part::Cert, format!("holds a {:?}, not a CERTIFICATE", block.tag())));
        }
        block.into_contents()
    } else {
        cert.to_vec()
    };
    let (rest, x) = x509_parser::parse_x509_certificate(&der).map_err(|e| refused(Part::Cert, format!("not an X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(refused(Part::Cert, format!("{} bytes follow the certificate", rest.len())));
    }
    let failed = cacheck::all(&x, now);
    if !failed.is_empty() {
        return Err(refused(Part::Cert, format!("is not a CA certificate verifiers accept: {}", cacheck::joined(&failed))));
    }
    let kp = if is_pem(key) {
        let text = std::str::from_utf8(key).map_err(|_| refused(Part::Key, "not UTF-8 PEM"))?;
        keys::load_pem(text)
    } else {
        keys::load_der(key)
    }
    .map_err(|e| refused(Part::Key, e.to_string()))?;
    if !keys::matches_spki(&kp, x.public_key().raw) {
        return Err(refused(Part::OtherKey, "is not the private key of the certificate"));
    }
    Ok(Material {
        subject: x.subject().to_string(),
        key_description: keys::describe_spki(x.public_key()),
        not_before: x.validity().not_before.to_datetime(),
        not_after: x.validity().not_after.to_datetime(),
        key: kp,
        der: der.clone(),
    })
}

/// Import `cert` + `key` as the CA with table id `ca_id` (`ca`, `etcd-ca`, `front-proxy-ca`).
/// Refuses if that CA exists, or if the pair fails [`check_material`] (naming the check). The
/// key is stored as PKCS#8 with mode 0600.
pub fn import(cluster: &Cluster, ca_id: &str, cert: &Path, key: &Path) -> Result<ImportReport, PkiError> {
    let profile = Profile::builtin();
    let row = profile.ca(ca_id).ok_or_else(|| PkiError::UnknownName {
        name: ca_id.to_string(),
        known: profile.cas.iter().map(|c| c.id.clone()).collect(),
    })?;
    let store = Store::new(cluster.pki_dir());
    let (crt_rel, key_rel) = (format!("{}.crt", row.file), format!("{}.key", row.file));
    for rel in [&crt_rel, &key_rel] {
        if store.present(rel)? {
            return Err(PkiError::CaExists { path: store.path(rel) });
        }
    }
    let cert_bytes = std::fs::read(cert).map_err(|source| PkiError::Read { path: cert.to_path_buf(), source })?;
    let key_bytes = std::fs::read(key).map_err(|source| PkiError::Read { path: key.to_path_buf(), source })?;
    let m = check_material(&cert_bytes, &key_bytes, OffsetDateTime::now_utc()).map_err(|r| match r.part {
        Part::Cert => PkiError::Import { path: cert.to_path_buf(), message: r.message },
        Part::Key => PkiError::Import { path: key.to_path_buf(), message: r.message },
        Part::OtherKey => PkiError::Import { path: key.to_path_buf(), message: format!("is not the private key of {}", cert.display()) },
    })?;
    let report = ImportReport {
        ca: ca_id.to_string(),
        subject: m.subject.clone(),
        key: m.key_description.clone(),
        not_after: m.not_after.to_string(),
        written: vec![key_rel.clone(), crt_rel.clone()],
    };
    let files = [
        super::Pending::key(key_rel, m.key.serialize_pem()),
        super::Pending::public(crt_rel, pem::encode(&pem::Pem::new("CERTIFICATE", m.der))),
    ];
    let _lock = store.lock()?;
    for rel in [&files[0].rel, &files[1].rel] {
        if store.present(rel)? {
            return Err(PkiError::CaExists { path: store.path(rel) });
        }
    }
    store.write_new_files(&files)?;
    Ok(report)
}
