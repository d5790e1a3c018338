//! Private keys: generation, loading in the formats other tools write, and matching to certs.
//!
//! Keys are stored as PKCS#8 PEM. Importing accepts PKCS#8, PKCS#1 (`RSA PRIVATE KEY`, what cfssl
//! writes for RSA) and SEC1 (`EC PRIVATE KEY`, what cfssl writes for ECDSA) and converts to PKCS#8.

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256};
use rustls_pki_types::PrivatePkcs8KeyDer;

use crate::config::KeyAlgorithm;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("not a PEM private key")]
    NotPem,
    #[error("unsupported private key format {0:?}")]
    UnsupportedPem(String),
    #[error("the key could not be parsed: {0}")]
    Parse(String),
    #[error("unsupported key type: {0}")]
    UnsupportedType(String),
}

/// Generate a new key of `algo`.
pub fn generate(algo: KeyAlgorithm) -> Result<KeyPair, KeyError> {
    match algo {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| KeyError::Generate(e.to_string())),
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
            // ring cannot generate RSA keys; AWS-LC does, about 2.5 times faster than OpenSSL 3
            // here (and far faster than pure-Rust crates), which matters for large clusters.
            let size = match algo {
                KeyAlgorithm::Rsa2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
                KeyAlgorithm::Rsa3072 => aws_lc_rs::rsa::KeySize::Rsa3072,
                _ => aws_lc_rs::rsa::KeySize::Rsa4096,
            };
            let kp = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|e| KeyError::Generate(e.to_string()))?;
            let der = pkcs8_of_rsa(&kp).map_err(KeyError::Generate)?;
            let der = PrivatePkcs8KeyDer::from(der);
            KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_RSA_SHA256).map_err(|e| KeyError::Generate(e.to_string()))
        }
    }
}

/// Load a PEM private key in PKCS#8, PKCS#1 or SEC1 form.
pub fn load_pem(pem_text: &str) -> Result<KeyPair, KeyError> {
    let block = pem::parse(pem_text).map_err(|_| KeyError::NotPem)?;
    let pkcs8 = match block.tag() {
        "PRIVATE KEY" => block.contents().to_vec(),
        "RSA PRIVATE KEY" => pkcs1_to_pkcs8(block.contents())?,
        "EC PRIVATE KEY" => sec1_to_pkcs8(block.contents())?,
        "ENCRYPTED PRIVATE KEY" => {
            return Err(KeyError::UnsupportedPem("ENCRYPTED PRIVATE KEY (decrypt it first: openssl pkey -in KEY -out PLAIN)".into()));
        }
        other => return Err(KeyError::UnsupportedPem(other.into())),
    };
    from_pkcs8(&pkcs8)
}

/// Load a DER private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub fn load_der(der: &[u8]) -> Result<KeyPair, KeyError> {
    if let Ok(k) = from_pkcs8(der) {
        return Ok(k);
    }
    if let Ok(p8) = pkcs1_to_pkcs8(der).or_else(|_| sec1_to_pkcs8(der)) {
        return from_pkcs8(&p8);
    }
    Err(KeyError::Parse("not a DER private key (PKCS#8, PKCS#1 RSA or SEC1 EC)".into()))
}

fn from_pkcs8(der: &[u8]) -> Result<KeyPair, KeyError> {
    let d = PrivatePkcs8KeyDer::from(der.to_vec());
    for alg in [&PKCS_ECDSA_P256_SHA256, &PKCS_ECDSA_P384_SHA384, &PKCS_RSA_SHA256] {
        if let Ok(k) = KeyPair::from_pkcs8_der_and_sign_algo(&d, alg) {
            return Ok(k);
        }
    }
    Err(KeyError::UnsupportedType("only RSA (2048-4096 bits) and ECDSA P-256/P-384 keys are supported".into()))
}

fn pkcs8_of_rsa(kp: &aws_lc_rs::rsa::KeyPair) -> Result<Vec<u8>, String> {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    let der: Pkcs8V1Der<'static> = kp.as_der().map_err(|e| e.to_string())?;
    Ok(der.as_ref().to_vec())
}

/// SEC1 `ECPrivateKey` -> PKCS#8 `PrivateKeyInfo` (the curve moves into the algorithm identifier).
fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, KeyError> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair};
    for alg in [&ECDSA_P256_SHA256_ASN1_SIGNING, &ECDSA_P384_SHA384_ASN1_SIGNING] {
        if let Ok(kp) = EcdsaKeyPair::from_private_key_der(alg, sec1) {
            return kp.to_pkcs8v1().map(|d| d.as_ref().to_vec()).map_err(|e| KeyError::Parse(e.to_string()));
        }
    }
    Err(KeyError::UnsupportedType("EC key on a curve other than P-256/P-384, or malformed".into()))
}

/// PKCS#1 `RSAPrivateKey` -> PKCS#8 `PrivateKeyInfo`.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<Vec<u8>, KeyError> {
    let kp = aws_lc_rs::rsa::KeyPair::from_der(pkcs1).map_err(|e| KeyError::Parse(e.to_string()))?;
    pkcs8_of_rsa(&kp).map_err(KeyError::Parse)
}

/// Does the private key belong to the certificate with this SubjectPublicKeyInfo (DER)?
pub fn matches_spki(key: &KeyPair, cert_spki_der: &[u8]) -> bool {
    use rcgen::PublicKeyData;
    key.subject_public_key_info() == cert_spki_der
}

/// A short description such as `ECDSA P-256` or `RSA 2048`.
pub fn describe_spki(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match spki.parsed() {
        Ok(PublicKey::RSA(r)) => format!("RSA {}", r.key_size()),
        Ok(PublicKey::EC(p)) => match p.key_size() {
            256 => "ECDSA P-256".into(),
            384 => "ECDSA P-384".into(),
            n => format!("ECDSA {n}"),
        },
        Ok(PublicKey::Unknown(_)) | Err(_) => spki.algorithm.algorithm.to_id_string(),
        Ok(_) => "other".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_reload() {
        let k = generate(KeyAlgorithm::EcdsaP256).unwrap();
        let again = load_pem(&k.serialize_pem()).unwrap();
        assert_eq!(k.public_key_raw(), again.public_key_raw());
    }
}
