//! Private keys: generation, loading in the formats other tools write, and matching to certs.
//!
//! Keys are stored as PKCS#8 PEM. Importing accepts PKCS#8, PKCS#1 (`RSA PRIVATE KEY`, what cfssl
//! writes for RSA) and SEC1 (`EC PRIVATE KEY`, what cfssl writes for ECDSA) and converts to PKCS#8.

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
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
            let bits = match algo {
                KeyAlgorithm::Rsa2048 => 2048,
                KeyAlgorithm::Rsa3072 => 3072,
                _ => 4096,
            };
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).map_err(|e| KeyError::Generate(e.to_string()))?;
            let der = key.to_pkcs8_der().map_err(|e| KeyError::Generate(e.to_string()))?;
            let der = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
            KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_RSA_SHA256).map_err(|e| KeyError::Generate(e.to_string()))
        }
    }
}

/// Load a PEM private key in PKCS#8, PKCS#1 or SEC1 form.
pub fn load_pem(pem_text: &str) -> Result<KeyPair, KeyError> {
    let block = pem::parse(pem_text).map_err(|_| KeyError::NotPem)?;
    let pkcs8 = match block.tag() {
        "PRIVATE KEY" => block.contents().to_vec(),
        "RSA PRIVATE KEY" => {
            let k = rsa::RsaPrivateKey::from_pkcs1_der(block.contents()).map_err(|e| KeyError::Parse(e.to_string()))?;
            k.to_pkcs8_der().map_err(|e| KeyError::Parse(e.to_string()))?.as_bytes().to_vec()
        }
        "EC PRIVATE KEY" => sec1_to_pkcs8(block.contents())?,
        "ENCRYPTED PRIVATE KEY" => {
            return Err(KeyError::UnsupportedPem("ENCRYPTED PRIVATE KEY (decrypt it first: openssl pkey -in KEY -out PLAIN)".into()));
        }
        other => return Err(KeyError::UnsupportedPem(other.into())),
    };
    from_pkcs8(&pkcs8)
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

// --- a minimal DER reader/writer, enough to rewrap an SEC1 EC key as PKCS#8 ---------------------

fn der_read(input: &[u8]) -> Result<(u8, &[u8], &[u8]), KeyError> {
    let bad = || KeyError::Parse("malformed DER".into());
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    let (&l0, mut rest) = rest.split_first().ok_or_else(bad)?;
    let len = if l0 < 0x80 {
        l0 as usize
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad());
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(bad());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn der_write(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|&b| b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// SEC1 `ECPrivateKey` -> PKCS#8 `PrivateKeyInfo`. The curve comes from the key's parameters,
/// which PKCS#8 moves into the algorithm identifier.
fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, KeyError> {
    let (tag, body, _) = der_read(sec1)?;
    if tag != 0x30 {
        return Err(KeyError::Parse("EC key is not a SEQUENCE".into()));
    }
    let (_vt, version, rest) = der_read(body)?;
    if version != [1] {
        return Err(KeyError::Parse("unsupported ECPrivateKey version".into()));
    }
    let (pt, private, mut rest) = der_read(rest)?;
    if pt != 0x04 {
        return Err(KeyError::Parse("ECPrivateKey without private key octets".into()));
    }
    let (mut curve, mut public) = (None, None);
    while !rest.is_empty() {
        let (t, v, r) = der_read(rest)?;
        match t {
            0xa0 => curve = Some(der_read(v)?.1.to_vec()),
            0xa1 => public = Some(v.to_vec()),
            _ => {}
        }
        rest = r;
    }
    let curve = curve.ok_or_else(|| KeyError::Parse("EC key names no curve".into()))?;
    if curve != OID_P256 && curve != OID_P384 {
        return Err(KeyError::UnsupportedType("EC curve other than P-256/P-384".into()));
    }
    let public = public.ok_or_else(|| KeyError::Parse("EC key without its public key".into()))?;
    // ECPrivateKey without the (now redundant) parameters
    let mut inner = der_write(0x02, &[1]);
    inner.extend(der_write(0x04, private));
    inner.extend(der_write(0xa1, &public));
    let inner = der_write(0x30, &inner);
    let mut alg = der_write(0x06, OID_EC_PUBLIC_KEY);
    alg.extend(der_write(0x06, &curve));
    let mut info = der_write(0x02, &[0]);
    info.extend(der_write(0x30, &alg));
    info.extend(der_write(0x04, &inner));
    Ok(der_write(0x30, &info))
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
    fn der_roundtrip_long_lengths() {
        let content = vec![7u8; 300];
        let enc = der_write(0x04, &content);
        let (t, v, rest) = der_read(&enc).unwrap();
        assert_eq!((t, v.len(), rest.len()), (0x04, 300, 0));
        assert!(der_read(&enc[..10]).is_err(), "truncated DER is refused");
    }

    #[test]
    fn generated_keys_reload() {
        let k = generate(KeyAlgorithm::EcdsaP256).unwrap();
        let again = load_pem(&k.serialize_pem()).unwrap();
        assert_eq!(k.public_key_raw(), again.public_key_raw());
    }
}
