//! What a verifier (openssl, Go's crypto/x509) checks on a CA certificate, checked here so that
//! kbin never adopts or signs with a CA they would reject: the validity window, basicConstraints
//! CA:TRUE, keyCertSign in the key usage, an RSA key of at least 2048 bits, and a self-signature
//! that verifies. `pki import` refuses a CA failing any of them, `pki check` reports them for the
//! CAs in `pki/`, and `pki init` refuses to sign with such a CA.

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::public_key::PublicKey;

/// The smallest RSA modulus verifiers accept (and ring verifies).
pub const MIN_RSA_BITS: usize = 2048;

/// One failed check, named the way `openssl x509 -text` names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// `validity`, `basicConstraints`, `keyUsage`, `key size`, `signature`.
    pub check: &'static str,
    pub message: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.check, self.message)
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// The validity window at `now`.
pub fn validity(cert: &X509Certificate<'_>, now: OffsetDateTime) -> Option<Failed> {
    let (nb, na) = (cert.validity().not_before.to_datetime(), cert.validity().not_after.to_datetime());
    if nb > now {
        return Some(Failed { check: "validity", message: format!("not valid before {} (it is {} now)", rfc3339(nb), rfc3339(now)) });
    }
    if na <= now {
        return Some(Failed { check: "validity", message: format!("expired on {}", rfc3339(na)) });
    }
    None
}

/// Everything but the validity window (which `pki check` reports for every certificate).
pub fn structure(cert: &X509Certificate<'_>) -> Vec<Failed> {
    let mut out = Vec::new();
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(_) => out.push(Failed { check: "basicConstraints", message: "CA:FALSE or absent: not a CA certificate".into() }),
        Err(e) => out.push(Failed { check: "basicConstraints", message: format!("unreadable ({e})") }),
    }
    match cert.key_usage() {
        Ok(Some(ku)) if ku.value.key_cert_sign() => {}
        // no keyUsage extension at all: verifiers accept any use
        Ok(None) => {}
        Ok(Some(_)) => out.push(Failed { check: "keyUsage", message: "lacks keyCertSign: verifiers reject every certificate it signs".into() }),
        Err(e) => out.push(Failed { check: "keyUsage", message: format!("unreadable ({e})") }),
    }
    let mut key_ok = true;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(r)) if r.key_size() < MIN_RSA_BITS => {
            key_ok = false;
            out.push(Failed { check: "key size", message: format!("RSA {} bits; at least {MIN_RSA_BITS} are required", r.key_size()) });
        }
        Ok(PublicKey::RSA(_) | PublicKey::EC(_)) => {}
        Ok(_) => {
            key_ok = false;
            out.push(Failed { check: "key size", message: format!("unsupported key type {}", super::keys::describe_spki(cert.public_key())) });
        }
        Err(e) => {
            key_ok = false;
            out.push(Failed { check: "key size", message: format!("unreadable public key ({e})") });
        }
    }
    if cert.issuer() != cert.subject() {
        out.push(Failed { check: "signature", message: format!("issued by {}, not self-signed: import the root CA, not an intermediate", cert.issuer()) });
    } else if key_ok && let Err(e) = cert.verify_signature(None) {
        out.push(Failed { check: "signature", message: format!("the self-signature does not verify ({e})") });
    }
    out
}

/// Every failed check at `now`, validity first.
pub fn all(cert: &X509Certificate<'_>, now: OffsetDateTime) -> Vec<Failed> {
    validity(cert, now).into_iter().chain(structure(cert)).collect()
}

/// `a; b; c` for a message.
pub fn joined(failed: &[Failed]) -> String {
    failed.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; ")
}
